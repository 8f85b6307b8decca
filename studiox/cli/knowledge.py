"""``studiox knowledge``: index, search and inspect a mission's knowledge sources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import api, sources
from .app import AsJson, Home, app, remember_home
from .output import escape, out, plain, print_json

knowledge_app = typer.Typer(help="A mission's knowledge sources: index, search, status, show.", no_args_is_help=True,
                            context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(knowledge_app, name="knowledge")
Mission = Annotated[Path, typer.Argument(metavar="MISSION.yaml", help="The mission whose sources to use.")]


def _home(home: Path | None) -> Path:
    return api.home_path(remember_home(home))


@knowledge_app.command("index")
def index(mission_file: Mission, source: Annotated[str | None, typer.Option("--source", help="Only this one.")] = None,
          home: Home = None, as_json: AsJson = False) -> None:
    """Bring the sources' indexes up to date (only new, changed or deleted files are read), with a
    progress bar at a terminal."""
    mission = api.load_mission(mission_file)
    if not as_json and out.is_terminal:  # a bar per source: documents looked at, of how many
        from rich.progress import Progress

        with Progress(console=out, transient=True) as bar:
            tasks: dict[str, object] = {}

            def told(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"indexing {name}", total=total)
                bar.update(tasks[name], completed=done)  # type: ignore[arg-type]

            done = sources.index(mission, _home(home), source, told)
    else:
        done = sources.index(mission, _home(home), source)
    if as_json:
        print_json(done)
        return
    for row in done:
        for note in row["notes"]:
            plain(note)
        plain(f"{row['source']}: {row['documents']} documents, {row['passages']} passages — read {len(row['read'])}, "
              f"removed {len(row['removed'])}, renamed {len(row['moved'])}, unchanged {row['unchanged']}")


@knowledge_app.command("search")
def search(mission_file: Mission, source: Annotated[str, typer.Argument(help="The source's name.")],
           query: Annotated[str, typer.Argument(help="What to look for.")],
           where: Annotated[list[str], typer.Option("--where", metavar="FIELD=VALUE", help="An exact filter.")] = [],  # noqa: B006
           top: Annotated[int, typer.Option("--top", min=1, max=50)] = 5, home: Home = None,
           as_json: AsJson = False) -> None:
    """Ranked passages with their scores and citations."""
    from ..errors import UsageError

    filters = {}
    for pair in where:
        if "=" not in pair:
            raise UsageError(f"--where {pair}: write FIELD=VALUE")
        key, value = pair.split("=", 1)
        filters[key] = value
    hits = sources.search(api.load_mission(mission_file), _home(home), source, query, filters or None, top)
    if as_json:
        print_json(hits)
    elif not hits:
        plain("no passage matches")
    else:
        table = Table("score", "citation", "heading", "text", header_style="bold")
        for h in hits:
            table.add_row(f"{h['score']:.3g}", escape(h["citation"]), escape(h["heading"] or "—"),
                          escape(" ".join(h["text"].split())[:160]))
        out.print(table)


@knowledge_app.command("status")
def status(mission_file: Mission, home: Home = None, as_json: AsJson = False) -> None:
    """Each source: documents, passages, when it was indexed, and the files changed since."""
    from ..units import when

    rows = sources.status(api.load_mission(mission_file), _home(home))
    if as_json:
        print_json(rows)
        return
    table = Table("source", "documents", "passages", "indexed", "stale files", header_style="bold")
    for r in rows:
        stale = "not indexed yet" if r["stale"] is None else (", ".join(r["stale"][:5]) or "none")
        table.add_row(escape(r["source"]), str(r["documents"]), str(r["passages"]),
                      when(r.get("last_indexed")), escape(stale))
    out.print(table)


@knowledge_app.command("show")
def show(mission_file: Mission, citation: Annotated[str, typer.Argument(help="SOURCE/FILE#L3-L12")],
         as_json: AsJson = False) -> None:
    """Print the passage a citation names."""
    found = sources.show(api.load_mission(mission_file), citation)
    if as_json:
        print_json(found)
    else:
        plain(f"{found['citation']} ({found['file']})\n{found['text']}")
