"""``studiox test``: run the cases of mission test files; a table, JUnit XML for CI, or JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .app import EXIT_FAILED, EXIT_OK, AsJson, app
from .output import err, escape, out, plain, print_json


@app.command("test")
def test(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Test files (NAME.test.yaml), missions with one beside them, or folders to search (default: .).",
        show_default=False)] = None,
    keyword: Annotated[str | None, typer.Option("-k", metavar="NAME", help="Only the cases whose name contains NAME.")
                       ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", metavar="FILE", help="Also write JUnit XML for CI systems.")
                     ] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Cases played at once (default: up to 4; "
                                                                         "1 plays them in this process).")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep each case's state folder, to look at with "
                                                      "--home (their paths are in the JSON).")] = False,
    as_json: AsJson = False,
) -> None:
    """Run mission test files: each case in a state folder of its own, with scripted models, stub
    tools and scripted decisions. Exit 0 when every case passes, 1 when one fails, 2 when a test
    file (or its mission) is not valid."""
    from ..testing import cases, suite

    found = cases.discover(paths or [Path(".")])
    if not found:
        err.print("no test files found (they are named NAME.test.yaml)")
        raise typer.Exit(EXIT_OK)
    started = time.perf_counter()
    with _Progress(enabled=not as_json and err.is_terminal) as progress:
        results = suite.run(found, keyword=keyword, jobs=jobs, keep=keep, progress=progress.update)
    elapsed = time.perf_counter() - started
    if junit is not None:
        from ..testing.junit import write

        write(results, junit, elapsed)
    failed = sum(1 for r in results if not r.passed)
    if as_json:
        print_json({"passed": len(results) - failed, "failed": failed, "seconds": round(elapsed, 3),
                    "cases": [_json(r) for r in results]})
    else:
        _table(results)
        for r in results:  # whole, unwrapped: a terminal or an editor jumps to FILE:LINE
            if r.failures:
                out.print(f"\n[red]✗[/] [bold]{escape(Path(r.file).name)} › {escape(r.case)}[/]")
                for failure in r.failures:
                    plain(f"  {failure.render()}")
        words = f"{len(results) - failed} passed" + (f", {failed} failed" if failed else "")
        out.print(f"{'[red]✗[/]' if failed else '[green]✓[/]'} {words} in {elapsed:.1f} s")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _table(results) -> None:
    table = Table("case", "result", "time", "first failed expectation", header_style="bold", box=None,
                  pad_edge=False)
    for r in results:
        result = "[green]passed[/]" if r.passed else "[red]failed[/]"
        detail = escape(_clip(r.failures[0].render())) if r.failures else f"[dim]{escape(r.note or '')}[/]"
        table.add_row(f"{escape(Path(r.file).name)} › {escape(r.case)}", result, f"{r.seconds:.2f} s", detail)
    out.print(table)


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _json(r) -> dict:
    return {"file": r.file, "case": r.case, "where": r.where, "passed": r.passed, "seconds": round(r.seconds, 3),
            "failures": [{"where": f.where, "message": f.message} for f in r.failures], "crash_variants": r.variants,
            "note": r.note, "run": r.run, "home": r.home}


class _Progress:
    """A bar on stderr at a terminal while cases and crash variants play."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                                transient=True)
            self.bar.start()
        return self

    def update(self, what: str, done: int, total: int) -> None:
        if self.bar is None or not total:
            return
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
