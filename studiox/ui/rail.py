"""The Observations rail: turning journal events into what people read.

Live lines while a run goes on, the table of runs, and a run's step-by-step story. Everything
here reads events; nothing here changes a run.
"""

from __future__ import annotations

import json
import time

from rich.markup import escape
from rich.table import Table

from ..state.journal import RunState, usage_of
from ..units import human_size, when

STATUS_STYLE = {
    "succeeded": "green", "failed": "red", "cancelled": "magenta", "waiting": "yellow",
    "running": "cyan", "interrupted": "yellow", "skipped": "dim",
}


MESSAGE_WIDTH = 300  # observations, error messages, notes: a few lines of a terminal at most



def _cut(text: str, whole: str, width: int) -> str:
    note = f"… ({human_size(len(whole.encode('utf-8', 'surrogatepass')))})"
    return text[: max(width - len(note), 1)] + note


def short(value, width: int = 60) -> str:
    """One line of JSON (or of the text itself), cut to ``width`` characters; a cut one ends with '…' and
    the size of the whole, so that a 5 MB value never floods a terminal."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    head = text[: width * 8]  # enough to fill the line even after runs of white space fold up
    line = " ".join(head.split())
    if len(head) == len(text) and len(line) <= width:
        return line
    return _cut(line, text, width)


ERROR_WIDTH = 900  # why something failed is worth more room than chatter


def clip(text: str, width: int = MESSAGE_WIDTH) -> str:
    """A message cut to ``width`` characters like :func:`short`, but keeping its lines."""
    return text if len(text) <= width else _cut(text, text, width)



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
    """The line printed for an event as a run goes on (rich markup), or None to stay quiet. A child
    run's event (a ``mission:`` step's, marked ``via``) is indented under the step that runs it."""
    if event.get("via"):
        return _child_line(event)
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
            return f"  [dim]↷ {step} skipped: {escape(clip(event.get('reason', '')))}[/]"
        if status == "failed":
            error = event.get("error") or {}
            goto = f", going to '{event['goto']}'" if event.get("goto") else ", going on"
            return f"  [red]✗[/] {step} failed: {escape(clip(error.get('message', ''), ERROR_WIDTH))}{goto}"
        if status == "rejected":  # a person said no: never shown as done
            error = event.get("error") or {}
            goto = f", going to '{event['goto']}'" if event.get("goto") else ""
            return f"  [magenta]⊘[/] {step} rejected: {escape(clip(error.get('message', '')))}{goto}"
        output = event.get("output")
        shown = f" → {escape(short(output))}" if output not in (None, {}, []) else ""
        return f"  [green]✓[/] {step} [dim]{seconds(event.get('duration'))}[/]{shown}"
    if kind == "step_failed":
        error = event.get("error") or {}
        retry = f"; retrying in {event['retry_in']:g} s" if event.get("retry_in") is not None else ""
        if error.get("kind") == "rate_limit" and retry:
            retry = f"; rate limited by the provider{retry}"
        return f"  [red]✗[/] {step} attempt {event['attempt']} failed ({error.get('kind')}): " \
               f"{escape(clip(error.get('message', ''), ERROR_WIDTH))}{retry}"
    if kind == "item_finished":
        return f"  [green]✓[/] {step}[{event['index']}] item done"
    # inside a foreach, items run side by side: each of their lines says which item it is about
    item = f"{step}: " if "[" in step else ""
    if kind == "observation":
        return f"    [dim]· {item}{escape(clip(event['message']))}[/]"
    if kind == "action_started":
        return f"    [dim]· {item}action {escape(event['action']['target'])} started, key {escape(event['key'])}[/]"
    if kind == "action_finished" and not event.get("ok"):
        return f"    [dim]· {item}action failed: " \
               f"{escape(clip((event.get('error') or {}).get('message', ''), ERROR_WIDTH))}[/]"
    if kind == "model_call":
        return f"    [dim]· {item}model {escape(str(event['model']))}: {_model_usage(event)}[/]"
    if kind == "waiting":
        action = event["action"]
        return f"  [yellow]⏸[/] {step} needs a decision ({event['decision']}): {escape(action['target'])} " \
               f"{escape(short(action['arguments'], 70))}"
    if kind == "decision_applied":
        who = "policy" if event["by"] == "policy" else escape(event["by"])
        note = f": {escape(clip(event['note']))}" if event.get("note") else ""
        edited = " (arguments edited)" if event.get("edited") else ""
        return f"  [bold]⚖[/] {step} {event['status']} by {who}{edited}{note}"
    if kind == "run_reopened":
        return f"taken up again by {escape(event.get('user', '?'))}, from the failed step {escape(str(event.get('failed_at')))}"
    if kind == "run_interrupted":
        return "[yellow]interrupted[/]: the run stopped cleanly and can be resumed"
    if kind == "run_finished":
        return finished_line(event)
    return None


def _child_line(event: dict) -> str | None:
    via = str(event["via"])
    indent = "    " * (via.count("/") + 1)
    if event["type"] == "run_started":
        return f"{indent}[cyan]↳[/] {escape(via)} runs mission {escape(event['mission'])} as run [bold]{event['run']}[/]"
    if event["type"] == "run_finished":
        return f"{indent}[cyan]↳[/] {escape(via)}: " + (finished_line(event) or "")
    if event["type"] == "run_resumed":
        return None
    line = live_line({k: v for k, v in event.items() if k not in ("via", "child")})
    return f"{indent}{line}" if line else None


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
        note = f" — {escape(clip(event['note']))}" if event.get("note") else ""
        return f"[bold green]verdict: {escape(event['verdict'])}[/]{note}"
    if status == "failed":
        error = event.get("error") or {}
        return f"[bold red]failed[/] at {escape(str(error.get('step', '?')))}: {escape(clip(error.get('message', ''), ERROR_WIDTH))}"
    return f"[bold magenta]cancelled[/]{': ' + escape(clip(event['reason'])) if event.get('reason') else ''}"


def runs_table(rows: list) -> Table:
    """``studiox runs``: api.RunRow rows."""
    table = Table("run", "mission", "key", "status", "verdict", "started", "duration", title=None,
                  header_style="bold")
    for r in rows:
        style = STATUS_STYLE.get(r.status, "")
        table.add_row(r.id, escape(r.mission), escape(r.key or "—"), f"[{style}]{r.status}[/]", escape(r.verdict or "—"),
                      when(r.started), seconds(r.duration))
    return table


def steps_table(state: RunState) -> Table:
    """Each finished step of a run: status, attempts, time and output."""
    table = Table("step", "status", "attempts", "time", "output / error", header_style="bold")
    for address, ev in state.done.items():
        style = STATUS_STYLE.get(ev["status"], "")
        detail = clip(ev.get("error", {}).get("message", ""), ERROR_WIDTH) if ev["status"] == "failed" else \
            short(ev.get("output"), 70)
        if ev["status"] == "skipped":
            detail = clip(ev.get("reason", ""))
        table.add_row(escape(address), f"[{style}]{ev['status']}[/]", str(ev.get("attempts", "")),
                      seconds(ev.get("duration")), escape(detail))
    return table


def decisions_table(decisions) -> Table:
    table = Table("id", "status", "run", "mission", "key", "step", "action", "requested", header_style="bold")
    for d in decisions:
        r = d.request
        style = {"pending": "yellow", "approved": "green", "rejected": "red", "expired": "magenta",
                 "void": "dim"}[d.status]
        table.add_row(d.id, f"[{style}]{d.status}[/]", r["run"], escape(r["mission"]), escape(r.get("key") or "—"),
                      escape(r["step"]),
                      escape(f"{r['action']['target']} {short(r['action']['arguments'], 50)}"), when(r["requested_at"]))
    return table


def outcome_line(decision) -> str:
    outcome = decision.outcome
    if outcome is None:
        progress = f" — {escape(decision.progress)}" if decision.progress else ""  # a quorum on its way
        return f"{decision.id} is [yellow]{decision.status}[/]{progress}"
    by = outcome["by"] + (f" (claimed: {escape(short(outcome['claimed_by']))})" if outcome.get("claimed_by") else "")
    note = f" — {escape(clip(outcome['note']))}" if outcome.get("note") else ""
    edited = " with edited arguments" if outcome.get("edited") else ""
    return f"{decision.id} {outcome['status']}{edited} by {escape(by)} at {when(outcome['at'])}{note}"


def tools_table(rows: list[dict]) -> Table:
    """Tools by integration; those of a sub-mission (a ``mission:`` step's) are named ``MISSION › INTEGRATION``."""
    table = Table("integration", "tool", "annotations", "used by", "what studiox does", header_style="bold")
    for r in rows:
        integration = f"{r['mission']} › {r['integration']}" if r.get("mission") else r["integration"]
        if r.get("error"):
            table.add_row(escape(integration), escape(r.get("tool") or "—"), "",
                          escape(", ".join(r.get("used_by") or [])), f"[red]{escape(clip(r['error'], ERROR_WIDTH))}[/]")
            continue
        style = "green" if r["studiox"].startswith("runs freely") else "yellow"
        table.add_row(escape(integration), escape(r["tool"]), escape(r["annotations"]),
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
        totals = usage_of(events)
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
