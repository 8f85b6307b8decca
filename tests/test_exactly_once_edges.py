"""The exactly-once contract at its edges: retries, parks inside foreach, kills between a decision
and its journal entry, cancels racing the end, resumes that would mix journals, time limits."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from test_engine import Harness, ScriptedTools
from test_workers import AGENT, AGENT_REPLAY, EXTRACT, USAGE_30, World

from studiox import api
from studiox.edits import edited_action
from studiox.engine import JournalMismatch
from studiox.errors import DecisionError, RunNotResumable
from studiox.governance import APPROVED, DecisionQueue

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

PAY_TIMES_OUT = AGENT.replace(
    "      output: {type: object, required: [paid], properties: {paid: {type: boolean}}}\n",
    "      output: {type: object, required: [paid], properties: {paid: {type: boolean}}}\n"
    "    timeout: 1s\n    retry: {attempts: 2, on: [timeout], backoff: 0.01}\n")


@pytest.fixture(autouse=True)
def _litellm_imported():
    """Importing litellm takes seconds: done before a test whose time limits are short, not inside them."""
    from studiox.adapters.models import _litellm

    _litellm()


def _pays(world) -> list:
    return [(args, key) for tool, args, key in world.tools.calls if tool == "pay"]


def _approve_and_resume(world, run_id, outcome, **how):
    world.engine.decisions.decide(outcome.waiting["decision"], APPROVED, by="tester", **how)
    return world.engine.drive(run_id, resume=True)


def test_a_worker_retried_after_a_timeout_never_repeats_a_cut_off_payment(tmp_path):
    world = World(tmp_path, AGENT_REPLAY, ScriptedTools({"pay": [("sleep", 5)]}, gated=("pay",)))
    run_id = world.start(PAY_TIMES_OUT)
    parked = world.engine.drive(run_id)  # the payment needs a decision
    cut = _approve_and_resume(world, run_id, parked)  # approved: the call hangs, the attempt times out
    assert cut.status == "waiting" and cut.waiting["in_doubt"], cut
    assert len(_pays(world)) == 1  # the retry did not call it again: a person is asked first
    done = _approve_and_resume(world, run_id, cut, resolution="happened", result={"paid": "PAY-1"})
    assert done.status == "succeeded" and done.verdict == "Paid", done
    assert len(_pays(world)) == 1  # attempt 2 asked for the same payment: the journaled result was used
    notes = [o["message"] for o in world.events(run_id, "observation")]
    assert any("already made by an earlier attempt" in n for n in notes)


def test_a_cut_off_payment_that_did_not_happen_is_made_again_with_the_same_key(tmp_path):
    world = World(tmp_path, AGENT_REPLAY, ScriptedTools({"pay": [("sleep", 5), {"paid": "PAY-2"}]}, gated=("pay",)))
    run_id = world.start(PAY_TIMES_OUT)
    cut = _approve_and_resume(world, run_id, world.engine.drive(run_id))
    assert cut.status == "waiting" and cut.waiting["in_doubt"]
    again = _approve_and_resume(world, run_id, cut, resolution="retry")
    if again.status == "waiting":  # attempt 2's own call of the payment is approved like any other
        again = _approve_and_resume(world, run_id, again)
    assert again.status == "succeeded", again
    (first, first_key), (second, second_key) = _pays(world)
    assert first == second and first_key == second_key  # the key names the call, not the attempt


def test_when_one_foreach_item_parks_a_sibling_call_in_flight_finishes_and_is_journaled(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"pay": [("sleep", 0.3)]}))
    outcome = h.run(
        "inputs: {lines: {type: array}}\n"
        "steps:\n"
        "  - id: each\n    foreach: '${{ inputs.lines }}'\n    concurrency: 2\n    steps:\n"
        "      - id: p\n        tool: fx.pay\n        arguments: {amount: '${{ item }}'}\n"
        "        approval: {auto_approve_when: '${{ args.amount < 1000 }}', reason: small}\n",
        {"lines": [50, 5000]})
    assert outcome.status == "waiting" and outcome.waiting["step"] == "each[1].p"
    assert not outcome.waiting["in_doubt"]
    events = h.events(outcome.run_id)
    item0 = [e for e in events if e.get("step") == "each[0].p" and e["type"].startswith("action_")]
    assert [e["type"] for e in item0] == ["action_started", "action_finished"] and item0[1]["ok"]
    assert any(e["type"] == "item_finished" and e["index"] == 0 for e in events)


def test_no_new_foreach_item_starts_once_a_sibling_has_parked(tmp_path):
    h = Harness(tmp_path)
    outcome = h.run(
        "inputs: {lines: {type: array}}\n"
        "steps:\n"
        "  - id: each\n    foreach: '${{ inputs.lines }}'\n    steps:\n"
        "      - {id: p, tool: fx.pay, arguments: {amount: '${{ item }}'}}\n",
        {"lines": [1, 2, 3]})
    assert outcome.status == "waiting" and outcome.waiting["step"] == "each[0].p"
    assert len(DecisionQueue(h.store, time.time).all()) == 1  # items 1 and 2 never started


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_a_kill_between_filing_a_decision_and_journaling_it_leaves_no_orphan(tmp_path, monkeypatch):
    h = Harness(tmp_path)
    path = tmp_path / "m.yaml"
    path.write_text("mission: t\nintegrations: {fx: {command: x}}\nsteps:\n"
                    "  - {id: p, tool: fx.pay, arguments: {amount: 10}}\n")
    from studiox import mission as missions

    run_id = h.engine.start(missions.load(path), {})
    filed = DecisionQueue.request

    def dies_after_filing(self, **kwargs):
        filed(self, **kwargs)
        raise Crash()

    monkeypatch.setattr(DecisionQueue, "request", dies_after_filing)
    with pytest.raises(Crash):
        h.engine.drive(run_id)
    monkeypatch.undo()
    assert not [e for e in h.events(run_id) if e["type"] == "waiting"]
    (orphan,) = h.engine.decisions.all()
    h.engine.decisions.decide(orphan.id, APPROVED, by="tester")  # the person answers what the queue shows
    done = h.engine.drive(run_id, resume=True)
    assert done.status == "succeeded", done
    assert [tool for tool, _, _ in h.tools.calls] == ["pay"]
    assert len(h.engine.decisions.all()) == 1  # resume found the same decision, it filed no second one


def test_cancel_decides_under_the_lock_and_never_cancels_a_run_that_just_finished(tmp_path, monkeypatch):
    h = Harness(tmp_path)
    path = tmp_path / "m.yaml"
    path.write_text("mission: t\nsteps:\n  - {id: a, set: {x: 1}}\n")
    from studiox import mission as missions

    run_id = h.engine.start(missions.load(path), {})
    lock_type = type(h.store.lock(run_id))  # the backend's: a lock file, or a PostgreSQL advisory lock
    take = lock_type.acquire
    raced = []

    def acquire_after_the_run_finished(self):
        if not raced:  # the cancel's turn: the run finishes first, in between
            raced.append(True)
            assert h.engine.drive(run_id).status == "succeeded"
        return take(self)

    monkeypatch.setattr(lock_type, "acquire", acquire_after_the_run_finished)
    with pytest.raises(RunNotResumable, match="already succeeded"):
        h.engine.cancel(run_id, "too late")
    assert [e["type"] for e in h.events(run_id)][-1] == "run_finished"
    assert h.events(run_id)[-1]["status"] == "succeeded"


def test_resuming_with_a_model_request_other_than_the_journaled_one_stops_instead_of_mixing(tmp_path,
                                                                                          monkeypatch):
    world = World(tmp_path, AGENT_REPLAY)
    run_id = world.start(AGENT)
    parked = world.engine.drive(run_id)
    assert parked.status == "waiting"
    before = len(world.store.events(run_id))
    from studiox.steps import worker

    monkeypatch.setattr(worker, "answer_schema", lambda output: {"type": "object"})  # a changed prompt
    world.engine.decisions.decide(parked.waiting["decision"], APPROVED, by="tester")
    with pytest.raises(JournalMismatch, match="does not match: model turn 1 of step decide"):
        world.engine.drive(run_id, resume=True)
    after = world.store.events(run_id)
    # the attempt began again, but nothing it did was taken from (or added to) the journal
    assert [e["type"] for e in after[before:]] == ["run_resumed", "step_started"]
    assert world.tools.calls == [("check_budget", {"amount": 500}, world.tools.calls[0][2])]


def test_a_journal_written_in_a_newer_format_is_not_driven(tmp_path):
    h = Harness(tmp_path)
    h.store.add_record("run:future", {"mission": "t", "created": 1.0})
    h.store.append("future", 1, {"seq": 1, "type": "run_started", "at": 1.0, "mission": "t", "source": "",
                                 "file": "m.yaml", "digest": "", "studiox": "9.0", "journal_format": 9})
    with pytest.raises(RunNotResumable, match="format 9"):
        h.engine.drive("future", resume=True)


class SlowToDescribe(ScriptedTools):
    async def describe(self, integration, tool):
        await asyncio.sleep(0.4)
        return await super().describe(integration, tool)


def test_a_step_time_limit_covers_the_whole_attempt(tmp_path):
    h = Harness(tmp_path, SlowToDescribe({"look": [("sleep", 0.4)]}))
    outcome = h.run("steps:\n  - {id: a, tool: fx.look, timeout: 0.6s}\n")  # 0.4 s + 0.4 s > 0.6 s
    assert outcome.status == "failed" and outcome.error["kind"] == "timeout", outcome


def test_the_time_a_person_takes_at_the_prompt_does_not_count_against_the_step(tmp_path):
    h = Harness(tmp_path)

    def slow_person(decision, queue):
        time.sleep(0.8)  # reading the card takes longer than the step may
        queue.decide(decision.id, APPROVED, by="tester")

    h.engine.prompt = slow_person
    outcome = h.run("steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 1}, timeout: 0.5s}\n")
    assert outcome.status == "succeeded", outcome


def test_a_budget_raise_smaller_than_the_overshoot_asks_again(tmp_path):
    text = EXTRACT.replace("steps:", "budget: {max_tokens: 10}\nsteps:")
    world = World(tmp_path, {"extract": [{"text": "bad", "usage": USAGE_30},
                                         {"output": {"invoice_number": "I", "total": 1}}]})
    run_id = world.start(text)
    parked = world.engine.drive(run_id)  # 30 spent of 10
    decision = world.engine.decisions.get(parked.waiting["decision"])
    world.engine.decisions.decide(decision.id, APPROVED, by="cfo", action=edited_action(decision, {"raise_by": 5}))
    again = world.engine.drive(run_id, resume=True)  # 15 allowed now, still under the 30 spent
    assert again.status == "waiting" and again.waiting["action"]["kind"] == "budget"
    assert again.waiting["action"]["arguments"]["limit"] == 15 and again.waiting["decision"] != decision.id


def test_happened_and_retry_answer_only_an_in_doubt_decision(tmp_path):
    h = Harness(tmp_path)
    outcome = h.run("steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 1}}\n")
    with pytest.raises(DecisionError, match="only an in-doubt decision"):
        api.decide(h.store, outcome.waiting["decision"], APPROVED, by="tester", resolution="happened")
    assert h.engine.decisions.get(outcome.waiting["decision"]).outcome is None  # nothing recorded


def test_runs_and_status_agree_on_a_run_stopped_at_the_prompt_with_ctrl_c(tmp_path):
    h = Harness(tmp_path)

    def ctrl_c(decision, queue):
        raise KeyboardInterrupt

    h.engine.prompt = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        h.run("steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 1}}\n")
    (row,) = api.list_runs(h.store)
    _, status = api.run_status(h.store, row.id)
    assert row.status == status["status"] == "waiting"


def test_data_that_looks_like_markup_never_breaks_the_printout(sx, tmp_path):
    mission = tmp_path / "m.yaml"
    mission.write_text("mission: t\nintegrations: {fx: {command: x}}\nsteps:\n"
                       "  - {id: p, tool: fx.pay, arguments: {amount: 1, to: 'ACME [/] GmbH [bold]'}}\n")
    result = sx("run", mission, "--no-input")
    assert result.returncode == 3, result.stderr
    assert "ACME [/] GmbH [bold]" in result.stdout
    decided = sx("decisions", "--json")
    assert json.loads(decided.stdout)[0]["action"]["arguments"]["to"] == "ACME [/] GmbH [bold]"



def test_a_worker_whose_call_was_rejected_resumes_after_a_later_park_with_the_same_conversation(tmp_path):
    two_payments = {"decide": [
        {"tool_calls": [{"tool": "erp.pay", "arguments": {"amount": 500}}]},
        {"tool_calls": [{"tool": "erp.pay", "arguments": {"amount": 400}}]},
        {"output": {"paid": True}, "reasoning": "the second payment went through"},
    ]}
    world = World(tmp_path, two_payments)
    run_id = world.start(AGENT)
    first = world.engine.drive(run_id)
    world.engine.decisions.decide(first.waiting["decision"], "rejected", by="cfo", note="too much")
    second = world.engine.drive(run_id, resume=True)  # the model is told, and asks for 400: parks again
    assert second.status == "waiting" and second.waiting["action"]["arguments"] == {"amount": 400}
    done = _approve_and_resume(world, run_id, second)  # the conversation is rebuilt exactly: no mismatch
    assert done.status == "succeeded" and done.verdict == "Paid", done
    assert [args for args, _ in _pays(world)] == [{"amount": 400}]
