"""The ``studiox`` command: parse arguments, call one function below, print, choose the exit code.

Exit codes (the contract, see README): 0 finished with a verdict · 1 the run failed ·
2 bad usage or an invalid mission · 3 paused, waiting for a decision · 130 interrupted.
Nothing here imports litellm or mcp: commands that do not run a model or a tool stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import MissionInvalid, StudioxError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED, EXIT_BUG = 0, 1, 2, 3, 130, 70

app = typer.Typer(
    name="studiox",
    help="Run Missions: durable, governed, observable multi-step processes written in YAML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}

Home = Annotated[
    Path | None,
    typer.Option("--home", help="The state folder (default: $STUDIOX_HOME, else ./.studiox).", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"studiox {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


def home_path(home: Path | None) -> Path:
    """The state folder: --home, else $STUDIOX_HOME, else ./.studiox."""
    return home or Path(os.environ.get("STUDIOX_HOME") or ".studiox")


# ---------------------------------------------------------------------------- missions


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Mission files to check.", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Check mission files and show each valid one's plan. Exit 0 when all are valid, else 2."""
    from .mission import load
    from .plan import plan

    results = []
    for file in files:
        try:
            mission = load(file)
        except MissionInvalid as e:
            results.append((str(file), None, e.problems))
        else:
            results.append((str(file), mission, []))
    if as_json:
        payload = [{"file": f, "valid": m is not None, "mission": m.name if m else None,
                    "problems": [p.as_json() for p in problems]} for f, m, problems in results]
        out.print_json(json.dumps({"files": payload}))
    else:
        for file, mission, problems in results:
            if mission is None:
                for problem in problems:
                    err.print(problem.render(), markup=False)
                err.print(f"[red]✗[/] {file}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
                continue
            out.print(f"[green]✓[/] {file}: mission [bold]{mission.name}[/], {len(mission.steps)} steps")
            table = Table("#", "step", "kind", "touches", "notes", box=None, pad_edge=False)
            for row in plan(mission):
                table.add_row(row.number, row.step.id, row.step.kind, row.touches, row.notes)
            out.print(table)
    raise typer.Exit(EXIT_OK if all(m is not None for _, m, _ in results) else EXIT_USAGE)


@app.command()
def schema() -> None:
    """Print the mission JSON Schema (for editors: see docs/missions.md)."""
    from .schema import schema_path

    sys.stdout.write(schema_path().read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become a message and an exit code, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except StudioxError as e:
        err.print(e.render(), markup=False)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except typer.Abort:
        return EXIT_INTERRUPTED
    except typer.TyperException as e:  # a usage error found while parsing the arguments
        e.show()  # type: ignore[attr-defined]
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - the one place that turns a crash into a message
        if _state["debug"]:
            raise
        err.print(f"studiox hit an internal error (a bug): {type(e).__name__}: {e}\n"
                  "Run the same command with --debug for the traceback, and please report it.", markup=False)
        return EXIT_BUG
    return code if isinstance(code, int) else EXIT_OK


def entry() -> None:
    sys.exit(main())
