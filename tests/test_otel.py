"""OpenTelemetry, opt-in: spans of a run checked with the SDK's in-memory exporter."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_workers import AGENT, AGENT_REPLAY, World

from studiox.governance import APPROVED

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tracer_provider)  # (once per process: the SDK refuses a second)
    yield


def test_each_run_is_a_trace_of_steps_model_calls_tool_calls_and_decisions(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIOX_OTEL", "1")
    EXPORTER.clear()
    world = World(tmp_path, AGENT_REPLAY)
    run_id = world.start(AGENT)
    parked = world.engine.drive(run_id)
    assert parked.status == "waiting"
    world.engine.decisions.decide(parked.waiting["decision"], APPROVED, by="tester")
    assert world.engine.drive(run_id, resume=True).status == "succeeded"
    spans = EXPORTER.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("run agent") == 2  # two drives: the park, then the resume
    assert len({s.context.trace_id for s in spans}) == 1  # both drives in one trace
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == 3 and all(s.attributes["gen_ai.operation.name"] == "chat" for s in chats)
    assert chats[0].attributes["gen_ai.request.model"] == "gpt-4o-mini" and chats[0].attributes["studiox.replayed"]
    (tool,) = [s for s in spans if s.name == "execute_tool erp.pay"]
    assert tool.attributes["gen_ai.tool.name"] == "erp.pay" and tool.attributes["studiox.idempotency_key"]
    step = next(s for s in spans if s.name == "step decide" and s.attributes.get("studiox.step.status") == "succeeded")
    assert tool.parent.span_id == step.context.span_id and chats[-1].parent.span_id == step.context.span_id
    decisions = [e for s in spans for e in s.events if e.name == "decision"]
    assert [e.attributes["studiox.decision.status"] for e in decisions] == ["pending", "approved"]
    assert decisions[1].attributes["studiox.decision.by"] == "tester"
    root = [s for s in spans if s.name == "run agent"][-1]
    assert root.attributes["studiox.status"] == "succeeded" and root.attributes["studiox.run"] == run_id


def test_off_unless_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIOX_OTEL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    EXPORTER.clear()
    world = World(tmp_path, AGENT_REPLAY)
    world.engine.drive(world.start(AGENT))
    assert EXPORTER.get_finished_spans() == ()
