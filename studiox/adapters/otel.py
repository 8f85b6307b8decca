"""OpenTelemetry, opt-in: each drive of a run is a trace built from its journal events.

On when ``STUDIOX_OTEL=1`` or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and
``opentelemetry-sdk`` is installed (``pip install 'studiox[otel]'``); off otherwise, and then
nothing of OpenTelemetry is imported. Spans are made from the events as they are journaled
(after they are on disk), with the events' own times, so a trace never says more than the journal:

- ``run MISSION``: the drive (attributes: run id, mission, business key; status at the end);
- ``step ADDRESS``: each step, from step_started to step_finished;
- ``chat MODEL``: each model turn (GenAI semantic conventions: ``gen_ai.operation.name``,
  ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``/``output_tokens``; cost as
  ``studiox.cost_usd``), timed by its latency;
- ``execute_tool TARGET``: each state-changing call, from action_started to action_finished;
- a decision is an event (``decision``: id, status, by) on its step's span.

The trace id is derived from the run id, so every drive of one run (a park, a crash, a resume)
lands in the same trace. With an endpoint and ``opentelemetry-exporter-otlp`` installed, spans
are exported over OTLP; otherwise to the tracer provider the embedding program set up.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any


def from_environment(run_id: str, mission: str):
    """A Telemetry for one drive of a run when asked for and available, else None (nothing imported)."""
    if os.environ.get("STUDIOX_OTEL", "").lower() not in ("1", "true", "on", "yes") and \
            not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry import trace  # noqa: F401
    except ImportError:
        return None
    return Telemetry(run_id, mission)


def _ns(at: float) -> int:
    return int(at * 1e9)


class Telemetry:
    """Turns a run's journal events into spans, as they are journaled."""

    def __init__(self, run_id: str, mission: str):
        from opentelemetry import trace

        self.run_id, self.mission = run_id, mission
        _configure_otlp()
        self.trace = trace
        self.tracer = trace.get_tracer("studiox")
        self.root: Any = None
        self.steps: dict[str, Any] = {}
        self.tools: dict[str, Any] = {}

    def _context(self, parent=None):
        return self.trace.set_span_in_context(parent) if parent is not None else None

    def on_event(self, event: dict) -> None:
        kind, at = event["type"], _ns(event["at"])
        if self.root is None:
            self._open_root(at)
        step = str(event.get("step", ""))
        owner = self.steps.get(step.split("/", 1)[0].split("@", 1)[0]) if isinstance(step, str) else None
        if kind == "step_started" and step not in self.steps:
            self.steps[step] = self.tracer.start_span(f"step {step}", context=self._context(self.root), start_time=at,
                                                      attributes={"studiox.step": step,
                                                                  "studiox.step.kind": event.get("kind", "")})
        elif kind == "step_finished" and step in self.steps:
            span = self.steps.pop(step)
            span.set_attribute("studiox.step.status", event["status"])
            if event["status"] == "failed":
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR,
                                                  (event.get("error") or {}).get("message", "")))
            span.end(end_time=at)
        elif kind == "model_call":
            started = at - _ns(event.get("latency_s") or 0.0)
            attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": str(event.get("model")),
                          "gen_ai.response.model": str(event.get("model")), "studiox.step": str(step),
                          "studiox.replayed": bool(event.get("replayed")), "studiox.cached": bool(event.get("cached"))}
            for name, key in (("gen_ai.usage.input_tokens", "input_tokens"),
                              ("gen_ai.usage.output_tokens", "output_tokens"), ("studiox.cost_usd", "cost_usd")):
                if event.get(key) is not None:
                    attributes[name] = event[key]
            span = self.tracer.start_span(f"chat {event.get('model')}", context=self._context(owner or self.root),
                                          start_time=started, attributes=attributes)
            span.end(end_time=at)
        elif kind == "action_started":
            target = (event.get("action") or {}).get("target", "?")
            self.tools[step] = self.tracer.start_span(
                f"execute_tool {target}", context=self._context(owner or self.root), start_time=at,
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": target,
                            "studiox.idempotency_key": str(event.get("key"))})
        elif kind == "action_finished" and step in self.tools:
            span = self.tools.pop(step)
            if not event.get("ok"):
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR,
                                                  (event.get("error") or {}).get("message", "")))
            span.end(end_time=at)
        elif kind in ("waiting", "decision_applied"):
            target = owner or self.root
            target.add_event("decision", timestamp=at, attributes={
                "studiox.decision": str(event.get("decision")), "studiox.decision.status":
                    "pending" if kind == "waiting" else str(event.get("status")),
                **({"studiox.decision.by": str(event["by"])} if event.get("by") else {})})
        elif kind in ("run_finished", "run_interrupted"):
            self.root.set_attribute("studiox.status", event.get("status", "interrupted"))
            if event.get("verdict"):
                self.root.set_attribute("studiox.verdict", event["verdict"])
            self.end(at)

    def _open_root(self, at: int) -> None:
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        run_id = self.run_id
        trace_id = int(hashlib.sha256(run_id.encode()).hexdigest()[:32], 16)  # one trace per run, every drive
        parent = NonRecordingSpan(SpanContext(trace_id=trace_id, span_id=int(hashlib.sha256(
            f"{run_id}/root".encode()).hexdigest()[:16], 16), is_remote=True, trace_flags=TraceFlags(1)))
        self.root = self.tracer.start_span(f"run {self.mission}", context=self._context(parent), start_time=at,
                                           attributes={"studiox.run": run_id, "studiox.mission": self.mission})

    def end(self, at: int | None = None) -> None:
        """Close what is open (a drive that parks leaves its steps open), and flush."""
        for span in [*self.tools.values(), *self.steps.values()]:
            span.end(end_time=at)
        self.tools.clear()
        self.steps.clear()
        if self.root is not None:
            self.root.end(end_time=at)
            self.root = None
        provider = self.trace.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush()


def _configure_otlp() -> None:
    """With an OTLP endpoint and no tracer provider set up by the program, export there (once)."""
    from opentelemetry import trace

    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or hasattr(trace.get_tracer_provider(), "add_span_processor"):
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
