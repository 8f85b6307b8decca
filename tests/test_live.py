"""Watching a run that another process drives: `log --follow` and `status` of a running run."""

from __future__ import annotations

import json
import time

from conftest import write_mission

SLOW_THEN_GATE = ("mission: watched\ninputs: {amount: {type: number}}\nintegrations: {fx: {command: x}}\nsteps:\n"
                  "  - {id: look, set: {v: 1}}\n"
                  "  - {id: wait, tool: fx.sleep, arguments: {seconds: 3}}\n"
                  "  - id: pay\n    tool: fx.pay\n    arguments: {amount: '${{ inputs.amount }}', to: ACME}\n")


def _first_line(proc) -> str:
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read()
    return line.split()[1] if line.startswith("run ") else line.split()[0]


def test_log_follow_in_a_second_process_streams_a_run_until_it_parks(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", SLOW_THEN_GATE)
    driver = sx.popen("run", mission, "--input", "amount=400", "--no-input")
    run_id = _first_line(driver)
    follower = sx.popen("log", run_id, "--follow", "--json")
    # while the slow step runs, status says which step runs now, and for how long
    deadline = time.monotonic() + 20
    while True:
        state = sx.state(run_id)
        if state["running"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state["status"] == "running" and [r["step"] for r in state["running"]] == ["wait"], state
    assert state["running"][0]["elapsed"] >= 0 and state["duration"] > 0
    shown = sx("status", run_id).stdout
    assert "running now: wait (tool) for" in shown
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "waiting"
    assert {"step_started", "step_finished"} <= set(types)
    assert driver.wait(30) == 3  # parked
    again = sx("log", run_id, "--follow")
    assert again.returncode == 0 and "is parked, waiting for decision" in again.stdout


def test_log_follow_of_a_finished_run_prints_it_and_ends(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: done\nsteps:\n  - {id: a, set: {v: 1}}\n")
    run_id = sx("run", mission, "-q").stdout.split()[0]
    followed = sx("log", run_id, "--follow")
    assert followed.returncode == 0 and "verdict: Completed" in followed.stdout
