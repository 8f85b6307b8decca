"""The engine in-process: step semantics, retries with a fake clock, time limits, on_error, resume."""

from __future__ import annotations

import asyncio
import json

import pytest

from studiox import mission as missions
from studiox.adapters.ports import Ports
from studiox.engine import Engine
from studiox.errors import StepError
from studiox.state import backends
from studiox.state.journal import derive

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL


class ScriptedTools:
    """A tools door whose answers are scripted per tool: a value, an exception, or a delay."""

    def __init__(self, script: dict | None = None, gated: tuple[str, ...] = ("pay", "post_payment")):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[tuple[str, dict, str]] = []
        self.gated = gated  # state-changing tools; every other tool says it is read-only

    async def describe(self, integration, tool):
        schema = {"type": "object", "properties": {"amount": {"type": "number"}}}
        return {"read_only": tool not in self.gated, "input_schema": schema}

    async def call(self, integration, tool, arguments, *, key):
        self.calls.append((tool, arguments, key))
        answers = self.script.get(tool)
        answer = answers.pop(0) if answers else {"ok": True}
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, tuple) and answer[0] == "sleep":
            await asyncio.sleep(answer[1])
            return {"slept": answer[1]}
        return answer

    async def close(self):
        return None


class Harness:
    def __init__(self, tmp_path, tools=None):
        self.store = backends.open_store(tmp_path / "home", create=True)  # the backend the test runs on
        self.tools = tools or ScriptedTools()
        self.sleeps: list[float] = []
        self.tmp = tmp_path

        async def fake_sleep(seconds):
            self.sleeps.append(seconds)

        self.engine = Engine(self.store, ports=lambda m, run_id, options: Ports(tools=self.tools), sleep=fake_sleep,
                             rng=lambda: 0.5, clock=lambda: 1_000.0)

    def run(self, text: str, inputs: dict | None = None):
        path = self.tmp / "m.yaml"
        path.write_text("mission: t\nintegrations: {fx: {command: x}}\n" + text)
        mission = missions.load(path)
        run_id = self.engine.start(mission, inputs or {})
        return self.engine.drive(run_id)

    def events(self, run_id):
        return self.store.events(run_id)


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.store.close()


def test_set_steps_read_inputs_and_earlier_outputs_and_the_verdict_uses_them(h):
    outcome = h.run(
        "inputs: {amount: {type: number}}\n"
        "steps:\n"
        "  - {id: a, set: {double: '${{ inputs.amount * 2 }}'}}\n"
        "  - {id: b, set: {label: 'amount ${{ steps.a.output.double }}'}}\n"
        "verdict: {choices: [Big, Small], value: \"${{ 'Big' if steps.a.output.double > 100 else 'Small' }}\","
        " note: '${{ steps.b.output.label }}'}\n",
        {"amount": 60},
    )
    assert (outcome.status, outcome.verdict, outcome.note) == ("succeeded", "Big", "amount 120")


def test_retries_back_off_exponentially_with_jitter_and_every_attempt_is_journaled(h):
    h.tools.script = {"flaky": [StepError("tool_error", "down"), StepError("tool_error", "down"), {"ok": 1}]}
    outcome = h.run("steps:\n  - id: call\n    tool: fx.flaky\n"
                    "    retry: {attempts: 4, backoff: 2s, factor: 3, max_delay: 5s}\n")
    assert outcome.status == "succeeded"
    # jitter with rng=0.5 scales each wait by 0.75: 2s, then 6s capped at 5s
    assert h.sleeps == [1.5, 3.75]
    events = h.events(outcome.run_id)
    assert [e["attempt"] for e in events if e["type"] == "step_failed"] == [1, 2]
    assert [e["attempt"] for e in events if e["type"] == "step_started"] == [1, 2, 3]
    assert next(e for e in events if e["type"] == "step_finished")["attempts"] == 3


def test_retry_gives_up_after_its_attempts_and_the_run_fails(h):
    h.tools.script = {"flaky": [StepError("tool_error", "down")] * 5}
    outcome = h.run("steps:\n  - {id: call, tool: fx.flaky, retry: {attempts: 2, backoff: 1s, jitter: false}}\n")
    assert outcome.status == "failed"
    assert outcome.error == {"step": "call", "kind": "tool_error", "message": "down"}
    assert h.sleeps == [1.0]


def test_retry_only_retries_the_error_kinds_it_names(h):
    h.tools.script = {"flaky": [StepError("tool_error", "down"), {"ok": 1}]}
    outcome = h.run("steps:\n  - {id: call, tool: fx.flaky, retry: {attempts: 3, on: [timeout]}}\n")
    assert outcome.status == "failed" and h.sleeps == []


def test_a_slow_step_hits_its_time_limit(h):
    h.tools.script = {"slow": [("sleep", 5)]}
    outcome = h.run("steps:\n  - {id: call, tool: fx.slow, timeout: 100ms}\n")
    assert outcome.status == "failed"
    assert outcome.error["kind"] == "timeout"
    assert "time limit of 0.1s" in outcome.error["message"]


def test_on_error_continue_records_the_error_for_later_steps(h):
    h.tools.script = {"bad": [StepError("tool_error", "nope")]}
    outcome = h.run(
        "steps:\n  - {id: call, tool: fx.bad, on_error: continue}\n"
        "  - {id: after, set: {saw: '${{ steps.call.status }}', why: '${{ steps.call.error.message }}'}}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ steps.after.output.saw }}: ${{ steps.after.output.why }}'}\n"
    )
    assert (outcome.status, outcome.note) == ("succeeded", "failed: nope")


def test_on_error_goto_jumps_to_the_named_step(h):
    h.tools.script = {"bad": [StepError("tool_error", "nope")]}
    outcome = h.run(
        "steps:\n  - {id: call, tool: fx.bad, on_error: {goto: recover}}\n"
        "  - {id: skipped_over, finish: {verdict: Wrong}}\n"
        "  - {id: recover, finish: {verdict: Recovered}}\n"
        "verdict: {choices: [Wrong, Recovered], value: Wrong}\n"
    )
    assert outcome.verdict == "Recovered"
    finished = [e["step"] for e in h.events(outcome.run_id) if e["type"] == "step_finished"]
    assert finished == ["call", "recover"]


def test_when_false_skips_the_step_and_its_output_is_null(h):
    outcome = h.run(
        "steps:\n  - {id: maybe, when: '${{ 1 > 2 }}', tool: fx.never}\n"
        "  - {id: after, set: {out: '${{ steps.maybe.output }}', status: '${{ steps.maybe.status }}'}}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ steps.after.output.status }}'}\n"
    )
    assert outcome.note == "skipped" and h.tools.calls == []


def test_a_branch_loop_is_bounded_by_max_iterations(h):
    outcome = h.run(
        "steps:\n  - {id: tick, tool: fx.tick}\n"
        "  - id: again\n    branch: {cases: [{when: true, goto: tick}], max_iterations: 3}\n"
    )
    # the branch may run 3 times, so it jumps back 3 times: tick runs 4 times, then the loop stops
    assert outcome.status == "failed" and outcome.error["kind"] == "loop"
    assert len(h.tools.calls) == 4
    # each visit of a step has its own address, so resume can tell the visits apart
    keys = [key for _, _, key in h.tools.calls]
    assert [k.split("/")[1] for k in keys] == ["tick", "tick#2", "tick#3", "tick#4"]


def test_foreach_runs_items_concurrently_up_to_its_limit_and_collects_outputs(h):
    running, peak = 0, 0

    class Counting(ScriptedTools):
        async def call(self, integration, tool, arguments, *, key):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            return {"n": arguments["n"] * 10}

    h.tools = Counting()
    outcome = h.run(
        "steps:\n  - id: each\n    foreach: '${{ [1, 2, 3, 4, 5] }}'\n    as: number\n    concurrency: 2\n"
        "    steps:\n      - {id: call, tool: fx.times, arguments: {n: '${{ number }}'}}\n"
        "      - {id: label, set: {i: '${{ loop.index }}', v: '${{ steps.call.output.n }}'}}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ [r.label.v for r in steps.each.output] }}'}\n"
    )
    assert outcome.note == "[10, 20, 30, 40, 50]"
    assert peak == 2
    items = [e["index"] for e in h.events(outcome.run_id) if e["type"] == "item_finished"]
    assert sorted(items) == [0, 1, 2, 3, 4]


def test_a_failing_item_fails_the_foreach_with_the_item_named(h):
    h.tools.script = {"bad": [{"ok": 1}, StepError("tool_error", "broken")]}
    outcome = h.run(
        "steps:\n  - id: each\n    foreach: '${{ [1, 2] }}'\n"
        "    steps:\n      - {id: call, tool: fx.bad}\n"
    )
    assert outcome.status == "failed"
    assert outcome.error["message"] == "item 1: broken"


def test_finish_ends_early_and_fail_fails_with_its_message(h):
    outcome = h.run("steps:\n  - {id: stop, finish: {verdict: Early, note: 'n=${{ 1 + 1 }}'}}\n"
                    "verdict: {choices: [Early, Late], value: Late}\n")
    assert (outcome.verdict, outcome.note) == ("Early", "n=2")
    outcome = h.run("steps:\n  - {id: stop, fail: 'cannot go on: ${{ 40 + 2 }}'}\n")
    assert outcome.status == "failed" and outcome.error["message"] == "cannot go on: 42"


def test_an_expression_error_at_run_time_fails_the_step_clearly(h):
    outcome = h.run("inputs: {x: {type: string}}\nsteps:\n  - {id: a, set: {y: '${{ inputs.x + 1 }}'}}\n",
                    {"x": "text"})
    assert outcome.status == "failed"
    assert outcome.error["kind"] == "expression"
    assert "cannot add text and number" in outcome.error["message"]


def test_a_verdict_outside_the_choices_fails_the_run(h):
    outcome = h.run("steps:\n  - {id: a, set: {v: Maybe}}\n"
                    "verdict: {choices: [Approve, Deny], value: '${{ steps.a.output.v }}'}\n")
    assert outcome.status == "failed" and "'Maybe' is not one of Approve, Deny" in outcome.error["message"]


def test_resume_takes_journaled_outcomes_and_never_reruns_a_finished_step(h, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("mission: t\nintegrations: {fx: {command: x}}\nsteps:\n"
                    "  - {id: one, tool: fx.one}\n  - {id: two, tool: fx.two}\n")
    mission = missions.load(path)
    run_id = h.engine.start(mission, {})
    # simulate a process that died after step one finished: journal it by hand, as the engine would
    from studiox.state.journal import Journal

    journal = Journal(h.store, run_id, clock=lambda: 1.0)
    journal.append("step_started", step="one", kind="tool", attempt=1)
    journal.append("step_finished", step="one", status="succeeded", output={"from": "journal"}, attempts=1)
    outcome = h.engine.drive(run_id, resume=True)
    assert outcome.status == "succeeded"
    assert [tool for tool, _, _ in h.tools.calls] == ["two"]
    state = derive(run_id, h.store.events(run_id))
    assert state.done["one"]["output"] == {"from": "journal"} and state.resumed == 1


def test_appending_never_overwrites_an_event(h):
    from studiox.errors import StoreError

    h.store.append("r", 1, {"seq": 1, "type": "x", "at": 1.0})
    with pytest.raises(StoreError, match="already written"):
        h.store.append("r", 1, {"seq": 1, "type": "y", "at": 2.0})
    assert h.store.events("r") == [{"seq": 1, "type": "x", "at": 1.0}]


def test_an_approval_binds_to_the_exact_action_a_different_one_never_runs(h, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("mission: t\nintegrations: {fx: {command: x}}\nsteps:\n"
                    "  - {id: pay, tool: fx.pay, arguments: {amount: 10}}\n")
    run_id = h.engine.start(missions.load(path), {})
    from studiox.state.journal import Journal

    # an approval on record for this step, but of other arguments than the ones the step will send
    Journal(h.store, run_id, clock=lambda: 1.0).append(
        "decision_applied", step="pay", decision="abc123", status="approved", by="someone",
        action={"kind": "tool", "target": "fx.pay", "arguments": {"amount": 99999}, "digest": "x"},
        proposed_digest="not-the-digest-of-amount-10")
    outcome = h.engine.drive(run_id, resume=True)
    assert outcome.status == "failed" and "differs from the one that was approved" in outcome.error["message"]
    assert h.tools.calls == []


def test_gated_steps_inside_a_foreach_park_the_whole_run(h):
    outcome = h.run("steps:\n  - id: each\n    foreach: '${{ [1, 2] }}'\n"
                    "    steps:\n      - {id: pay, tool: fx.pay, arguments: {amount: '${{ item }}'}}\n")
    assert outcome.status == "waiting" and outcome.waiting["step"].startswith("each[")
    assert h.tools.calls == []


def test_a_tool_result_holding_nan_fails_the_step_and_never_reaches_the_journal(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [{"rate": float("nan")}]}))
    outcome = h.run("steps:\n  - {id: a, tool: fx.look}\n")
    assert outcome.status == "failed"
    assert outcome.error["kind"] == "invalid_output" and "NaN at output.rate" in outcome.error["message"]
    for event in h.events(outcome.run_id):
        json.dumps(event, allow_nan=False)  # nothing JSON cannot keep was journaled
