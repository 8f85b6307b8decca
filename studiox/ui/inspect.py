"""``studiox show`` for a person: a run's header, then one block per step (the data comes from
studiox.report)."""

from __future__ import annotations

import json

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..report import edits
from .rail import STATUS_STYLE, clip, seconds


def _json(value, width: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    return clip(text, width)


def render(data: dict) -> Group:
    """``studiox show`` for a person: a header table, then one block per step."""
    run = data["run"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    style = STATUS_STYLE.get(run["status"] or "", "")
    usage = run["usage"]
    cost = "—" if usage["cost_usd"] is None else f"${usage['cost_usd']:.6f}"
    for label, value in (("run", run["id"]), ("mission", f"{run['mission']} (digest {str(run['digest'])[:12]})"),
                         ("key", run["key"] or "—"), ("inputs", _json(run["inputs"], 400)),
                         ("status", f"[{style}]{escape(run['status'] or '?')}[/]"),
                         ("verdict", (run["verdict"] or "—") + (f" — {run['note']}" if run["note"] else "")),
                         ("started", f"{run['started']} by {run['started_by']} on {run['host']}"),
                         ("duration", seconds(run["duration"])),
                         ("model calls", f"{usage['model_calls']} ({usage['replayed']} replayed, {usage['cached']} "
                                         f"cached) · cost {cost}")):
        head.add_row(label, value if label in ("status",) else escape(str(value)))
    if run.get("parent"):
        head.add_row("serves", escape(f"run {run['parent']['run']}, at its step {run['parent']['step']}"))
    for child in run.get("children") or []:
        head.add_row("child run", escape(f"{child['run']} (step {child['step']}; studiox show {child['run']})"))
    parts: list = [head]
    for step in data["steps"]:
        parts.append(Text(""))
        parts.append(_step_block(step))
    return Group(*parts)


def _step_block(step: dict) -> Group:
    style = STATUS_STYLE.get(step["status"], "")
    attempts = len(step["attempts"])
    title = (f"[bold]{escape(step['step'])}[/] [dim]{escape(str(step['kind'] or ''))}[/] · [{style}]{step['status']}"
             f"[/] · {seconds(step['duration'])}" + (f" · {attempts} attempts" if attempts > 1 else ""))
    lines: list = [Text.from_markup(title)]

    def section(label: str, body: str) -> None:
        lines.append(Text("  ").append(f"{label}: ", style="bold").append(body.replace("\n", "\n    ")))

    for a in step["attempts"]:
        if a.get("error"):
            retry = f"; retried after {a['retry_in']:g}s" if a.get("retry_in") is not None else ""
            section(f"attempt {a['attempt']}", f"failed ({a['error'].get('kind')}): {a['error'].get('message')}{retry}")
    for turn in step["model_turns"]:
        for message in turn.get("messages") or []:
            section(f"turn {turn['turn']} · {message.get('role')}", _json(message.get("content") or
                                                                       message.get("tool_calls") or ""))
        answer = turn["answer"] if turn["answer"] else _json(turn["tool_calls"])
        section(f"turn {turn['turn']} · answer ({turn['model']})", _json(answer))
    for call in step["tool_calls"]:
        outcome = _json(call["result"], 600) if call["ok"] else f"failed: {(call['error'] or {}).get('message')}" \
            if call["ok"] is False else "no result recorded (in doubt)"
        section(f"call {call['target']}", f"{_json(call['arguments'], 600)} → {outcome}  [key {call['key']}]")
    for note in step["observations"]:
        section("observed", str(note["message"]))
    for d in step["decisions"]:
        edited = f" (edited {edits(d)})" if d.get("edited") else ""
        who = f"{d.get('status', 'pending')} by {d.get('by') or '—'} at {d.get('applied') or d.get('decided') or '—'}"
        section(f"decision {d['id']}", who + edited + (f": {d['note']}" if d.get("note") else ""))
    if step["status"] == "failed" and step["error"]:
        section("error", f"{step['error'].get('kind')}: {step['error'].get('message')}")
    elif step["status"] == "skipped":
        section("skipped", str(step.get("reason") or ""))
    elif step["output"] is not None:
        section("output", _json(step["output"]))
    return Group(*lines)
