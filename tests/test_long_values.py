"""Long values are shortened wherever people read them (the rail, tables, the decision panel) with
a note of their whole size, and kept whole in the JSON outputs."""

from __future__ import annotations

import json

import pytest
from conftest import write_mission

pytestmark = pytest.mark.backends(
    "local", reason="how the terminal shows long values is under test; the store is incidental")

MB = 1_000_000


def test_long_values_are_shortened_where_people_read_them_and_kept_whole_in_json(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", (
        "mission: long\ninputs: {doc: {type: string}}\nintegrations: {fx: {command: x}}\nsteps:\n"
        "  - {id: copy, set: {text: '${{ inputs.doc }}'}}\n"
        "  - {id: oops, set: {n: '${{ number(inputs.doc) }}'}, on_error: continue}\n"
        "  - {id: pay, tool: fx.pay, arguments: {amount: 1, memo: '${{ inputs.doc }}'}}\n"
    ))
    doc = tmp_path / "doc.txt"
    doc.write_text("word " * 200_000)  # 1 MB
    result = sx("run", mission, "--input", f"doc=@{doc}", "--no-input")
    assert result.returncode == 3, result.stderr
    assert len(result.stdout) < 5000, result.stdout[:3000]
    assert "…" in result.stdout and "1.0 MB" in result.stdout
    run_id = result.stdout.split()[1]
    decision = result.stdout.split("waiting for a decision ")[1].split(":")[0]
    for args in (["status", run_id], ["log", run_id], ["decisions"], ["decision", "show", decision]):
        shown = sx(*args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert len(shown.stdout) < 5000, (args, shown.stdout[:3000])
    status = json.loads(sx("status", run_id, "--json").stdout)
    assert status["steps"][0]["output"]["text"] == doc.read_text()
    events = [json.loads(line) for line in sx("log", run_id, "--json").stdout.splitlines()]
    assert any(e.get("output", {}) == {"text": doc.read_text()} for e in events if e["type"] == "step_finished")
    shown = json.loads(sx("decision", "show", decision, "--json").stdout)
    assert shown["action"]["arguments"]["memo"] == doc.read_text()


def test_short_cuts_to_the_width_and_says_how_long_the_whole_is():
    from studiox.ui.rail import short

    assert short({"a": 1}) == '{"a": 1}'
    cut = short("x" * 5_000_000, 60)
    assert cut.startswith("x" * 40) and "…" in cut and "5.0 MB" in cut
    assert len(cut) <= 60


@pytest.mark.parametrize("event", [
    {"type": "observation", "step": "w", "message": "reasoning " * 500_000},
    {"type": "step_failed", "step": "w", "attempt": 1, "error": {"kind": "tool_error", "message": "e" * 5 * MB}},
    {"type": "step_finished", "step": "w", "status": "failed", "error": {"message": "e" * 5 * MB}},
    {"type": "action_finished", "step": "w", "ok": False, "error": {"message": "e" * 5 * MB}},
    {"type": "decision_applied", "step": "w", "status": "rejected", "by": "ada", "note": "n" * 5 * MB},
    {"type": "run_finished", "status": "succeeded", "verdict": "Ok", "note": "n" * 5 * MB},
    {"type": "run_finished", "status": "failed", "error": {"step": "w", "message": "e" * 5 * MB}},
    {"type": "run_finished", "status": "cancelled", "reason": "r" * 5 * MB},
])
def test_every_long_text_on_the_rail_is_shortened(event):
    from studiox.ui.rail import live_line

    line = live_line({"seq": 1, "at": 0.0, **event})
    assert line is not None and len(line) < 1000 and "5.0 MB" in line


def test_a_rejected_step_is_never_shown_with_a_tick():
    from studiox.ui.rail import live_line

    line = live_line({"type": "step_finished", "step": "pay", "status": "rejected", "output": None,
                      "error": {"kind": "rejected", "message": "pay was rejected by cfo: duplicate"}})
    assert line is not None and "✓" not in line and "rejected by cfo: duplicate" in line


def test_rail_lines_of_foreach_items_say_which_item_they_are_about():
    from studiox.ui.rail import live_line

    inside = live_line({"type": "observation", "step": "lines[3].check", "message": "calling erp.check_budget"})
    outside = live_line({"type": "observation", "step": "check", "message": "calling erp.check_budget"})
    assert inside is not None and "lines[3].check: calling erp.check_budget" in inside
    assert outside is not None and "check:" not in outside
