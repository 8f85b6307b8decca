"""Commands about mission files and the state folder: ``validate``, ``tools``, ``schema``, ``migrate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import api
from .app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, AsJson, Home, app, remember_home
from .output import err, escape, out, plain, print_json


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Mission files to check.", show_default=False)],
    replay: Annotated[Path | None, typer.Option(
        "--replay", metavar="FILE", help="Also check a replay file of scripted answers against the mission (one "
                                         "mission only): step ids and addresses, output schemas, tools.")] = None,
    as_json: AsJson = False,
) -> None:
    """Check mission files (and test files, NAME.test.yaml, against their missions) and show each
    valid mission's plan. Exit 0 when all are valid, else 2."""
    from ..errors import UsageError
    from ..mission.plan import plan

    if replay is not None and len(files) != 1:
        raise UsageError(f"--replay checks the answers for one mission, but {len(files)} mission files were given; "
                         "validate them one at a time")
    results = api.validate(files)
    replayed = api.check_replay(replay, results[0].mission) if replay is not None else None
    if as_json:
        shown: dict = {"files": [{"file": r.file, "valid": r.mission is not None,
                                  "mission": r.mission.name if r.mission else None,
                                  **({"cases": r.cases} if r.cases is not None else {}),
                                  "problems": [p.as_json() for p in r.problems]} for r in results]}
        if replay is not None and replayed is not None:
            shown["replay"] = {"file": str(replay), "valid": not replayed and results[0].mission is not None,
                               "problems": [p.as_json() for p in replayed]}
        print_json(shown)
    else:
        for r in results:
            if r.mission is None:
                _problems(r.file, r.problems)
                continue
            if r.cases is not None:
                out.print(f"[green]✓[/] {escape(r.file)}: {r.cases} test case{'s' if r.cases != 1 else ''} of mission "
                          f"[bold]{escape(r.mission.name)}[/]")
                continue
            out.print(f"[green]✓[/] {escape(r.file)}: mission [bold]{escape(r.mission.name)}[/], "
                      f"{len(r.mission.steps)} steps")
            table = Table("#", "step", "kind", "touches", "notes", box=None, pad_edge=False)
            for row in plan(r.mission):
                table.add_row(row.number, escape(row.step.id), row.step.kind, escape(row.touches), escape(row.notes))
            out.print(table)
        if replay is not None and replayed is not None:
            _replay_summary(str(replay), replayed, results[0].mission)
    valid = all(r.mission is not None for r in results) and not replayed
    raise typer.Exit(EXIT_OK if valid else EXIT_USAGE)


def _problems(file: str, problems: list) -> None:
    for problem in problems:
        plain(problem.render(), error=True)
    count = len(problems)
    err.print(f"[red]✗[/] {escape(file)}: {count} problem{'s' if count != 1 else ''}")


def _replay_summary(file: str, problems: list, mission) -> None:
    if problems:
        _problems(file, problems)
    elif mission is None:
        err.print(f"[yellow]![/] {escape(file)}: its answers are well formed; they were not checked against the "
                  "mission, which has problems")
    else:
        out.print(f"[green]✓[/] {escape(file)}: its answers fit mission [bold]{escape(mission.name)}[/]")


@app.command()
def tools(
    mission_file: Annotated[Path, typer.Argument(metavar="MISSION.yaml", help="The mission whose tools to list.")],
    as_json: AsJson = False,
) -> None:
    """Start each integration of a mission and list its tools, their annotations, and what studiox will do.

    Exit 2 when a step calls a tool its server does not have; 1 when an integration cannot start."""
    import asyncio

    from ..ui.rail import tools_table

    rows = asyncio.run(api.tools(api.load_mission(mission_file)))
    if as_json:
        print_json(rows)
    else:
        out.print(tools_table(rows))
    if any(r.get("missing") for r in rows):
        raise typer.Exit(EXIT_USAGE)  # the mission names a tool that is not there: fix the mission
    if any(r.get("error") for r in rows):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def schema() -> None:
    """Print the mission JSON Schema (for editors: see docs/missions.md)."""
    from ..mission.schema import schema_path

    sys.stdout.write(schema_path().read_text(encoding="utf-8"))


@app.command()
def migrate(home: Home = None) -> None:
    """Bring a state folder written by an older studiox to this version's format (any studiox command
    does it on first use when it may write the folder; this is for doing it on purpose)."""
    plain(api.migrate(remember_home(home)))
