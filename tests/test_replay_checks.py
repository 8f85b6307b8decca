"""Replay files checked against the mission they script (``validate MISSION --replay FILE``, ``run --replay``).

A key must name a worker of the mission (a step id, or an address as the engine forms it), an
``output`` must fit that worker's output schema, and a tool call must name a tool the worker is
offered; each problem says file, line and column, and what was probably meant.
"""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, write_mission
from test_workers import AGENT, EXTRACT, World

from studiox import mission as missions
from studiox.adapters.replay import reply_dict
from studiox.mission import yamlread
from studiox.replay_checks import replay_problems

pytestmark = pytest.mark.backends("local", reason="replay files are under test; the store is incidental")

LOOP = """
mission: loop
models: {fast: openai/gpt-4o-mini}
integrations: {erp: {command: unused}}
inputs:
  lines: {type: array}
steps:
  - id: lines
    foreach: ${{ inputs.lines }}
    steps:
      - id: check
        worker:
          instructions: Check one line.
          input: ${{ item }}
          tools: [erp.check_budget]
          output: {type: object, required: [ok], properties: {ok: {type: boolean}}}
  - id: total
    set: {n: 1}
  - id: again
    branch:
      max_iterations: 3
      cases:
        - when: ${{ false }}
          goto: lines
"""


UNFIT = ", so it does not fit the output schema of 'extract' (an answer meant to be repaired is written as 'text:')"


def _check(tmp_path, mission_text: str, replay_text: str):
    """``studiox validate`` of a mission and a replay file, in the test process."""
    from conftest import cli

    mission = write_mission(tmp_path / "m.yaml", mission_text)
    replay = tmp_path / "replay.yaml"
    replay.write_text(replay_text)
    return cli("validate", mission, "--replay", replay, "--json"), replay


def _problems(tmp_path, mission_text: str, replay_text: str) -> list[str]:
    result, replay = _check(tmp_path, mission_text, replay_text)
    shown = json.loads(result.stdout)["replay"]
    assert result.returncode == (2 if shown["problems"] else 0), result.stdout + result.stderr
    return [f"{p['line']}:{p['column']}: {p['path']}: {p['message']}" for p in shown["problems"]]


# ---------------------------------------------------------------------------- the shipped examples


def test_the_shipped_invoice_replay_fits_the_invoice_mission(studiox):
    result = studiox("validate", ROOT / "missions" / "invoice.yaml", "--replay",
                     ROOT / "missions" / "data" / "replies/invoice-INV-2291.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replies/invoice-INV-2291.yaml: its answers fit mission invoice-approval" in result.stdout


def test_the_expenses_example_has_no_worker_and_so_no_replay_file():
    mission = missions.load(ROOT / "missions" / "expenses.yaml")
    assert not [s for s in mission.walk() if s.kind == "worker"]
    assert not list((ROOT / "missions").rglob("expenses*.replay.*"))


# ---------------------------------------------------------------------------- keys: steps and addresses


def test_a_key_that_is_no_step_is_located_with_a_did_you_mean(tmp_path):
    found = _problems(tmp_path, EXTRACT, "# scripted\nextrct:\n  - output: {invoice_number: INV-1, total: 1}\n")
    assert found == ["2:1: step 'extrct': there is no step 'extrct' in the mission — did you mean 'extract'?"]


def test_a_key_naming_a_step_that_is_not_a_worker_says_so(tmp_path):
    text = EXTRACT + "  - id: budget\n    tool: erp.check_budget\n    arguments: {amount: 1}\n"
    found = _problems(tmp_path, text, "budget:\n  - output: 1\n")
    assert found == ["1:1: step 'budget': 'budget' is a tool step, not a worker: only workers ask a model"]


@pytest.mark.parametrize("key", ["check", "lines[2].check", "lines#2[0].check", "lines[0].check", "lines#3[12].check"])
def test_a_worker_inside_a_foreach_is_named_by_its_id_or_by_its_address(tmp_path, key):
    assert _problems(tmp_path, LOOP, f"{key}:\n  - output: {{ok: true}}\n") == []


@pytest.mark.parametrize("key, message", [
    ("lnes[2].check", "there is no step 'lnes' at the top of the mission — did you mean 'lines[2].check'?"),
    ("lines[2].chek", "there is no step 'chek' inside the foreach 'lines' — did you mean 'lines[2].check'?"),
    ("chek", "there is no step 'chek' in the mission — did you mean 'check'?"),
    ("lines[1]", "'lines[1]' is an item of a foreach, not a worker: name the worker inside it, such as "
                 "'lines[1].check'"),
    ("lines", "'lines' is a foreach step, not a worker: only workers ask a model; script the worker inside it "
              "instead: 'check' (every item), or 'lines[0].check'"),
    ("lines.check", "'lines' is a foreach: name one of its items, such as 'lines[0]', before the step inside"),
    ("total[0].check", "'total' is a set step, not a foreach: no step runs inside it"),
    ("check#2", "there is no step 'check' at the top of the mission; its address is like 'lines[0].check#2'"),
    ("lines[3].total", "there is no step 'total' inside the foreach 'lines'; its address is like 'total'"),
    ("lines[0].check#2", "'check' runs once: no branch jumps back to it, so there is no 'check#2'"),
    ("lines[0].check#1", "'check#1' never appears in an address: a first visit is written without '#', a second "
                         "as 'check#2'"),
    ("lines[x].check", "'lines[x].check' is neither a step id nor a step address (such as 'extract', 'extract#2' "
                       "or 'lines[2].check')"),
])
def test_an_address_that_names_no_worker_says_what_is_there_instead(tmp_path, key, message):
    found = _problems(tmp_path, LOOP, f"ok:\n  - output: 1\n{key}:\n  - output: {{ok: true}}\n")
    assert f"3:1: step '{key}': {message}" in found


# ---------------------------------------------------------------------------- answers: outputs and tools


def test_an_output_that_does_not_fit_the_output_schema_is_located_at_the_field(tmp_path):
    replay = ("extract:\n  - output:\n      invoice_number: INV-1\n      total: five hundred\n"
              "  - output: {total: 1}\n")
    found = _problems(tmp_path, EXTRACT, replay)
    assert found == [f"4:14: step 'extract', answer 1: output.total: 'five hundred' is not of type 'number'{UNFIT}",
                     f"5:13: step 'extract', answer 2: output: 'invoice_number' is a required property{UNFIT}"]


def test_a_raw_text_answer_is_not_held_to_the_schema_but_an_answer_after_an_error_is(tmp_path):
    replay = ("extract:\n  - text: INV-1, 500\n  - error: litellm.RateLimitError\n    then:\n"
              "      output: {invoice_number: 1, total: 1}\n")
    found = _problems(tmp_path, EXTRACT, replay)
    assert found == [f"5:32: step 'extract', answer 2 (then): output.invoice_number: 1 is not of type 'string'{UNFIT}"]


def test_a_worker_without_an_output_schema_answers_text(tmp_path):
    text = EXTRACT.replace("      output:\n        type: object\n        required: [invoice_number, total]\n"
                           "        properties: {invoice_number: {type: string}, total: {type: number}}\n", "")
    assert _problems(tmp_path, text, "extract:\n  - output: just text\n") == []
    assert _problems(tmp_path, text, "extract:\n  - output: {a: 1}\n") == [
        f"2:13: step 'extract', answer 1: output: {{'a': 1}} is not of type 'string'{UNFIT}"]


def test_a_call_to_a_tool_the_worker_is_not_offered_is_located_with_a_did_you_mean(tmp_path):
    replay = ("decide:\n  - tool_calls:\n      - {tool: erp.check_budget, arguments: {amount: 1}}\n"
              "      - tool: erp.chek_budget\n        arguments: {amount: 1}\n  - output: {paid: true}\n")
    found = _problems(tmp_path, AGENT, replay)
    assert found == ["4:15: step 'decide', answer 1: tool_calls[1]: 'erp.chek_budget' is not a tool the worker "
                     "'decide' is offered (its tools: erp.check_budget, erp.pay) — did you mean 'erp.check_budget'?"]


def test_a_tool_the_mission_calls_elsewhere_is_still_not_one_the_worker_is_offered(tmp_path):
    text = EXTRACT + "  - id: budget\n    tool: erp.check_budget\n    arguments: {amount: 1}\n"
    found = _problems(tmp_path, text, "extract:\n  - tool_calls: [{tool: erp.check_budget, arguments: {}}]\n")
    assert found == ["2:25: step 'extract', answer 1: tool_calls[0]: the worker 'extract' is offered no tools, so it "
                     "cannot call 'erp.check_budget' (list the tools it may call under its 'tools:')"]


def test_arguments_that_are_not_a_mapping_are_located(tmp_path):
    found = _problems(tmp_path, AGENT, "decide:\n  - tool_calls: [{tool: erp.pay, arguments: [500]}]\n")
    assert found == ["2:45: step 'decide', answer 1: tool_calls[0].arguments must be a mapping"]


def test_a_malformed_answer_is_reported_with_the_mission_problems_and_never_read_as_a_null_output(tmp_path):
    found = _problems(tmp_path, EXTRACT, "extract:\n  - ouptut: {invoice_number: INV-1, total: 1}\nextrct: []\n")
    assert found == ["2:5: step 'extract', answer 1: unknown key 'ouptut' — did you mean 'output'?",
                     "3:1: step 'extrct': there is no step 'extrct' in the mission — did you mean 'extract'?"]


def test_more_or_fewer_answers_than_a_step_uses_are_not_problems(tmp_path):
    assert _problems(tmp_path, AGENT, "decide: []\n") == []
    assert _problems(tmp_path, EXTRACT, "extract:\n" + "  - output: {invoice_number: I, total: 1}\n" * 5) == []


# ---------------------------------------------------------------------------- answers inside another document


def test_answers_inside_a_larger_document_are_checked_where_they_are(tmp_path):
    path = write_mission(tmp_path / "m.yaml", EXTRACT)
    text = ("cases:\n  - name: one\n    models:\n      extract:\n        - output: {invoice_number: INV-1}\n"
            "      extrct: []\n")
    located = yamlread.load("tests.yaml", text)
    found = [p.render() for p in replay_problems(missions.load(path), located, ("cases", 0, "models"))]
    assert found == [
        f"tests.yaml:5:19: cases[0].models: step 'extract', answer 1: output: 'total' is a required property{UNFIT}",
        "tests.yaml:6:7: cases[0].models: step 'extrct': there is no step 'extrct' in the mission — did you mean "
        "'extract'?"]
    not_a_mapping = yamlread.load("tests.yaml", "cases:\n  - models: [1]\n")
    assert [p.render() for p in replay_problems(missions.load(path), not_a_mapping, ("cases", 0, "models"))] == [
        "tests.yaml:2:13: cases[0].models: it must map step ids to lists of answers"]


# ---------------------------------------------------------------------------- the CLI


def test_validate_prints_located_problems_and_exits_2(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", EXTRACT)
    replay = tmp_path / "replay.yaml"
    replay.write_text("extrct:\n  - output: {invoice_number: INV-1, total: 1}\n")
    result = studiox("validate", mission, "--replay", replay)
    assert result.returncode == 2
    assert "✓" in result.stdout and "mission w" in result.stdout  # the mission itself is valid
    assert f"{replay}:1:1: step 'extrct': there is no step 'extrct' in the mission — did you mean 'extract'?" \
        in result.stderr
    assert "replay.yaml: 1 problem" in result.stderr


def test_validate_with_replay_takes_one_mission(studiox, tmp_path):
    one = write_mission(tmp_path / "one.yaml", EXTRACT)
    two = write_mission(tmp_path / "two.yaml", AGENT)
    replay = tmp_path / "replay.yaml"
    replay.write_text("extract: []\n")
    result = studiox("validate", one, two, "--replay", replay)
    assert result.returncode == 2
    assert "--replay checks the answers for one mission, but 2 mission files were given" in result.stderr


def test_an_invalid_mission_still_has_its_replay_file_checked_for_shape(tmp_path):
    result, replay = _check(tmp_path, EXTRACT.replace("mission: w", "mision: w"), "extract:\n  - ouptut: 1\n")
    assert result.returncode == 2
    shown = json.loads(result.stdout)
    assert not shown["files"][0]["valid"] and not shown["replay"]["valid"]
    assert [p["message"] for p in shown["replay"]["problems"]] == ["unknown key 'ouptut' — did you mean 'output'?"]


def test_run_refuses_a_replay_file_that_does_not_fit_before_anything_runs(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", AGENT)
    replay = tmp_path / "replay.yaml"
    replay.write_text("decide:\n  - tool_calls: [{tool: erp.pai, arguments: {amount: 1}}]\n")
    result = studiox("run", mission, "--replay", replay, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"--replay: {replay}:2:25: step 'decide', answer 1: tool_calls[0]: 'erp.pai' is not a tool the worker "
            "'decide' is offered (its tools: erp.check_budget, erp.pay) — did you mean 'erp.pay'?") in result.stderr
    assert studiox.run_ids() == []


# ---------------------------------------------------------------------------- at run time


def test_a_replayed_call_to_a_tool_not_offered_fails_the_step_instead_of_being_dropped(tmp_path):
    world = World(tmp_path, {"extract": [{"tool_calls": [{"tool": "erp.check_budget", "arguments": {}}]},
                                         {"output": {"invoice_number": "INV-1", "total": 1}}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "failed" and outcome.error["kind"] == "model_error"
    assert outcome.error["message"].startswith(
        "the replay file calls the tool 'erp.check_budget', which step 'extract' was not offered (its tools: none)")
    assert world.tools.calls == []


class InventiveModel:
    """A real model's replies (not replayed): first a call to a tool it was not offered, then an answer."""

    def __init__(self):
        self.asked: list = []

    async def complete(self, call, *, address, step_id, index):
        self.asked.append(call.messages)
        calls = [{"id": "c1", "name": "erp__chek_budget", "arguments": {}}] if index == 0 else []
        content = None if calls else json.dumps({"reasoning": "ok", "output": {"paid": False}})
        return reply_dict(content, calls, model="m", input_tokens=1, output_tokens=1, cost_usd=0.0, latency_s=0.0)


def test_a_model_calling_a_tool_it_was_not_offered_is_told_so_and_the_rail_says_it(tmp_path):
    world = World(tmp_path, {})
    world.models = InventiveModel()
    outcome = world.run(AGENT)
    assert outcome.status == "succeeded"
    notes = [o["message"] for o in world.events(outcome.run_id, "observation")]
    assert "erp.chek_budget was not called: it is not one of this worker's tools; the model is told so" in notes
    told = world.models.asked[1][-1]
    assert told["role"] == "tool" and "there is no tool 'erp__chek_budget'" in told["content"]
    assert world.tools.calls == []


def test_a_replay_answer_without_output_is_an_error_never_a_null_output(tmp_path):
    world = World(tmp_path, {"extract": [{"reasoning": "forgot the output"}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "failed" and outcome.error["kind"] == "model_error"
    assert "a replay answer must give output, text, tool_calls or error; this one gives reasoning" \
        in outcome.error["message"]
