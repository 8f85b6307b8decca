"""The evidence beside a decision: what the mission author chose (approval.show), else the lineage of
the action's arguments — of the same foreach item only, failures included — never mere recency."""

from __future__ import annotations

import json

import pytest
from test_engine import Harness, ScriptedTools
from test_workers import World

from studiox.errors import StepError
from studiox.ui.prompt import panel

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

ITEMS = """mission: ev
models: {fast: openai/gpt-4o-mini}
integrations: {erp: {command: unused}}
steps:
  - id: each
    foreach: "${{ ['first line', 'second line'] }}"
    concurrency: 2
    steps:
      - id: judge
        worker:
          instructions: How much should be paid?
          input: ${{ item }}
          output: {type: object, required: [amount], properties: {amount: {type: number}}}
      - id: pay
        name: Pay the line
        description: Pays one line of the invoice.
        tool: erp.pay
        arguments: {amount: "${{ steps.judge.output.amount }}"}
"""


def test_the_card_of_foreach_item_1_shows_item_1s_reasoning_and_never_item_0s(tmp_path):
    world = World(tmp_path, {"each[0].judge": [{"output": {"amount": 10}, "reasoning": "line zero is 10"}],
                             "each[1].judge": [{"output": {"amount": 20}, "reasoning": "line one is 20"}]})
    world.run(ITEMS)
    decisions = {d.request["step"]: d for d in world.engine.decisions.all()}
    second = decisions["each[1].pay"]
    said = " ".join(e["message"] for e in second.request["evidence"])
    assert "line one is 20" in said and '{"amount": 20}' in said
    assert "line zero" not in said and '"amount": 10' not in said
    assert second.request["title"] == "Pay the line" and second.request["description"] == "Pays one line of the invoice."
    card = _text(panel(second))
    assert "Pay the line" in card and "Pays one line of the invoice." in card and "line one is 20" in card
    assert "before)" in card  # each piece says how old it was when asked


def test_a_failed_step_the_arguments_rest_on_is_part_of_the_evidence(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [StepError("tool_error", "the ERP is down")]}))
    outcome = h.run("steps:\n"
                    "  - {id: look, tool: fx.look, on_error: continue}\n"
                    "  - {id: pay, tool: fx.pay, arguments: {amount: '${{ default(steps.look.output.total, 5) }}'}}\n")
    (decision,) = h.engine.decisions.all()
    assert outcome.status == "waiting"
    assert any("failed: the ERP is down" in e["message"] for e in decision.request["evidence"])


SHOWN = """steps:
  - {id: budget, tool: fx.look}
  - id: pay
    tool: fx.pay
    arguments: {amount: 1780}
    approval:
      show:
        remaining after payment: ${{ steps.budget.output.remaining - args.amount }}
        cost centre: ${{ steps.budget.output.centre }}
"""


def test_approval_show_values_reach_the_card_and_the_decision_record(tmp_path):
    h = Harness(tmp_path, ScriptedTools({"look": [{"remaining": 2600, "centre": "CC-410"}]}))
    h.run(SHOWN)
    (decision,) = h.engine.decisions.all()
    assert decision.request["shown"] == [{"label": "remaining after payment", "value": 820},
                                         {"label": "cost centre", "value": "CC-410"}]
    card = _text(panel(decision))
    assert "remaining after payment: 820" in card and "cost centre: CC-410" in card


def test_decision_show_json_carries_the_shown_evidence(sx, tmp_path):
    mission = tmp_path / "m.yaml"
    mission.write_text("mission: t\nintegrations: {fx: {command: x}}\nsteps:\n"
                       "  - {id: look, tool: fx.append, arguments: {n: 1}}\n"
                       "  - id: pay\n    tool: fx.pay\n    arguments: {amount: 7}\n"
                       "    approval: {show: {'what it returned': '${{ steps.look.output.ok }}'}}\n")
    parked = json.loads(sx("run", mission, "--json").stdout)
    shown = json.loads(sx("decision", "show", parked["waiting"]["decision"], "--json").stdout)["shown"]
    assert shown == [{"label": "what it returned", "value": True}]


def _text(renderable) -> str:
    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(renderable)
    return " ".join(console.export_text().split())
