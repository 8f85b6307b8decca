"""One business object, one outcome: a mission's ``key`` allows one live run per object, names the
idempotency key, and stops a second payment for the same object unless a person says so again."""

from __future__ import annotations

import itertools
import json

import pytest
from test_engine import Harness, ScriptedTools

from studiox import api
from studiox import mission as missions
from studiox.errors import DuplicateRun
from studiox.governance import APPROVED

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

BY_INPUT = """mission: pay
key: ${{ inputs.invoice }}
inputs: {invoice: {type: string}}
integrations: {fx: {command: x}}
steps:
  - {id: pay, tool: fx.pay, arguments: {amount: 100}}
verdict: {choices: [Paid, Rejected], value: Paid}
"""

BY_STEP = BY_INPUT.replace("key: ${{ inputs.invoice }}", "key: ${{ steps.read.output.number }}").replace(
    "steps:\n", "steps:\n  - {id: read, set: {number: '${{ inputs.invoice }}'}}\n")


def _harness(tmp_path, tools=None) -> Harness:
    h = Harness(tmp_path, tools)
    h.engine.clock = itertools.count(1_000).__next__  # time moves on: which run came first is known
    return h


def _start(h, text: str, invoice: str, **options):
    path = h.tmp / "m.yaml"
    path.write_text(text)
    return h.engine.start(missions.load(path), {"invoice": invoice}, options)


def _approve(h, outcome):
    h.engine.decisions.decide(outcome.waiting["decision"], APPROVED, by="clerk")
    return h.engine.drive(outcome.run_id, resume=True)


def test_a_second_run_for_a_key_with_a_live_run_is_refused_naming_that_run(tmp_path):
    h = _harness(tmp_path)
    first = _start(h, BY_INPUT, "INV-2291")
    assert h.engine.drive(first).status == "waiting"
    with pytest.raises(DuplicateRun, match=f"INV-2291 already has a run that has not finished: {first} \\(waiting\\)"):
        _start(h, BY_INPUT, "INV-2291")
    assert len(api.list_runs(h.store)) == 1  # nothing was created
    other = _start(h, BY_INPUT, "INV-7")  # another invoice is another object
    assert h.engine.drive(other).status == "waiting"


def test_with_allow_duplicate_approving_both_pays_once_and_the_second_decision_says_why(tmp_path):
    h = _harness(tmp_path)
    first = h.engine.drive(_start(h, BY_INPUT, "INV-2291"))
    second = h.engine.drive(_start(h, BY_INPUT, "INV-2291", allow_duplicate=True))
    assert first.status == second.status == "waiting"
    assert _approve(h, first).verdict == "Paid"
    again = _approve(h, second)
    assert again.status == "waiting", again  # asked again: it was already done for this invoice
    explain = h.engine.decisions.get(again.waiting["decision"]).request["explain"]
    assert f"fx.pay for INV-2291 was already done in run {first.run_id}" in explain and "approved by clerk" in explain
    assert [tool for tool, _, _ in h.tools.calls] == ["pay"]  # paid once
    keys = {key for _, _, key in h.tools.calls}
    assert keys == {"pay/INV-2291/pay"}  # MISSION/KEY/STEP: the same for every run about the object


def test_on_duplicate_fail_fails_the_step_without_asking(tmp_path):
    h = _harness(tmp_path)
    text = BY_INPUT.replace("arguments: {amount: 100}}", "arguments: {amount: 100}, approval: {on_duplicate: fail}}")
    assert _approve(h, h.engine.drive(_start(h, text, "INV-1"))).verdict == "Paid"
    second = _approve(h, h.engine.drive(_start(h, text, "INV-1", allow_duplicate=True)))
    assert second.status == "failed" and second.error["kind"] == "duplicate"
    assert len(h.tools.calls) == 1


def test_a_key_known_only_after_a_step_stops_the_second_run_then(tmp_path):
    h = _harness(tmp_path)
    first = h.engine.drive(_start(h, BY_STEP, "INV-9"))
    assert first.status == "waiting"
    second = h.engine.drive(_start(h, BY_STEP, "INV-9"))
    assert second.status == "failed" and second.error["kind"] == "duplicate"
    assert f"INV-9 is already being handled by run {first.run_id} (waiting)" in second.error["message"]
    rows = {r.id: r for r in api.list_runs(h.store)}
    assert rows[first.run_id].key == rows[second.run_id].key == "INV-9"
    assert h.tools.calls == []


def test_the_key_is_shown_in_runs_and_decisions(sx, tmp_path):
    mission = tmp_path / "m.yaml"
    mission.write_text(BY_INPUT)
    parked = sx("run", mission, "--input", "invoice=INV-2291", "--json")
    assert parked.returncode == 3, parked.stderr
    assert "INV-2291" in sx("runs").stdout and "INV-2291" in sx("decisions").stdout
    assert json.loads(sx("decisions", "--json").stdout)[0]["key"] == "INV-2291"
    refused = sx("run", mission, "--input", "invoice=INV-2291")
    assert refused.returncode == 2 and "--allow-duplicate" in refused.stderr


def test_a_key_read_from_steps_that_do_not_exist_is_reported_by_validate(tmp_path):
    from studiox.errors import MissionInvalid

    with pytest.raises(MissionInvalid, match="key"):
        missions.loads(BY_STEP.replace("steps.read.output", "steps.raed.output"), "m.yaml", check_paths=False)


def test_tools_that_honour_the_key_see_it_across_runs(tmp_path):
    h = _harness(tmp_path, ScriptedTools())
    _approve(h, h.engine.drive(_start(h, BY_STEP, "INV-3")))
    assert h.tools.calls[0][2] == "pay/INV-3/pay"


def test_a_run_stopped_as_a_duplicate_is_not_taken_up_again_while_the_other_is_live(tmp_path):
    from studiox.errors import DuplicateRun as Refused

    h = _harness(tmp_path)
    first = h.engine.drive(_start(h, BY_STEP, "INV-5"))
    second = h.engine.drive(_start(h, BY_STEP, "INV-5"))
    assert second.status == "failed" and second.error["kind"] == "duplicate"
    with pytest.raises(Refused, match=f"INV-5 already has a run that has not finished: {first.run_id}"):
        h.engine.drive(second.run_id, resume=True, retry_failed=True)
    h.engine.cancel(first.run_id, "paid by hand")
    assert h.engine.drive(second.run_id, resume=True, retry_failed=True).status == "waiting"  # now it may go on
