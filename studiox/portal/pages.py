"""What the portal's pages show, as plain data: the inbox, a run's timeline, the forms generated
from a mission's inputs and from a tool's input schema, and the rail as text."""

from __future__ import annotations

import json
import time

from rich.text import Text

from ..governance import Decision
from ..mission import Mission
from ..ui.rail import live_line

AGES = {"1h": 3600, "1d": 86400, "3d": 3 * 86400, "7d": 7 * 86400}


def inbox(decisions: list[Decision], assignee, *, mission: str | None = None, step: str | None = None,
          age: str | None = None, sort: str = "oldest") -> list[dict]:
    """Pending decisions as inbox rows, filtered by mission, step and minimum age, sorted."""
    now = time.time()
    rows = []
    for d in decisions:
        request = d.request
        waited = now - (request.get("requested_at") or now)
        if mission and request.get("mission") != mission:
            continue
        if step and request.get("step") != step:
            continue
        if age in AGES and waited < AGES[age]:
            continue
        action = request["action"]
        claimed = assignee(d.id)
        rows.append({"id": d.id, "mission": request.get("mission"), "key": request.get("key"), "step": request["step"],
                     "title": request.get("title") or request["step"], "target": action["target"],
                     "arguments": _short_arguments(action.get("arguments") or {}), "waited": waited,
                     "requested_at": request.get("requested_at"), "expires_at": request.get("expires_at"),
                     "in_doubt": bool(request.get("in_doubt")), "claimed_by": (claimed or {}).get("by"),
                     "parent": request.get("parent")})
    key = {"oldest": lambda r: r["requested_at"] or 0, "newest": lambda r: -(r["requested_at"] or 0),
           "deadline": lambda r: r["expires_at"] or float("inf"), "mission": lambda r: (r["mission"] or "", r["id"])}
    return sorted(rows, key=key.get(sort, key["oldest"]))


def _short_arguments(arguments: dict, limit: int = 3) -> str:
    shown = [f"{k}={_value(v)}" for k, v in list(arguments.items())[:limit]]
    return ", ".join(shown) + (", …" if len(arguments) > limit else "")


def _value(value, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def timeline(events: list[dict], now: float | None = None) -> dict:
    """A bar per step on one time axis (run start to its end, or now), with the time it waited
    for a decision marked apart: ``{start, end, steps: [{step, status, x0, x1, waits}]}``."""
    if not events:
        return {"start": 0, "end": 0, "steps": []}
    start = events[0]["at"]
    end = events[-1]["at"] if events[-1]["type"] in ("run_finished", "waiting") else (now or time.time())
    end = max(end, start + 0.001)
    bars: dict[str, dict] = {}
    waiting: dict[str, float] = {}
    for e in events:
        step = str(e.get("step"))
        if e["type"] == "step_started" and step not in bars:
            bars[step] = {"step": step, "status": "running", "from": e["at"], "to": None, "waits": []}
        elif e["type"] == "step_finished" and step in bars:
            bars[step]["to"], bars[step]["status"] = e["at"], e["status"]
        elif e["type"] == "waiting":
            waiting[str(step)] = e["at"]
        elif e["type"] == "decision_applied" and str(step) in waiting:
            began = waiting.pop(str(step))
            owner = next((b for b in reversed(bars.values()) if str(step).startswith(b["step"])), None)
            if owner is not None:
                owner["waits"].append((began, e["at"]))
    for slot, began in waiting.items():  # still waiting
        owner = next((b for b in reversed(bars.values()) if slot.startswith(b["step"])), None)
        if owner is not None:
            owner["waits"].append((began, end))
            owner["status"] = "waiting"
    span = end - start

    def x(at: float) -> float:
        return round(100 * (at - start) / span, 3)

    steps = []
    for bar in bars.values():
        to = bar["to"] if bar["to"] is not None else end
        steps.append({"step": bar["step"], "status": bar["status"], "x0": x(bar["from"]), "x1": max(x(to), x(bar["from"]) + 0.3),
                      "seconds": round(to - bar["from"], 3),
                      "waits": [{"x0": x(a), "x1": max(x(b), x(a) + 0.3), "seconds": round(b - a, 1)} for a, b in bar["waits"]]})
    return {"start": start, "end": end, "seconds": round(span, 3), "steps": steps}


def rail_text(event: dict) -> str | None:
    """An event's rail line as plain text (what ``studiox log`` prints, without its colours)."""
    line = live_line(event)
    return Text.from_markup(line).plain if line else None


def input_fields(mission: Mission) -> list[dict]:
    """A form field per declared input: text (with a file upload), number, whole number, yes/no, or JSON/YAML."""
    fields = []
    for name, schema in mission.inputs.items():
        schema = schema if isinstance(schema, dict) else {}
        kind = {"string": "text", "number": "number", "integer": "integer", "boolean": "boolean"}.get(
            str(schema.get("type")), "structured")
        default = schema.get("default")
        fields.append({"name": name, "kind": kind, "description": schema.get("description", ""),
                       "required": "default" not in schema, "enum": schema.get("enum"),
                       "default": default if kind != "structured" or default is None
                       else json.dumps(default, ensure_ascii=False, indent=1)})
    return fields


def form_inputs(mission: Mission, form: dict, files: dict[str, tuple[str, bytes]]) -> dict:
    """The run's inputs from a submitted form (an uploaded file wins over the field beside it);
    ``InputsInvalid`` says what does not fit, as ``--input`` would."""
    from ..errors import InputsInvalid
    from ..mission.inputs import _parse_structured, check

    values: dict = {}
    for field in input_fields(mission):
        name = field["name"]
        if name in files and files[name][1]:
            filename, data = files[name]
            try:
                text = data.decode("utf-8").removeprefix("\ufeff")
            except UnicodeDecodeError:
                raise InputsInvalid(f"the file given for '{name}' ({filename}) is not UTF-8 text") from None
            values[name] = text if field["kind"] == "text" else _parse_structured(text, filename, f"the input '{name}'")
            continue
        raw = form.get(name)
        if field["kind"] == "boolean":
            values[name] = raw in ("on", "true", "1")
            continue
        if raw is None or raw == "":
            continue  # the default applies, or the check says it is required
        if field["kind"] in ("number", "integer"):
            try:
                values[name] = int(raw) if field["kind"] == "integer" else float(raw)
            except ValueError:
                raise InputsInvalid(f"the input '{name}' must be a {'whole ' if field['kind'] == 'integer' else ''}"
                                    f"number, not '{raw}'") from None
        elif field["kind"] == "structured":
            values[name] = _parse_structured(raw, f"{name}.yaml", f"the input '{name}'")
        else:
            values[name] = raw
    return check(mission, values)


def edit_fields(decision: Decision) -> list[dict]:
    """The fields of the edit form: each argument of the proposed action, typed by the tool's input schema."""
    action = decision.request["action"]
    properties = (decision.request.get("input_schema") or {}).get("properties") or {}
    fields = []
    for name, value in (action.get("arguments") or {}).items():
        schema = properties.get(name) or {}
        kind = schema.get("type") if isinstance(schema.get("type"), str) else None
        fields.append({"name": name, "value": value if isinstance(value, str) else json.dumps(value, ensure_ascii=False),
                       "kind": kind or "any", "description": schema.get("description", ""), "enum": schema.get("enum")})
    return fields
