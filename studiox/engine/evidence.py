"""What a person sees beside a decision: the evidence the mission author chose, or the action's lineage.

``approval.show`` maps labels to expressions, rendered when the decision is filed (with the
action's arguments as ``args``). Without it, the evidence is lineage, not recency: the outputs,
reasoning and failures of the steps the action's arguments are computed from (and the steps
those read in turn), in the same ``foreach`` item only, each with the time it was recorded.
Both are snapshotted into the decision record, so the card shows what was true when asked.
"""

from __future__ import annotations

import json

from .. import expressions
from ..governance import Action
from ..mission import Step
from .control import RunView

MAX_ITEMS = 8  # pieces of lineage shown: the nearest first
TEXT_WIDTH = 300


def chosen(step: Step, action: Action, data: dict) -> list[dict]:
    """``approval.show``: each label with its value now (or why it could not be computed)."""
    shown = []
    for label, expression in ((step.approval.show if step.approval else None) or {}).items():
        try:
            value = expressions.render(expression, {**data, "args": action.arguments}, f"approval.show.{label}")
        except expressions.ExpressionError as e:
            value, failed = f"could not be computed: {e.message}", True
        else:
            failed = False
        shown.append({"label": label, "value": value, **({"failed": True} if failed else {})})
    return shown


def lineage(run: RunView, step: Step, address: str, *, worker_calls: bool = False) -> list[dict]:
    """The steps the action rests on, nearest first: ``[{step, title, message, at}]``."""
    prefix = address.rsplit(".", 1)[0] + "." if "[" in address else ""  # the same foreach item only
    by_id = run.steps_by_id
    seen: list[str] = []
    frontier = expressions.steps_read([step.spec, step.arguments, step.when])
    while frontier and len(seen) < MAX_ITEMS:
        name = frontier.pop(0)
        if name in seen or name not in by_id:
            continue
        seen.append(name)
        read = by_id[name]
        frontier += [n for n in expressions.steps_read([read.spec, read.arguments, read.when]) if n not in seen]
    pieces = []
    for name in seen:
        pieces += _what_happened(run, by_id[name], _latest(run, prefix, name))
    if worker_calls:  # a worker's own calls so far in this attempt: what its decision rests on
        for at, event in run.state.actions.items():
            if at.startswith(address + "/") or at.startswith(address + "@"):
                pieces.append(_call(event))
        pieces += [_reasoning(o) for o in run.observations if o["step"] == address
                   and o["message"].startswith("reasoning:")]
    return [p for p in pieces if p is not None]


def _latest(run: RunView, prefix: str, name: str) -> str:
    """The address of the latest visit of step ``name`` (``name#3`` in a loop), in the same item if it ran there."""
    for base in (prefix + name, name) if prefix else (name,):
        visits = [a for a in run.state.done if a == base or a.startswith(base + "#")]
        if visits:
            return max(visits, key=lambda a: int(a.rsplit("#", 1)[1]) if "#" in a[len(base):] else 1)
    return name


def _what_happened(run: RunView, step: Step, address: str) -> list[dict | None]:
    done = run.state.done.get(address)
    if done is None:
        return []
    title = step.title
    if done["status"] == "failed":
        message = f"failed: {(done.get('error') or {}).get('message', '')}"
    elif done["status"] == "skipped":
        message = f"skipped: {done.get('reason', '')}"
    elif step.kind == "retrieve" and isinstance(done.get("output"), dict):  # the passages, each with its text
        passages = done["output"].get("passages") or []
        message = f"found {len(passages)} passage(s) for '{done['output'].get('query')}'"
    else:
        message = f"gave {_short(done.get('output'))}"
    pieces: list[dict | None] = [{"step": address, "title": title, "message": message, "at": done["at"]}]
    if step.kind == "retrieve" and done["status"] == "succeeded" and isinstance(done.get("output"), dict):
        pieces += [{"step": address, "title": None, "message": f"{p['citation']}: {_short(' '.join(p['text'].split()))}",
                    "citation": p["citation"], "at": done["at"]}
                   for p in done["output"].get("passages") or [] if isinstance(p, dict) and "citation" in p]
    pieces += [_reasoning(o) for o in run.observations if o["step"] == address and o["message"].startswith("reasoning:")]
    return pieces


def _reasoning(observation: dict) -> dict:
    return {"step": observation["step"], "title": None, "message": observation["message"], "at": observation["at"]}


def _call(event: dict) -> dict | None:
    if event["type"] != "action_finished":
        return None
    target = (event.get("action") or {}).get("target") or event.get("key", "").rsplit("/", 1)[-1].split("#")[0]
    if event["ok"]:
        message = f"{target} returned {_short(event.get('result'))}"
    else:
        message = f"{target} failed: {(event.get('error') or {}).get('message', '')}"
    return {"step": event["step"], "title": None, "message": message, "at": event["at"]}


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"
