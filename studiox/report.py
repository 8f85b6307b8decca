"""One run in full, as data: its header, then each step's inputs, prompts and answers, tool calls,
attempts, timings and decisions, gathered from the journal (and the decisions it names), so what
``show`` and the audit export present is what was recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from .state.journal import RunState, usage_of


def _step_of(address: str) -> str:
    """The step an event belongs to: a worker's tool call (``extract/call2``) belongs to its worker."""
    return address.split("/", 1)[0].split("@", 1)[0]


def gather(state: RunState, events: list[dict], decision: Callable[[str], dict | None], iso) -> dict:
    """The run as data: ``{"run": {...}, "steps": [...]}``, times as ISO 8601 (``iso``)."""
    started = state.started or {}
    usage = usage_of(state.model_calls)
    steps: dict[str, dict] = {}

    def entry(address: str) -> dict:
        return steps.setdefault(address, {"step": address, "kind": None, "status": "running", "started": None,
                                          "finished": None, "duration": None, "attempts": [], "output": None,
                                          "error": None, "model_turns": [], "tool_calls": [], "observations": [],
                                          "decisions": []})

    for e in events:
        address = e.get("step")
        if not isinstance(address, str):
            continue
        step = entry(_step_of(address))
        kind = e["type"]
        if kind == "step_started" and address == step["step"]:
            step["kind"] = e.get("kind")
            step["started"] = step["started"] or iso(e["at"])
            if not any(a["attempt"] == e.get("attempt", 1) for a in step["attempts"]):  # (again after a resume)
                step["attempts"].append({"attempt": e.get("attempt", 1), "at": iso(e["at"]), "error": None,
                                         "retry_in": None})
        elif kind == "step_failed":
            attempt = next((a for a in step["attempts"] if a["attempt"] == e["attempt"]), None)
            if attempt is None:
                step["attempts"].append(attempt := {"attempt": e["attempt"], "at": iso(e["at"])})
            attempt.update(error=e.get("error"), retry_in=e.get("retry_in"))
        elif kind == "step_finished" and address == step["step"]:
            step.update(status=e["status"], finished=iso(e["at"]), duration=e.get("duration"), output=e.get("output"),
                        error=e.get("error"), reason=e.get("reason"))
        elif kind == "model_call":
            reply = e.get("reply") or {}
            step["model_turns"].append({
                "attempt": e.get("attempt"), "turn": e.get("index", 0) + 1, "model": e.get("model"),
                "messages": e.get("messages"), "answer": reply.get("content"), "tool_calls": reply.get("tool_calls"),
                "input_tokens": e.get("input_tokens"), "output_tokens": e.get("output_tokens"),
                "cost_usd": e.get("cost_usd"), "latency_s": e.get("latency_s"), "cached": e.get("cached"),
                "replayed": e.get("replayed"), "at": iso(e["at"])})
        elif kind == "action_started":
            action = e.get("action") or {}
            step["tool_calls"].append({"address": address, "target": action.get("target"),
                                       "arguments": action.get("arguments"), "key": e.get("key"),
                                       "started": iso(e["at"]), "finished": None, "ok": None, "result": None,
                                       "error": None})
        elif kind == "action_finished":
            call = next((c for c in reversed(step["tool_calls"]) if c["address"] == address), None)
            if call is not None:
                call.update(finished=iso(e["at"]), ok=e.get("ok"), result=e.get("result"), error=e.get("error"))
        elif kind == "observation":
            step["observations"].append({"at": iso(e["at"]), "message": e.get("message")})
        elif kind == "waiting":
            found = decision(e["decision"]) or {}
            step["decisions"].append({"id": e["decision"], "asked": iso(e["at"]), "in_doubt": e.get("in_doubt"),
                                      "proposed": (e.get("action") or {}).get("arguments"), **found})
        elif kind == "decision_applied":
            mine = next((d for d in step["decisions"] if d["id"] == e.get("decision")), None)
            if mine is None:
                step["decisions"].append(mine := {"id": e.get("decision"), "proposed": None})
            mine.update(status=e.get("status"), by=e.get("by"), note=e.get("note"), edited=e.get("edited"),
                        applied=iso(e["at"]), approved=(e.get("action") or {}).get("arguments"))
    return {
        "run": {"id": state.run_id, "mission": state.mission_name, "key": state.key, "inputs": started.get("inputs"),
                "status": None, "verdict": state.verdict, "note": (state.finished or {}).get("note"),
                "error": (state.finished or {}).get("error"), "started": iso(started.get("at")),
                "finished": iso((state.finished or {}).get("at")), "duration": state.duration,
                "started_by": started.get("user"), "host": started.get("host"), "digest": started.get("digest"),
                "usage": usage},
        "steps": list(steps.values()),
    }


def edits(decision: dict) -> str:
    """What a person changed before approving: ``amount: 400 → 350; to: … → …`` ('' when nothing)."""
    import json

    if not decision.get("edited"):
        return ""
    before, after = decision.get("proposed") or {}, decision.get("approved") or {}

    def one(value) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 40 else text[:39] + "…"

    return "; ".join(f"{k}: {one(before.get(k))} → {one(after.get(k))}" for k in sorted({*before, *after})
                     if before.get(k) != after.get(k))
