"""At a terminal, a run shows a spinner with the elapsed time of a slow step and a bar per
foreach; piped, the same run prints plain lines with no control codes."""

from __future__ import annotations

import pytest
from conftest import write_mission
from support.terminal import Terminal

pytestmark = pytest.mark.backends(
    "local", reason="the terminal's progress display is under test; the store is incidental")

SLOW = ("mission: slow\nintegrations: {fx: {command: x}}\nsteps:\n"
        "  - {id: nap, tool: fx.sleep, arguments: {seconds: 2.5}}\n"
        "  - id: each\n    foreach: ${{ [1, 2, 3, 4, 5, 6] }}\n    concurrency: 2\n    steps:\n"
        "      - {id: rest, tool: fx.sleep, arguments: {seconds: 0.6}}\n")


def test_a_terminal_shows_a_spinner_for_a_slow_step_and_a_bar_for_a_foreach(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", SLOW)
    terminal = Terminal(sx.argv("run", mission), sx.env(COLUMNS="120", LINES="40"))
    try:
        terminal.expect("nap tool · 1 s", timeout=30)  # the spinner's line, with the seconds so far
        terminal.expect("/6 done · 2 running · 0 failed", timeout=30)
        terminal.expect("verdict: Completed", timeout=60)
        assert terminal.wait(30) == 0
    finally:
        if terminal.proc.poll() is None:
            terminal.proc.kill()


def test_piped_output_has_no_control_codes_and_quiet_prints_only_the_verdict(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", SLOW)
    piped = sx.process("run", mission, SX_SLEEP_FAST="1")
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stdout and "\r" not in piped.stdout
    assert "6 items, 2 at a time" in piped.stdout
    quiet = sx.process("run", mission, "-q", SX_SLEEP_FAST="1")
    assert quiet.stdout.splitlines()[1:] == ["verdict: Completed"]
