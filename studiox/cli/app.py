"""The ``studiox`` application: the command tree, global options and the exit-code contract.

Exit codes (see README): 0 finished with a verdict (or did what was asked) · 1 the run failed ·
2 bad usage, an invalid mission, an unusable state folder · 3 paused, waiting for a decision ·
130 interrupted · 70 a bug in studiox. Nothing here imports litellm, mcp or the engine at
start-up: commands that do not run a model or a tool stay fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__
from .output import out

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED, EXIT_BUG = 0, 1, 2, 3, 130, 70

app = typer.Typer(
    name="studiox",
    help="Run Missions: durable, governed, observable multi-step processes written in YAML.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
state: dict[str, Any] = {"debug": False, "home": None}

Home = Annotated[
    Path | None,
    typer.Option("--home", help="The state folder (default: $STUDIOX_HOME, else the nearest .studiox in this "
                               "folder or above, else ./.studiox).", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
NoInput = Annotated[bool, typer.Option(
    "--no-input", help="Never ask at the terminal: a decision parks the run (exit 3) to be decided later.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"studiox {__version__}", markup=False)
        raise typer.Exit()


def _backend(value: str | None) -> str | None:
    """--backend: the store for this process and the processes it starts, as STUDIOX_BACKEND chooses it."""
    if value is None:
        return None
    from ..errors import UsageError, suggest
    from ..state.backends import BACKENDS

    name = value.strip().lower()
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {value!r} for --backend: choose 'local' (the state folder) or 'postgres' "
                         f"(the database at $STUDIOX_DATABASE_URL){suggest(name, BACKENDS)}")
    os.environ["STUDIOX_BACKEND"] = name
    return name


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    backend: Annotated[str | None, typer.Option(
        "--backend", metavar="local|postgres", callback=_backend, show_default=False,
        help="Where runs are kept: 'local', the state folder (the default), or 'postgres', the database at "
             "$STUDIOX_DATABASE_URL. Overrides $STUDIOX_BACKEND.")] = None,
) -> None:
    state["debug"] = debug


def remember_home(home: Path | None) -> Path | None:
    """Note the state folder a command uses, so that a crash log lands beside its runs."""
    state["home"] = home
    return home
