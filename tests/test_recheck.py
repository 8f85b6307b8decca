"""Evidence that is still true when the action runs: approval.recheck runs read-only steps again after
the approval and before the action; a change stops the action and asks again, showing old → new."""

from __future__ import annotations

import pytest
from test_engine import Harness, ScriptedTools

from studiox.errors import MissionInvalid
from studiox.governance import APPROVED
from studiox.mission import loads

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

MISSION = """steps:
  - {id: budget, tool: fx.look, arguments: {amount: 1780}}
  - id: pay
    tool: fx.pay
    arguments: {amount: 1780}
    approval: {recheck: [budget]}
"""


def _approve(h, outcome):
    h.engine.decisions.decide(outcome.waiting["decision"], APPROVED, by="clerk")
    return h.engine.drive(outcome.run_id, resume=True)


def test_a_budget_that_changed_after_the_card_stops_the_payment_and_asks_again(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [{"remaining": 2600}, {"remaining": 820}, {"remaining": 820}]}))
    parked = h.run(MISSION)
    again = _approve(h, parked)
    assert again.status == "waiting" and again.waiting["decision"] != parked.waiting["decision"]
    explain = h.engine.decisions.get(again.waiting["decision"]).request["explain"]
    assert "budget.remaining: 2600 → 820" in explain
    assert [tool for tool, _, _ in h.tools.calls] == ["look", "look"]  # nothing paid
    done = _approve(h, again)  # the person saw the new budget and still approves
    assert done.status == "succeeded", done
    assert [tool for tool, _, _ in h.tools.calls] == ["look", "look", "pay"]  # what they saw is what they approved


def test_an_unchanged_recheck_lets_the_approved_action_run(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [{"remaining": 2600}, {"remaining": 2600}]}))
    done = _approve(h, h.run(MISSION))
    assert done.status == "succeeded"
    assert [tool for tool, _, _ in h.tools.calls] == ["look", "look", "pay"]
    notes = [e["message"] for e in h.events(done.run_id) if e["type"] == "observation"]
    assert "rechecked budget after the approval: unchanged" in notes


def test_a_rejection_after_a_changed_recheck_ends_like_any_rejection(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [{"remaining": 2600}, {"remaining": 0}]}))
    again = _approve(h, h.run(MISSION))
    h.engine.decisions.decide(again.waiting["decision"], "rejected", by="clerk", note="no budget left")
    done = h.engine.drive(again.run_id, resume=True)
    assert done.status == "failed" and "no budget left" in done.error["message"]
    assert "pay" not in [tool for tool, _, _ in h.tools.calls]


def test_recheck_must_name_an_earlier_step():
    with pytest.raises(MissionInvalid, match="'budgte' is not a step that runs before this one.*did you mean 'budget'"):
        loads("mission: t\nintegrations: {fx: {command: x}}\n" + MISSION.replace("recheck: [budget]", "recheck: [budgte]"),
              "m.yaml", check_paths=False)
