"""The audit trail for compliance: ``audit verify`` (and the exports built on the same reads)."""

from __future__ import annotations

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
