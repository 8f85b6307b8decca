"""Bugs found by review, each with the test that showed it: in-doubt rejections before a retry, a
recheck after the action was made, evidence from a loop's latest visit, two runs racing for a key."""

from __future__ import annotations

import itertools
import json

import pytest
from test_engine import Harness, ScriptedTools
from test_recheck import MISSION as RECHECKED

from studiox import mission as missions
from studiox.errors import DuplicateRun
from studiox.governance import APPROVED, REJECTED
from studiox.state.journal import Journal

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL


@pytest.fixture(autouse=True)
def _litellm_imported():
    from studiox.adapters.models import _litellm

    _litellm()


class Crash(BaseException):
    """Stands for the process dying."""


def test_rejecting_an_in_doubt_question_before_a_retry_ends_the_step_as_rejected(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"pay": [("sleep", 5), {"paid": 1}]}))
    out = h.run("steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 5}, timeout: 200ms,"
                " retry: {attempts: 2, on: [timeout], backoff: 0.01}}\n")
    h.engine.decisions.decide(out.waiting["decision"], APPROVED, by="t")
    out = h.engine.drive(out.run_id, resume=True)
    assert out.status == "waiting" and out.waiting["in_doubt"]
    h.engine.decisions.decide(out.waiting["decision"], REJECTED, by="t", note="it did not go through, leave it")
    out = h.engine.drive(out.run_id, resume=True)
    assert out.status == "failed" and "leave it" in out.error["message"]
    assert len(h.tools.calls) == 1




def test_evidence_is_never_rechecked_after_the_action_was_made(tmp_path, monkeypatch):
    h = Harness(tmp_path, ScriptedTools({"look": [{"remaining": 2600}, {"remaining": 2600}, {"remaining": 820}],
                                         "pay": [{"paid": "P1"}]}))
    parked = h.run(RECHECKED)
    h.engine.decisions.decide(parked.waiting["decision"], APPROVED, by="clerk")
    append = Journal.append

    def dies_after_paying(self, type_, **fields):
        event = append(self, type_, **fields)
        if type_ == "action_finished":
            raise Crash()
        return event

    monkeypatch.setattr(Journal, "append", dies_after_paying)
    with pytest.raises(Crash):
        h.engine.drive(parked.run_id, resume=True)
    monkeypatch.setattr(Journal, "append", append)
    done = h.engine.drive(parked.run_id, resume=True)
    assert done.status == "succeeded", done  # the payment's own effect on the budget asks nobody anything
    assert [tool for tool, _, _ in h.tools.calls] == ["look", "look", "pay"]


def test_the_evidence_of_a_loop_is_its_latest_visit(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [{"amount": 1}, {"amount": 999}]}))
    out = h.run("steps:\n"
                "  - {id: fetch, tool: fx.look}\n"
                "  - id: again\n    branch: {cases: [{when: '${{ steps.fetch.output.amount < 10 }}', goto: fetch}],"
                " max_iterations: 3}\n"
                "  - {id: p, tool: fx.pay, arguments: {amount: '${{ steps.fetch.output.amount }}'}}\n")
    evidence = h.engine.decisions.get(out.waiting["decision"]).request["evidence"]
    assert any('"amount": 999' in e["message"] for e in evidence)
    assert not any('"amount": 1}' in e["message"] for e in evidence)


KEYED = ("mission: t\nintegrations: {fx: {command: x}}\nkey: '${{ inputs.inv }}'\ninputs: {inv: {type: string}}\n"
         "steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 1}}\n")


def test_two_runs_racing_to_start_for_one_key_never_both_go_on(tmp_path, monkeypatch):
    from studiox.engine import engine as module

    h = Harness(tmp_path)
    h.engine.clock = itertools.count(1_000).__next__
    (tmp_path / "m.yaml").write_text(KEYED)
    mission = missions.load(tmp_path / "m.yaml")
    register = module.keys.register
    racer: list[str] = []
    raced = []

    def another_process_starts_meanwhile(*args, **kwargs):
        if not raced:  # once: between the first start's check and its registration
            raced.append(True)
            racer.append(h.engine.start(mission, {"inv": "INV-1"}))
        return register(*args, **kwargs)

    monkeypatch.setattr(module.keys, "register", another_process_starts_meanwhile)
    with pytest.raises(DuplicateRun, match="INV-1 already has a run that has not finished"):
        h.engine.start(mission, {"inv": "INV-1"})
    assert h.engine.drive(racer[0]).status == "waiting"  # exactly one of them goes on


def test_a_record_key_is_not_a_decision_id(sx):
    from conftest import TESTS

    parked = sx("run", TESTS / "missions" / "payment.yaml", "--json")
    decision = json.loads(parked.stdout)["waiting"]["decision"]
    assert sx("approve", decision).returncode == 0
    for args in (["decision", "show", f"{decision}:outcome"], ["approve", f"{decision}:outcome"],
                 ["reject", f"{decision}:outcome", "--reason", "x"]):
        result = sx(*args)
        assert result.returncode == 2 and f"no decision '{decision}:outcome'" in result.stderr, (args, result.stderr)


def test_a_validated_mission_naming_a_missing_knowledge_folder_is_still_refused(studiox, tmp_path):
    sx = studiox  # the real CLI: the test door has no knowledge
    text = ("mission: t\nknowledge: {policies: {path: data}}\n"
            "steps:\n  - {id: r, retrieve: {from: policies, query: hotel}}\n")
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "a" / "data" / "p.txt").write_text("Hotels up to 180 EUR.")
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "m.yaml").write_text(text)
    assert sx("run", tmp_path / "a" / "m.yaml", "-q").returncode == 0
    refused = sx("run", tmp_path / "b" / "m.yaml")
    assert refused.returncode == 2 and "does not exist" in refused.stderr


def test_approving_as_proposed_never_agrees_silently_with_someone_elses_edit(tmp_path):
    from studiox.edits import edited_action
    from studiox.errors import DecisionError

    h = Harness(tmp_path)
    out = h.run("steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 100}}\n")
    decision = h.engine.decisions.get(out.waiting["decision"])
    h.engine.decisions.decide(decision.id, APPROVED, by="bob", action=edited_action(decision, {"amount": 100000}))
    with pytest.raises(DecisionError, match="already approved by bob"):
        h.engine.decisions.decide(decision.id, APPROVED, by="carol")  # carol saw 100, not 100,000


def test_retyping_an_amount_in_another_form_is_not_an_edit():
    from studiox.values import parse_field, parse_number

    assert parse_field("1,700.00", {"type": "number"}, 1700) == 1700
    assert isinstance(parse_field("1,700.00", {"type": "number"}, 1700), int)
    with pytest.raises(ValueError, match="too large"):
        parse_number("1e999")
    with pytest.raises(ValueError, match="too long"):
        parse_number("9" * 5000)
