"""Valid missions covering every construct load into the right typed objects."""

from __future__ import annotations

import pytest
from conftest import ROOT

from studiox.mission import Approval, OnError, Retry, load

VALID = ROOT / "tests" / "valid"


@pytest.mark.parametrize("path", sorted(VALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_valid_mission_loads(path):
    mission = load(path)
    assert mission.steps and mission.digest and mission.source == path.read_text()


def test_retry_timeouts_and_on_error_become_seconds_and_typed_policies():
    steps = {s.id: s for s in load(VALID / "retry_and_errors.yaml").steps}
    assert steps["call"].retry == Retry(attempts=4, backoff=0.5, factor=3, max_delay=5400.0, jitter=False,
                                        on=("timeout", "rate_limit"))
    assert steps["call"].timeout == 120.0
    assert steps["call"].on_error == OnError("goto", "after")
    assert steps["skip_me"].on_error == OnError("continue") and steps["skip_me"].retry == Retry()
    assert steps["after"].on_error == OnError("fail") and steps["after"].timeout is None


def test_approvals_required_rules_and_trust():
    steps = {s.id: s for s in load(VALID / "approvals.yaml").steps}
    assert steps["sign"].approval == Approval(required=True)
    pay = steps["pay"].approval
    assert (pay.required, pay.auto_approve_when, pay.reason, pay.timeout) == (
        False, "${{ args.amount < 100 }}", "petty cash", 172800.0)
    assert pay.on_reject == {"verdict": "Rejected", "note": "refused"} and pay.on_timeout == {"goto": "done"}
    assert (steps["trusted"].trust, steps["trusted"].trust_reason) == ("read_only", "lists only")
    assert steps["pay"].arguments == {"amount": 10} and steps["pay"].spec == "erp.post_payment"


def test_models_the_default_and_budgets():
    mission = load(VALID / "models.yaml")
    assert mission.models["fast"].model == "openai/gpt-4o-mini" and not mission.models["fast"].default
    assert mission.default_model.name == "careful"
    assert mission.default_model.settings == {"temperature": 0.2, "max_tokens": 500}
    assert mission.budget == {"max_cost_usd": 1.5, "max_tokens": 10000, "max_tool_calls": 5}
    decide = mission.steps[1]
    assert decide.kind == "worker" and decide.spec["tools"] == ["erp.check_budget"]
    assert decide.budget == {"max_tokens": 2000} and decide.spec["cache"] is True


def test_foreach_children_become_nested_steps_and_branches_keep_their_bound():
    mission = load(VALID / "loops.yaml")
    each = mission.steps[0]
    assert (each.kind, each.item_name, each.concurrency) == ("foreach", "number", 3)
    assert [s.id for s in each.steps] == ["square", "inner_route", "big", "small"]
    assert each.steps[0].path == ("steps", 0, "steps", 0)
    assert [s.id for s in mission.walk()] == ["each", "square", "inner_route", "big", "small", "count", "again"]
    assert mission.steps[2].spec["max_iterations"] == 5


def test_verdict_cases_and_otherwise():
    verdict = load(VALID / "verdict_cases.yaml").verdict
    assert verdict.choices == ("Big", "Small") and verdict.value is None
    assert verdict.cases[0]["value"] == "Big" and verdict.otherwise == {"value": "Small"}


def test_sources_servers_and_version():
    mission = load(VALID / "knowledge_and_integrations.yaml")
    assert mission.version == "3" and mission.description == "Every kind of source and server."
    assert mission.knowledge["orders"] == {"path": "data", "glob": "*.md", "description": "orders"}
    assert mission.integrations["erp"]["env"]["ERP_TOKEN"] == {"from_env": "ERP_TOKEN"}
    assert mission.integrations["crm"]["headers"]["X-Tenant"] == "acme"
    assert mission.steps[0].spec == {"from": "orders", "query": "PO-1", "top": 2}


def test_fail_and_finish_forms():
    steps = {s.id: s for s in load(VALID / "end_early.yaml").steps}
    assert steps["broken"].kind == "fail" and steps["nothing"].spec == "Nothing"
    assert steps["fine"].spec == {"verdict": "Fine", "note": "ok"}
    assert load(VALID / "end_early.yaml").verdict.value == "Fine"


def test_example_missions_load_and_start_with_the_schema_comment():
    from studiox.testing import cases

    for path in sorted((ROOT / "missions").glob("*.yaml")):
        if path.name.endswith(".test.yaml"):  # a test file: its own schema, and checked against its mission
            assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/mission-test.schema.json")
            assert len(cases.load(path).cases) >= 3
            continue
        assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/mission.schema.json"), path
        load(path)


@pytest.mark.parametrize("name", ["mission.schema.json", "mission-test.schema.json"])
def test_every_property_of_the_schema_has_hover_help(name):
    import json

    schema = json.loads((ROOT / "schemas" / name).read_text())
    missing = []

    def described(node) -> bool:
        if "description" in node:
            return True
        ref = node.get("$ref", "")
        target = schema
        for part in ref.split("/")[1:]:
            target = target[part]
        return bool(ref) and "description" in target

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and not described(sub):
                    missing.append(f"{path}.{name}")
            for key, sub in node.items():
                walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(schema, "")
    assert missing == []
