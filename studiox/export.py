"""The audit export: what happened across runs, for auditors, as JSON Lines, CSV, Markdown or one
self-contained HTML file (no network, no script).

Every time is ISO 8601 in UTC. Each run brings its timeline (every event, one line each), its
evidence (the outputs steps produced) and every decision: what was proposed, what was approved
(with edits from → to), who decided, when, and why. The decision report lists who approved what.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from .report import edits

FORMATS = ("jsonl", "csv", "md", "html")


def utc(ts: float | None) -> str:
    """ISO 8601 in UTC, to the millisecond (exports order events finer than a second)."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def detail(event: dict) -> str:
    """One line saying what an event records."""
    kind = event["type"]
    if kind == "run_started":
        return f"mission {event.get('mission')} (digest {str(event.get('digest'))[:12]}) by {event.get('user')} " \
               f"on {event.get('host')}; inputs {_short(event.get('inputs'))}"
    if kind == "run_resumed":
        return f"resumed by {event.get('user')} on {event.get('host')}" + \
            (" (the mission file had changed)" if event.get("mission_changed") else "")
    if kind == "run_reopened":
        return f"taken up again by {event.get('user')} from the failed step {event.get('failed_at')}"
    if kind == "run_interrupted":
        return str(event.get("reason") or "interrupted")
    if kind == "key_set":
        return f"business key {event.get('key')}"
    if kind == "step_started":
        return f"{event.get('kind')} step, attempt {event.get('attempt', 1)}"
    if kind == "step_finished":
        if event["status"] == "failed":
            return f"failed: {(event.get('error') or {}).get('message')}"
        return f"{event['status']}: {_short(event.get('output'))}"
    if kind == "step_failed":
        return f"attempt {event.get('attempt')} failed: {(event.get('error') or {}).get('message')}"
    if kind == "observation":
        return str(event.get("message"))
    if kind == "action_started":
        action = event.get("action") or {}
        return f"call {action.get('target')} {_short(action.get('arguments'))} (key {event.get('key')})"
    if kind == "action_finished":
        return f"result {_short(event.get('result'))}" if event.get("ok") else \
            f"failed: {(event.get('error') or {}).get('message')}"
    if kind == "model_call":
        return f"model {event.get('model')} turn {event.get('index', 0) + 1}" + (" (replayed)" if event.get("replayed")
                                                                                 else "")
    if kind == "waiting":
        action = event.get("action") or {}
        return f"waits for decision {event.get('decision')}: {action.get('target')} {_short(action.get('arguments'))}"
    if kind == "decision_applied":
        return f"{event.get('status')} by {event.get('by')}" + (f": {event['note']}" if event.get("note") else "")
    if kind == "run_finished":
        return f"{event['status']}" + (f", verdict {event['verdict']}" if event.get("verdict") else "") + \
            (f": {(event.get('error') or {}).get('message')}" if event.get("error") else "")
    return _short({k: v for k, v in event.items() if k not in ("seq", "type", "at", "chain")})


def _short(value, width: int = 160) -> str:
    text = " ".join(json.dumps(value, ensure_ascii=False).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _decisions(report: dict) -> list[dict]:
    return [{**d, "step": s["step"]} for s in report["steps"] for d in s["decisions"]]


def to_jsonl(runs: Iterable[tuple[dict, list[dict]]]) -> str:
    lines = []
    for report, events in runs:
        for e in events:
            lines.append(json.dumps({"run": report["run"]["id"], "mission": report["run"]["mission"],
                                     **{k: v for k, v in e.items() if k != "at"}, "at": utc(e["at"])},
                                    ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def to_csv(runs: Iterable[tuple[dict, list[dict]]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run", "mission", "key", "seq", "at", "event", "step", "by", "detail"])
    for report, events in runs:
        run = report["run"]
        for e in events:
            writer.writerow([run["id"], run["mission"], run["key"] or "", e["seq"], utc(e["at"]), e["type"],
                             e.get("step", ""), e.get("by") or e.get("user") or "", detail(e)])
    return buffer.getvalue()


def to_markdown(runs: Iterable[tuple[dict, list[dict]]], title: str) -> str:
    out = [f"# {title}", ""]
    everything = list(runs)
    out += ["## Decisions", "", "| run | step | decision | status | by | at | edits | note |",
            "|---|---|---|---|---|---|---|---|"]
    for report, _ in everything:
        for d in _decisions(report):
            out.append(f"| {report['run']['id']} | {_md(d['step'])} | {d['id']} | {d.get('status', 'pending')} | "
                       f"{_md(d.get('by') or '—')} | {d.get('applied') or d.get('decided') or '—'} | "
                       f"{_md(edits(d) or '—')} | {_md(d.get('note') or '')} |")
    for report, events in everything:
        run = report["run"]
        out += ["", f"## Run {run['id']} · {_md(run['mission'])}", "",
                f"- key: {_md(run['key'] or '—')}", f"- status: {run['status']}"
                + (f", verdict **{_md(run['verdict'])}**" if run["verdict"] else ""),
                f"- started: {run['started']} by {_md(str(run['started_by']))} on {_md(str(run['host']))}",
                f"- inputs: `{_md(_short(run['inputs'], 300))}`", "", "### Timeline", "",
                "| # | at (UTC) | step | event | detail |", "|---|---|---|---|---|"]
        for e in events:
            out.append(f"| {e['seq']} | {utc(e['at'])} | {_md(e.get('step', ''))} | {e['type']} | {_md(detail(e))} |")
        evidence = [(s["step"], s["output"]) for s in report["steps"] if s["status"] == "succeeded"]
        if evidence:
            out += ["", "### Evidence", ""]
            out += [f"- **{_md(step)}**: `{_md(_short(output, 300))}`" for step, output in evidence]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}"
        ".succeeded,.approved{color:#176c2e}.failed,.rejected{color:#b3261e}.waiting,.pending{color:#8a6d00}"
        "code{background:#f6f6f6;padding:0 .2em}")


def to_html(runs: Iterable[tuple[dict, list[dict]]], title: str) -> str:
    e = html.escape
    everything = list(runs)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>"
             f"</head><body><h1>{e(title)}</h1><h2>Decisions</h2><table><tr><th>run</th><th>step</th><th>decision"
             "</th><th>status</th><th>by</th><th>at</th><th>edits</th><th>note</th></tr>"]
    for report, _ in everything:
        for d in _decisions(report):
            status = d.get("status", "pending")
            parts.append(f"<tr><td>{e(report['run']['id'])}</td><td>{e(d['step'])}</td><td>{e(str(d['id']))}</td>"
                         f"<td class='{e(status)}'>{e(status)}</td><td>{e(str(d.get('by') or '—'))}</td>"
                         f"<td>{e(str(d.get('applied') or d.get('decided') or '—'))}</td><td>{e(edits(d))}</td>"
                         f"<td>{e(d.get('note') or '')}</td></tr>")
    parts.append("</table>")
    for report, events in everything:
        run = report["run"]
        parts.append(f"<h2>Run {e(run['id'])} · {e(run['mission'])}</h2><p>key {e(run['key'] or '—')} · "
                     f"<span class='{e(str(run['status']))}'>{e(str(run['status']))}</span>"
                     + (f" · verdict <b>{e(run['verdict'])}</b>" if run["verdict"] else "")
                     + f" · started {e(str(run['started']))} by {e(str(run['started_by']))}</p>"
                     f"<p>inputs <code>{e(_short(run['inputs'], 300))}</code></p>"
                     "<h3>Timeline</h3><table><tr><th>#</th><th>at (UTC)</th><th>step</th><th>event</th>"
                     "<th>detail</th></tr>")
        for ev in events:
            parts.append(f"<tr><td>{ev['seq']}</td><td>{utc(ev['at'])}</td><td>{e(str(ev.get('step', '')))}</td>"
                         f"<td>{e(ev['type'])}</td><td>{e(detail(ev))}</td></tr>")
        parts.append("</table>")
        evidence = [(s["step"], s["output"]) for s in report["steps"] if s["status"] == "succeeded"]
        if evidence:
            parts.append("<h3>Evidence</h3><ul>" + "".join(
                f"<li><b>{e(step)}</b>: <code>{e(_short(output, 300))}</code></li>" for step, output in evidence)
                + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def render(fmt: str, runs: list[tuple[dict, list[dict]]], title: str) -> str:
    if fmt == "jsonl":
        return to_jsonl(runs)
    if fmt == "csv":
        return to_csv(runs)
    if fmt == "md":
        return to_markdown(runs, title)
    return to_html(runs, title)
