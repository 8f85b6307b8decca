"""What a notification says: one JSON message per event, with ``text``, a line a person reads.

``{"text": ..., "event": ..., ...details}`` is what a webhook receives (Slack- and Teams-style
incoming webhooks show ``text`` and ignore the rest), what a command reads on stdin, and what a
mail is written from. Times are ISO 8601 in UTC; ``link`` is the portal's path of the decision or
run (``/decisions/ID``, ``/runs/ID``), for whoever knows where the portal is served.
"""

from __future__ import annotations

import json

from ..units import iso

__all__ = ["about_decision", "about_run_end", "mail_subject", "mail_body"]

_SHOWN = 200  # characters of a decision's arguments in the text line


def about_decision(kind: str, decision, now: float) -> dict:
    """The message about a pending decision (a governance.Decision): ``decision_waiting`` or
    ``decision_expiring``."""
    request = decision.request
    action = request.get("action") or {}
    expires = request.get("expires_at")
    arguments = action.get("arguments")
    step_inputs = action.get("kind") == "step" and isinstance(arguments, dict)  # a step's own action: its inputs
    shown = arguments.get("inputs") if step_inputs and isinstance(arguments, dict) else arguments
    said = json.dumps(shown, ensure_ascii=False, separators=(", ", ": ")) if shown else ""
    if len(said) > _SHOWN:
        said = said[:_SHOWN - 1] + "…"
    doing = said if step_inputs else f"{action.get('target') or ''} {said}".strip()
    link = f"/decisions/{decision.id}"
    mission, run = request.get("mission"), request.get("run")
    if kind == "decision_expiring":
        left = _duration(max(0.0, (expires or now) - now))
        text = f"{mission}: decision {decision.id} on {request.get('step')} expires in {left} — {doing} " \
               f"(run {run}) {link}"
    else:
        until = f", expires {iso(expires)}" if expires else ""
        asked = "a call was cut off: did it happen? A person is asked" if request.get("in_doubt") else \
            "a decision is waiting"
        text = f"{mission}: {asked} on {request.get('step')} — {doing} (run {run}, decision {decision.id}{until}) " \
               f"{link}"
    return {"text": text, "event": kind, "mission": mission, "run": run, "step": request.get("step"),
            "decision": decision.id, "title": request.get("title"), "in_doubt": bool(request.get("in_doubt")),
            "action": {"kind": action.get("kind"), "target": action.get("target"), "arguments": arguments},
            "key": request.get("key"), "requested_at": iso(request.get("requested_at")), "expires_at": iso(expires),
            "link": link}


def about_run_end(kind: str, run_id: str, mission: str, key: str | None, event: dict) -> dict:
    """The message about a ``run_finished`` event: ``run_failed`` or ``run_finished`` (any status)."""
    status = event.get("status")
    error = event.get("error") if isinstance(event.get("error"), dict) else None
    if status == "succeeded":
        outcome = "succeeded" + (f" — verdict: {event['verdict']}" if event.get("verdict") else "") + \
                  (f" — {event['note']}" if event.get("note") else "")
    elif status == "failed":
        where = f"{error['step']}: " if error and error.get("step") else ""
        outcome = "failed" + (f" — {where}{error.get('kind')}: {error.get('message')}" if error else "")
    else:
        outcome = str(status) + (f" — {event['reason']}" if event.get("reason") else "")
    link = f"/runs/{run_id}"
    return {"text": f"{mission}: run {run_id} {outcome} {link}", "event": kind, "mission": mission, "run": run_id,
            "status": status, "verdict": event.get("verdict"), "note": event.get("note"), "error": error,
            "reason": event.get("reason"), "key": key, "finished_at": iso(event.get("at")), "link": link}


def mail_subject(message: dict) -> str:
    """The text line, cut to what a subject holds."""
    text = " ".join(message["text"].split())
    return f"[studiox] {text[:150]}{'…' if len(text) > 150 else ''}"


def mail_body(message: dict) -> str:
    """The text line, then every detail on a line of its own."""
    lines = [message["text"], ""]
    for name, value in message.items():
        if name == "text" or value is None:
            continue
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
        lines.append(f"{name}: {shown}")
    return "\n".join(lines) + "\n"


def _duration(span: float) -> str:
    """A span as people say it: 45 seconds, 10 minutes, 2 hours 5 minutes."""
    span = int(round(span))
    if span < 60:
        return f"{span} second{'s' if span != 1 else ''}"
    hours, minutes = divmod(span // 60, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if minutes or not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
