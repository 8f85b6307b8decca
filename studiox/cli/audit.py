"""The audit trail for compliance: ``audit verify`` and ``audit export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import api
from .app import EXIT_FAILED, EXIT_OK, AsJson, Home, app, remember_home
from .output import escape, out, plain, print_json

audit_app = typer.Typer(help="Verify and export the audit trail.", no_args_is_help=True,
                        context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(audit_app, name="audit")

_STYLE = {"intact": "green", "tampered": "bold red", "not chained": "yellow", "no key": "yellow"}


@audit_app.command("verify")
def verify(
    run_id: Annotated[str | None, typer.Argument(metavar="[RUN_ID]", help="The run (or the start of its id).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every run in the state folder.")] = False,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Check that runs' journals are as they were written: no event edited, deleted, inserted or
    reordered, none cut off. Exit 0 when every run is intact (or was written before chains existed),
    1 when one is not, or cannot be verified here (a keyed chain without STUDIOX_AUDIT_KEY)."""
    if (run_id is None) == (not every):
        raise typer.BadParameter("name a run, or give --all")
    store = api.need_store(remember_home(home))
    verdicts = api.verify_runs(store, None if every else [api.resolve_run(store, run_id or "")])
    if as_json:
        print_json([v.as_json() for v in verdicts])
    elif not verdicts:
        plain("no runs")
    else:
        table = Table("run", "journal", "chain", "events", "first problem", header_style="bold")
        for v in verdicts:
            style = _STYLE.get(v.state, "")
            table.add_row(v.run, f"[{style}]{escape(v.state)}[/]", v.chain or "—", str(v.events),
                          escape(v.problem or ""))
        out.print(table)
    raise typer.Exit(EXIT_OK if all(v.state in ("intact", "not chained") for v in verdicts) else EXIT_FAILED)


@audit_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv, md or html (one self-contained file).")],
    run_id: Annotated[str | None, typer.Option("--run", metavar="RUN_ID", help="Only this run.")] = None,
    mission: Annotated[str | None, typer.Option("--mission", help="Only runs of this mission.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Runs started since: 2h, 3d, or an ISO date.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Runs started until: an ISO date or time.")] = None,
    approver: Annotated[str | None, typer.Option("--approver", help="Only runs with a decision by this person.")]
    = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file (default: stdout).")]
    = None,
    home: Home = None,
) -> None:
    """What happened across runs, for auditors: each run's timeline, evidence and decisions (who
    approved what, when, with edits from → to), times in ISO 8601 UTC."""
    from ..errors import UsageError
    from ..export import FORMATS, render
    from .runs import _since

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    store = api.open_store(remember_home(home))
    runs = [] if store is None else api.audit_runs(
        store, run_id=api.resolve_run(store, run_id) if run_id else None, mission=mission, since=_since(since),
        until=_since(until), approver=approver)
    text = render(fmt, runs, "studiox audit report")
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
    plain(f"wrote {len(runs)} run{'s' if len(runs) != 1 else ''} to {output}", error=True)
