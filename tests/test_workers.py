"""AI Workers: structured output and repair, the agentic loop through the gate, budgets, provider
faults, the response cache. Model answers come from replay files fed through litellm's own mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import cli
from test_engine import ScriptedTools

from studiox import mission as missions
from studiox.adapters.models import LiteLLMModels, Replay, _retry_after, reply_dict
from studiox.adapters.ports import Ports
from studiox.engine import Engine
from studiox.governance import APPROVED, REJECTED
from studiox.state import backends

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

EXTRACT = """
mission: w
models:
  fast: openai/gpt-4o-mini
integrations: {erp: {command: unused}}
steps:
  - id: extract
    worker:
      instructions: Extract the invoice fields.
      input: "INVOICE INV-1, total 500"
      output:
        type: object
        required: [invoice_number, total]
        properties: {invoice_number: {type: string}, total: {type: number}}
"""

AGENT = """
mission: agent
models: {fast: openai/gpt-4o-mini}
integrations: {erp: {command: unused}}
steps:
  - id: decide
    worker:
      instructions: Check the budget, then pay.
      input: {invoice: INV-1, amount: 500}
      tools: [erp.check_budget, erp.pay]
      output: {type: object, required: [paid], properties: {paid: {type: boolean}}}
verdict: {choices: [Paid, Unpaid], value: "${{ 'Paid' if steps.decide.output.paid else 'Unpaid' }}"}
"""

USAGE_30 = {"input_tokens": 10, "output_tokens": 20}  # what a replayed turn counts against budgets

AGENT_REPLAY = {"decide": [
    {"tool_calls": [{"tool": "erp.check_budget", "arguments": {"amount": 500}}]},
    {"tool_calls": [{"tool": "erp.pay", "arguments": {"amount": 500}}]},
    {"output": {"paid": True}, "reasoning": "budget ok, payment approved"},
]}


class CountingModels(LiteLLMModels):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[int] = []

    async def complete(self, call, *, address, step_id, index):
        self.asked.append(index)
        return await super().complete(call, address=address, step_id=step_id, index=index)


class World:
    """An engine with a replayed model and scripted tools, in one state folder."""

    def __init__(self, tmp_path, answers: dict, tools: ScriptedTools | None = None):
        self.tmp = tmp_path
        self.store = backends.open_store(tmp_path / "home", create=True)  # the backend the test runs on
        self.tools = tools or ScriptedTools(gated=("pay",))
        self.sleeps: list[float] = []

        async def sleep(seconds):
            self.sleeps.append(seconds)

        self.models = CountingModels(Replay(answers), sleep=sleep)
        self.engine = Engine(self.store, ports=lambda m, r, o: Ports(tools=self.tools, models=self.models),
                             sleep=sleep)

    def start(self, text: str, options: dict | None = None) -> str:
        path = self.tmp / "m.yaml"
        path.write_text(text)
        return self.engine.start(missions.load(path), {}, options)

    def run(self, text: str, options: dict | None = None):
        run_id = self.start(text, options)
        return self.engine.drive(run_id)

    def events(self, run_id, kind):
        return [e for e in self.store.events(run_id) if e["type"] == kind]


def test_a_valid_first_answer_is_the_output_and_its_reasoning_goes_to_the_rail(tmp_path):
    world = World(tmp_path, {"extract": [{"output": {"invoice_number": "INV-1", "total": 500},
                                          "reasoning": "it says so at the top"}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "succeeded"
    finished = world.events(outcome.run_id, "step_finished")[0]
    assert finished["output"] == {"invoice_number": "INV-1", "total": 500}
    assert any(o["message"] == "reasoning: it says so at the top" for o in world.events(outcome.run_id, "observation"))
    call = world.events(outcome.run_id, "model_call")[0]
    assert call["model"] == "gpt-4o-mini" and call["replayed"] is True
    assert call["input_tokens"] is None and call["cost_usd"] is None  # a replayed turn invents no usage


def test_an_invalid_answer_is_repaired_by_telling_the_model_what_was_wrong(tmp_path):
    world = World(tmp_path, {"extract": [
        {"text": "INV-1, 500"},
        {"output": {"invoice_number": "INV-1", "total": "five hundred"}},
        {"output": {"invoice_number": "INV-1", "total": 500}}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "succeeded"
    notes = [o["message"] for o in world.events(outcome.run_id, "observation")]
    assert sum("asking the model to repair it" in n for n in notes) == 2
    assert "output.total: 'five hundred' is not of type 'number'" in notes[1]


def test_an_answer_still_invalid_after_two_repairs_fails_with_the_last_answer(tmp_path):
    world = World(tmp_path, {"extract": [{"text": "nope"}, {"text": "still nope"}, {"output": {"total": 1}}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "failed" and outcome.error["kind"] == "invalid_output"
    assert "after 2 repairs" in outcome.error["message"]
    assert "'invoice_number' is a required property" in outcome.error["message"]
    assert '"total": 1' in outcome.error["message"]  # the model's last answer


def test_the_agentic_loop_pauses_at_a_gated_tool_and_resumes_without_asking_the_model_again(tmp_path):
    world = World(tmp_path, AGENT_REPLAY)
    run_id = world.start(AGENT)
    parked = world.engine.drive(run_id)
    assert parked.status == "waiting" and parked.waiting["action"]["target"] == "erp.pay"
    assert [tool for tool, _, _ in world.tools.calls] == ["check_budget"]  # read-only ran freely
    assert world.models.asked == [0, 1]
    world.engine.decisions.decide(parked.waiting["decision"], APPROVED, by="tester")
    done = world.engine.drive(run_id, resume=True)
    assert done.verdict == "Paid"
    assert [tool for tool, _, _ in world.tools.calls] == ["check_budget", "pay"]  # each tool once
    assert world.models.asked == [0, 1, 2]  # turns already taken were not asked again
    key = world.tools.calls[1][2]
    assert key.startswith(f"{run_id}/decide/erp.pay#")  # the step and the call itself, not the attempt


def test_a_rejected_tool_call_is_told_to_the_model_as_the_tools_answer(tmp_path):
    answers = {"decide": AGENT_REPLAY["decide"][:2] + [{"output": {"paid": False}, "reasoning": "payment refused"}]}
    world = World(tmp_path, answers)
    run_id = world.start(AGENT)
    parked = world.engine.drive(run_id)
    world.engine.decisions.decide(parked.waiting["decision"], REJECTED, by="tester", note="wrong supplier")
    done = world.engine.drive(run_id, resume=True)
    assert done.verdict == "Unpaid"
    assert [tool for tool, _, _ in world.tools.calls] == ["check_budget"]
    last_call = world.events(run_id, "model_call")[-1]
    assert last_call["index"] == 2
    # the conversation the model saw ends with the tool's answer: the rejection and its reason
    from studiox.state.journal import derive

    state = derive(run_id, world.store.events(run_id))
    assert state.actions["decide/call2"]["error"]["message"] == "a person rejected this call: wrong supplier"


def test_a_used_up_budget_asks_to_go_on_and_a_rejection_ends_the_run_clearly(tmp_path):
    text = EXTRACT.replace("steps:", "budget: {max_tokens: 40}\nsteps:") + (
        "  - id: again\n    worker: {instructions: again, input: x}\n")
    world = World(tmp_path, {"extract": [{"text": "bad", "usage": USAGE_30},
                                         {"output": {"invoice_number": "I", "total": 1}, "usage": USAGE_30}],
                             "again": [{"output": "fine"}]})
    run_id = world.start(text)
    # each scripted call counts 30 tokens; the budget is checked before each call, so the call that
    # crosses 40 still runs and the next one asks first
    parked = world.engine.drive(run_id)
    assert parked.status == "waiting" and parked.waiting["action"]["kind"] == "budget"
    assert parked.waiting["step"] == "again"
    assert parked.waiting["action"]["arguments"] == {"limit": 40, "spent": 60, "raise_by": 40}
    world.engine.decisions.decide(parked.waiting["decision"], APPROVED, by="tester")
    done = world.engine.drive(run_id, resume=True)  # 60 spent of 80 allowed now
    assert done.status == "succeeded", done
    text2 = text.replace("max_tokens: 40", "max_tokens: 10")
    world2 = World(tmp_path / "2", {"extract": [{"text": "bad", "usage": USAGE_30},
                                                {"output": {"invoice_number": "I", "total": 1}}]})
    run2 = world2.start(text2)
    parked = world2.engine.drive(run2)
    world2.engine.decisions.decide(parked.waiting["decision"], REJECTED, by="cfo", note="enough")
    failed = world2.engine.drive(run2, resume=True)
    assert failed.status == "failed" and failed.error["kind"] == "budget"
    assert "declined to raise it: enough" in failed.error["message"]


def test_rate_limits_are_retried_with_backoff(tmp_path):
    world = World(tmp_path, {"extract": [{"error": "litellm.RateLimitError", "times": 2,
                                          "then": {"output": {"invoice_number": "I", "total": 2}}}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "succeeded"
    assert world.sleeps == [2.0, 4.0]


def test_retry_after_is_honoured():
    import httpx
    import litellm

    error = litellm.RateLimitError("slow down", llm_provider="openai", model="m",
                                   response=httpx.Response(429, headers={"retry-after": "7"},
                                                           request=httpx.Request("POST", "http://x")))
    assert _retry_after(error) == 7.0


def test_a_context_window_overflow_is_a_clear_step_error(tmp_path):
    world = World(tmp_path, {"extract": [{"error": "litellm.ContextWindowExceededError"}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "failed"
    assert "too long for openai/gpt-4o-mini's context window" in outcome.error["message"]


def test_missing_credentials_name_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    world = World(tmp_path, {})
    world.models.replay = None  # a real call: it must stop before any network access
    outcome = world.run(EXTRACT)
    assert outcome.status == "failed"
    assert "the model openai/gpt-4o-mini needs the environment variable OPENAI_API_KEY" in outcome.error["message"]


class ProviderModels:
    """Stands for a real provider (replayed answers are never cached): answers once, then nothing."""

    def __init__(self, content: str):
        self.content: str | None = content

    async def complete(self, call, *, address, step_id, index):
        if self.content is None:
            raise AssertionError("the provider was asked twice")
        content, self.content = self.content, None
        return reply_dict(content, [], model="gpt-4o-mini", input_tokens=12, output_tokens=8, cost_usd=0.0001,
                          latency_s=0.5)


def test_identical_requests_are_answered_from_the_cache(tmp_path):
    world = World(tmp_path, {})
    world.models = ProviderModels(json.dumps({"reasoning": "r", "output": {"invoice_number": "I", "total": 3}}))
    first = world.run(EXTRACT, {"cache": True})
    second = world.run(EXTRACT, {"cache": True})  # the provider would fail now: only the cache can answer
    assert second.status == "succeeded", second.error
    call = world.events(second.run_id, "model_call")[0]
    assert call["cached"] is True and call["cost_usd"] == 0.0
    assert world.events(first.run_id, "model_call")[0]["cached"] is False


def test_the_run_model_option_overrides_the_mission_default_but_not_a_step_choice(tmp_path):
    world = World(tmp_path, {"extract": [{"output": {"invoice_number": "I", "total": 3}}]})
    outcome = world.run(EXTRACT, {"model": "anthropic/claude-3-5-haiku-latest"})
    assert world.events(outcome.run_id, "model_call")[0]["model"].startswith("claude-3-5-haiku")
    pinned = EXTRACT.replace("      instructions:", "      model: fast\n      instructions:")
    world = World(tmp_path / "b", {"extract": [{"output": {"invoice_number": "I", "total": 3}}]})
    outcome = world.run(pinned, {"model": "anthropic/claude-3-5-haiku-latest"})
    assert world.events(outcome.run_id, "model_call")[0]["model"] == "gpt-4o-mini"


def test_the_cli_runs_a_worker_offline_with_replay_and_status_shows_usage(tmp_path):
    mission = tmp_path / "m.yaml"
    mission.write_text(EXTRACT)
    replay = tmp_path / "replay.yaml"
    replay.write_text("extract:\n  - output: {invoice_number: INV-1, total: 500}\n    reasoning: read it\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("STUDIOX_", "OPENAI"))},
           "STUDIOX_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = cli("run", mission, "--replay", replay, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "· reasoning: read it" in result.stdout
    assert "model gpt-4o-mini: replayed" in result.stdout
    run_id = result.stdout.split()[1]
    status = json.loads(cli("status", run_id, "--json", env=env).stdout)
    assert status["usage"]["model_calls"] == 1 and status["usage"]["replayed"] == 1
    assert status["usage"]["cost_usd"] is None  # nothing was spent, and no dollars are invented


@pytest.mark.parametrize("args", [["validate", "missions/invoice.yaml"], ["runs"], ["status", "--help"],
                                  ["validate", "missions/invoice.yaml", "--replay", "missions/data/replies/invoice-INV-2291.yaml"]])
def test_commands_that_run_no_model_do_not_import_litellm(args, tmp_path):
    # a subprocess: what a command imports is only seen in a fresh interpreter
    probe = ("import sys; from studiox.cli import main; code = main(sys.argv[1:]); "
             "print('LITELLM' if 'litellm' in sys.modules else 'CLEAN'); sys.exit(code)")
    from conftest import ROOT

    result = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "STUDIOX_HOME": str(tmp_path / "home")})
    assert result.stdout.strip().endswith("CLEAN"), result.stdout + result.stderr


class SimulatedCrash(BaseException):
    """Stands for kill -9: raised right after an event is on disk, caught by nothing in studiox."""


AUTO_AGENT = AGENT.replace("verdict:", "    approval:\n      auto_approve_when: ${{ args.amount < 1000 }}\n"
                                      "      reason: small\nverdict:")


def test_a_crash_after_any_event_of_an_agentic_worker_never_repeats_a_turn_or_a_payment(tmp_path):
    from studiox.adapters.models import _litellm

    _litellm()  # imported before the probe: no 'loading the model client' line makes one run longer than another
    probe = World(tmp_path / "probe", AGENT_REPLAY)
    total = len(probe.store.events(probe.run(AUTO_AGENT).run_id))
    for k in range(2, total):
        world = World(tmp_path / str(k), AGENT_REPLAY)

        def crash(event, k=k):
            if event["seq"] == k:
                raise SimulatedCrash()

        world.engine.listener = crash
        run_id = world.start(AUTO_AGENT)
        with pytest.raises(SimulatedCrash):
            world.engine.drive(run_id)
        world.engine.listener = None
        outcome = world.engine.drive(run_id, resume=True)
        if outcome.status == "waiting":  # the payment call was cut off: a person says it did not happen
            assert outcome.waiting["in_doubt"], k
            world.engine.decisions.decide(outcome.waiting["decision"], APPROVED, by="tester", resolution="retry")
            outcome = world.engine.drive(run_id, resume=True)
        assert outcome.verdict == "Paid", (k, outcome)
        assert [tool for tool, _, _ in world.tools.calls].count("pay") == 1, k
        assert sorted(set(world.models.asked)) == sorted(world.models.asked), k  # no turn asked twice


def test_max_turns_bounds_the_agentic_loop(tmp_path):
    looping = AGENT.replace("      tools: [erp.check_budget, erp.pay]\n",
                            "      tools: [erp.check_budget, erp.pay]\n      max_turns: 2\n")
    again = {"tool_calls": [{"tool": "erp.check_budget", "arguments": {"amount": 1}}]}
    world = World(tmp_path, {"decide": [again, again, again]})
    outcome = world.run(looping)
    assert outcome.status == "failed"
    assert outcome.error["message"] == "the worker reached its limit of 2 model turns without a final answer"
    assert world.models.asked == [0, 1]


def test_a_budget_raise_can_be_edited_but_only_to_a_positive_amount(tmp_path):
    from studiox.edits import edited_action
    from studiox.governance import DecisionError

    text = EXTRACT.replace("steps:", "budget: {max_tokens: 10}\nsteps:")
    world = World(tmp_path, {"extract": [{"text": "bad", "usage": USAGE_30},
                                         {"output": {"invoice_number": "I", "total": 1}}]})
    run_id = world.start(text)
    parked = world.engine.drive(run_id)
    decision = world.engine.decisions.get(parked.waiting["decision"])
    with pytest.raises(DecisionError, match="raise_by=N"):
        edited_action(decision, {"raise_by": -5})
    more = edited_action(decision, {"raise_by": 1000})
    world.engine.decisions.decide(decision.id, APPROVED, by="cfo", action=more)
    done = world.engine.drive(run_id, resume=True)
    assert done.status == "succeeded"  # one extension of 1000 tokens was enough
    assert len(world.events(run_id, "decision_applied")) == 1
