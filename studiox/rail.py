"""The Observations rail: turning journal events into what people read.

Live lines while a run goes on, the table of runs, and a run's step-by-step story. Everything
here reads events; nothing here changes a run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from .journal import RunState
from .locks import is_driven
from .store import Store

STATUS_STYLE = {
    "succeeded": "green", "failed": "red", "cancelled": "magenta", "waiting": "yellow",
    "running": "cyan", "interrupted": "yellow", "skipped": "dim",
}


def short(value, width: int = 60) -> str:
    """One line of JSON, cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "—"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"


_INSTANT = {"set", "branch", "fail", "finish"}


def live_line(event: dict) -> str | None:
    """The line printed for an event as a run goes on (rich markup), or None to stay quiet."""
    kind, step = event["type"], escape(str(event.get("step", "")))
    if kind == "run_started":
        return f"run [bold]{event['run']}[/] · mission {escape(event['mission'])} · started {when(event['at'])}"
    if kind == "run_resumed":
        return f"resumed by {escape(event.get('user', '?'))} (process {event.get('pid')})"
    if kind == "step_started":
        if event.get("kind") in _INSTANT and event.get("attempt", 1) == 1:
            return None  # computed on the spot: its ✓ line says all
        return _started_line(event)
    if kind == "step_finished":
        status = event["status"]
        if status == "skipped":
            return f"  [dim]↷ {step} skipped: {escape(event.get('reason', ''))}[/]"
        if status == "failed":
            error = event.get("error") or {}
            goto = f", going to '{event['goto']}'" if event.get("goto") else ", going on"
            return f"  [red]✗[/] {step} failed: {escape(error.get('message', ''))}{goto}"
        output = event.get("output")
        shown = f" → {escape(short(output))}" if output not in (None, {}, []) else ""
        return f"  [green]✓[/] {step} [dim]{seconds(event.get('duration'))}[/]{shown}"
    if kind == "step_failed":
        error = event.get("error") or {}
        retry = f"; retrying in {event['retry_in']:g}s" if event.get("retry_in") is not None else ""
        return f"  [red]✗[/] {step} attempt {event['attempt']} failed ({error.get('kind')}): " \
               f"{escape(error.get('message', ''))}{retry}"
    if kind == "item_finished":
        return f"  [green]✓[/] {step}[{event['index']}] item done"
    if kind == "observation":
        return f"    [dim]· {escape(event['message'])}[/]"
    if kind == "action_started":
        return f"    [dim]· action {escape(event['action']['target'])} started, key {escape(event['key'])}[/]"
    if kind == "action_finished" and not event.get("ok"):
        return f"    [dim]· action failed: {escape((event.get('error') or {}).get('message', ''))}[/]"
    if kind == "model_call":
        return f"    [dim]· model {escape(str(event['model']))}: {_model_usage(event)}[/]"
    if kind == "waiting":
        action = event["action"]
        return f"  [yellow]⏸[/] {step} needs a decision ({event['decision']}): {escape(action['target'])} " \
               f"{escape(short(action['arguments'], 70))}"
    if kind == "decision_applied":
        who = "policy" if event["by"] == "policy" else escape(event["by"])
        note = f": {escape(event['note'])}" if event.get("note") else ""
        edited = " (arguments edited)" if event.get("edited") else ""
        return f"  [bold]⚖[/] {step} {event['status']} by {who}{edited}{note}"
    if kind == "run_reopened":
        return f"taken up again by {escape(event.get('user', '?'))}, from the failed step {escape(str(event.get('failed_at')))}"
    if kind == "run_interrupted":
        return "[yellow]interrupted[/]: the run stopped cleanly and can be resumed"
    if kind == "run_finished":
        return finished_line(event)
    return None


def rail_lines(events: list[dict]) -> list[str]:
    """A whole run as the rail shows it, each line stamped with the time of its event."""
    lines = []
    for event in events:
        line = live_line(event) if event["type"] != "step_started" else _started_line(event)
        if line:
            stamp = time.strftime("%H:%M:%S", time.localtime(event["at"]))
            lines.append(f"[dim]{stamp}[/] {line}")
    return lines


def _started_line(event: dict) -> str:
    attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
    return f"  [cyan]▶[/] {escape(str(event['step']))} [dim]{event.get('kind', '')}{attempt}[/]"


def finished_line(event: dict) -> str:
    status = event["status"]
    if status == "succeeded":
        note = f" — {escape(event['note'])}" if event.get("note") else ""
        return f"[bold green]verdict: {escape(event['verdict'])}[/]{note}"
    if status == "failed":
        error = event.get("error") or {}
        return f"[bold red]failed[/] at {escape(str(error.get('step', '?')))}: {escape(error.get('message', ''))}"
    return f"[bold magenta]cancelled[/]{': ' + escape(event['reason']) if event.get('reason') else ''}"


@dataclass
class RunRow:
    """One line of ``studiox runs``."""

    id: str
    mission: str
    status: str
    verdict: str | None
    started: float | None
    duration: float | None

    def as_json(self) -> dict:
        return self.__dict__.copy()


def list_runs(store: Store) -> list[RunRow]:
    """Every run in the store, newest first, each read in a few lookups."""
    from .journal import summary

    rows = []
    for key, info in store.records("run:"):
        run_id = key.removeprefix("run:")
        first, last = summary(store, run_id)
        if first is None or last is None:
            continue
        driven = is_driven(store.home, run_id)
        status = _status(last, driven)
        rows.append(RunRow(run_id, first.get("mission", info.get("mission", "?")), status,
                           last.get("verdict") if last["type"] == "run_finished" else None,
                           first["at"], last["at"] - first["at"]))
    return sorted(rows, key=lambda r: r.started or 0, reverse=True)


def _status(last: dict, driven: bool) -> str:
    if last["type"] == "run_finished":
        return last["status"]
    if driven:
        return "running"
    return "waiting" if last["type"] == "waiting" else "interrupted"


def runs_table(rows: list[RunRow]) -> Table:
    table = Table("run", "mission", "status", "verdict", "started", "duration", title=None, header_style="bold")
    for r in rows:
        style = STATUS_STYLE.get(r.status, "")
        table.add_row(r.id, escape(r.mission), f"[{style}]{r.status}[/]", escape(r.verdict or "—"),
                      when(r.started), seconds(r.duration))
    return table


def steps_table(state: RunState) -> Table:
    """Each finished step of a run: status, attempts, time and output."""
    table = Table("step", "status", "attempts", "time", "output / error", header_style="bold")
    for address, ev in state.done.items():
        style = STATUS_STYLE.get(ev["status"], "")
        detail = ev.get("error", {}).get("message", "") if ev["status"] == "failed" else short(ev.get("output"), 70)
        if ev["status"] == "skipped":
            detail = ev.get("reason", "")
        table.add_row(escape(address), f"[{style}]{ev['status']}[/]", str(ev.get("attempts", "")),
                      seconds(ev.get("duration")), escape(detail))
    return table


def decisions_table(decisions) -> Table:
    table = Table("id", "status", "run", "mission", "step", "action", "requested", header_style="bold")
    for d in decisions:
        r = d.request
        style = {"pending": "yellow", "approved": "green", "rejected": "red", "expired": "magenta",
                 "void": "dim"}[d.status]
        table.add_row(d.id, f"[{style}]{d.status}[/]", r["run"], escape(r["mission"]), escape(r["step"]),
                      escape(f"{r['action']['target']} {short(r['action']['arguments'], 50)}"), when(r["requested_at"]))
    return table


def outcome_line(decision) -> str:
    outcome = decision.outcome
    if outcome is None:
        return f"{decision.id} is [yellow]{decision.status}[/]"
    by = outcome["by"] + (f" (claimed: {escape(outcome['claimed_by'])})" if outcome.get("claimed_by") else "")
    note = f" — {escape(outcome['note'])}" if outcome.get("note") else ""
    edited = " with edited arguments" if outcome.get("edited") else ""
    return f"{decision.id} {outcome['status']}{edited} by {escape(by)} at {when(outcome['at'])}{note}"


def tools_table(rows: list[dict]) -> Table:
    table = Table("integration", "tool", "annotations", "used by", "what studiox does", header_style="bold")
    for r in rows:
        if r.get("error"):
            table.add_row(escape(r["integration"]), "—", "", "", f"[red]{escape(r['error'])}[/]")
            continue
        style = "green" if r["studiox"].startswith("runs freely") else "yellow"
        table.add_row(escape(r["integration"]), escape(r["tool"]), escape(r["annotations"]),
                      escape(", ".join(r["used_by"]) or "—"), f"[{style}]{escape(r['studiox'])}[/]")
    return table


def _model_usage(event: dict) -> str:
    """A model call's usage as the rail tells it; a replayed call has none unless its replay file scripts it."""
    tokens = f"{event['input_tokens']}→{event['output_tokens']} tokens" \
        if event.get("input_tokens") is not None or event.get("output_tokens") is not None else ""
    cost = "" if event.get("cost_usd") is None else f"${event['cost_usd']:.6f}"
    if event.get("replayed"):
        scripted = " · ".join(filter(None, [tokens, cost]))
        return "replayed" + (f" · scripted usage: {scripted}" if scripted else "")
    timing = "[bold]cached[/]" if event.get("cached") else seconds(event.get("latency_s"))
    return " · ".join(filter(None, [tokens, cost, timing]))


def usage_totals(calls: list[dict]) -> dict:
    """What model calls used, as ``status --json`` gives it: replayed and cached calls are counted
    apart, and tokens and dollars are summed only where known (null when no call has them)."""

    def known(key: str):
        values = [e[key] for e in calls if e.get(key) is not None]
        return round(sum(values), 6) if values else None

    return {"model_calls": len(calls), "replayed": sum(1 for e in calls if e.get("replayed")),
            "cached": sum(1 for e in calls if e.get("cached")), "input_tokens": known("input_tokens"),
            "output_tokens": known("output_tokens"), "cost_usd": known("cost_usd")}


def usage_table(state: RunState) -> Table | None:
    """Model usage per step and for the whole run: calls (replayed and cached apart), tokens, cost, time."""
    if not state.model_calls:
        return None
    table = Table("step", "model calls", "replayed", "cached", "tokens in", "tokens out", "cost (USD)", "model time",
                  header_style="bold", title="model usage")
    rows: dict[str, list] = {}
    for e in state.model_calls:
        rows.setdefault(e["step"], []).append(e)

    def add(label: str, events: list, style: str = "") -> None:
        totals = usage_totals(events)
        missing = "replayed" if totals["replayed"] else "—"  # a replayed turn spends nothing, and says so

        def cell(value, form: str = "{}") -> str:
            return missing if value is None else form.format(value)

        table.add_row(f"[{style}]{escape(label)}[/]" if style else escape(label), str(totals["model_calls"]),
                      str(totals["replayed"]), str(totals["cached"]), cell(totals["input_tokens"]),
                      cell(totals["output_tokens"]), cell(totals["cost_usd"], "{:.6f}"),
                      seconds(sum(e.get("latency_s") or 0 for e in events)))

    for step, events in rows.items():
        add(step, events)
    add("run total", state.model_calls, "bold")
    return table
