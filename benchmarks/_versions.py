"""Before and after in one run: what the benchmarks share.

    python benchmarks/X.py [--before REV] [--quick]

Without ``--before`` a benchmark measures the tree it sits in. With ``--before REV`` (any git
revision) it also checks REV out into a temporary ``git worktree add --detach`` (removed at the
end) and measures both, in rounds that take turns (before, after, before, after…), since the
machine is small and shared; the tables show medians. Either way every measurement runs in a
new process of this Python (``sys.executable``) with ``PYTHONPATH`` pointing to the tree
measured first; a child that imports studiox from anywhere else (the venv's editable install,
say) stops with an error instead of measuring the wrong code.

A benchmark script is its own child: ``child(tree, task, params)`` runs the calling script
again with ``--child`` and the tree's ``PYTHONPATH``; there ``serve(TASKS)`` checks where
studiox comes from, calls ``TASKS[task](**params)`` and hands its JSON-able answer back. The
script is always the one in the tree it sits in, so a REV that predates this file (or has older
benchmarks) is measured the same way as the current tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent  # the tree this benchmark sits in: "after"
TREE_VARIABLE = "STUDIOX_BENCH_TREE"  # tells a child which tree it must import studiox from
ANSWER = "studiox-bench-answer: "  # how a child's answer line starts (anything else it prints is ignored)
# a child must not inherit what would change what it measures: coverage's start-up hook (a .pth
# in the venv), a state folder, a sync setting the benchmark does not choose itself
DROPPED = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG", "STUDIOX_HOME", "STUDIOX_SYNC",
           "STUDIOX_TEST_KILL_AFTER_EVENT")

console = Console(width=120)
progress = Console(stderr=True, style="dim", highlight=False)


@dataclass(frozen=True)
class Tree:
    name: str  # "before" or "after"
    path: Path
    header: str  # the table's column: "before (REV)" or "after"


class ChildFailed(RuntimeError):
    pass


def arguments(doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The command line every benchmark takes: --before REV, --quick (and --child, for itself)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().split("\n\n")[0],
                                     epilog=(doc or "").strip().partition("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", metavar="REV", help="also measure this git revision (in a temporary worktree)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and rounds (under 2 minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    if extra:
        extra(parser)
    return parser.parse_args()


def env(tree: Tree, **extra: str) -> dict[str, str]:
    """The environment of a process that measures ``tree``: its PYTHONPATH first."""
    variables = {k: v for k, v in os.environ.items() if k not in DROPPED}
    variables["PYTHONPATH"] = os.pathsep.join([str(tree.path), *filter(None, [os.environ.get("PYTHONPATH")])])
    variables[TREE_VARIABLE] = str(tree.path)
    return {**variables, **extra}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def trees(before: str | None) -> Iterator[list[Tree]]:
    """The trees to measure: [after], or [before, after] with REV checked out for the time being."""
    after = Tree("after", ROOT, "after" if before else "this tree")
    if not before:
        check(after)
        yield [after]
        return
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{before}^{{commit}}")
    except subprocess.CalledProcessError:
        sys.exit(f"--before {before}: not a git revision of {ROOT}")
    folder = Path(tempfile.mkdtemp(prefix="studiox-before-"))
    path = folder / "tree"
    _git("worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        label = before if before.startswith(commit[:7]) or commit.startswith(before) else f"{before}, {commit[:7]}"
        first = Tree("before", path, f"before ({label[:30]})")
        check(first)
        check(after)
        yield [first, after]
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)


def check(tree: Tree) -> None:
    """Stop unless a process given the tree's environment imports studiox from it; compile it ahead
    (so that no first round pays for writing the tree's .pyc files)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree.path / "studiox")], capture_output=True)
    found = subprocess.run([sys.executable, "-c", "import studiox; print(studiox.__file__)"], env=env(tree),
                           cwd=tree.path, capture_output=True, text=True)
    where = found.stdout.strip()
    if found.returncode != 0 or not _inside(where, tree.path):
        sys.exit(f"{tree.header}: studiox is imported from {where or found.stderr.strip()!r}, not from {tree.path}")


def _inside(file: str, folder: Path) -> bool:
    return bool(file) and Path(file).resolve().is_relative_to(folder.resolve())


def child(tree: Tree, task: str, params: dict | None = None, *, script: str | None = None,
          wrap: Sequence[str] = (), timeout: float | None = 1800, **variables: str) -> Any:
    """Run ``task`` of the calling benchmark script in a new process that imports the tree's studiox.

    ``wrap``: a command to run it under (strace, say); ``variables``: more environment.
    """
    script = script or sys.modules["__main__"].__file__
    assert script is not None
    cmd = [*wrap, sys.executable, str(Path(script).resolve()), "--child",
           json.dumps({"task": task, "params": params or {}})]
    done = subprocess.run(cmd, env=env(tree, **variables), cwd=tree.path, capture_output=True, text=True,
                          timeout=timeout)
    answers = [line[len(ANSWER):] for line in done.stdout.splitlines() if line.startswith(ANSWER)]
    if done.returncode != 0 or not answers:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ChildFailed(f"{tree.header}: task {task} failed (exit {done.returncode}):\n{tail}")
    return json.loads(answers[-1])


def serve(tasks: dict[str, Callable[..., Any]], spec: str) -> None:
    """In a child: check where studiox comes from, run one task, print its answer."""
    wanted = os.environ.get(TREE_VARIABLE)
    import studiox

    if not wanted or not _inside(studiox.__file__ or "", Path(wanted)):
        sys.exit(f"studiox was imported from {studiox.__file__}, not from {wanted}: PYTHONPATH is not first")
    order = json.loads(spec)
    answer = tasks[order["task"]](**order["params"])
    sys.stdout.flush()
    print(ANSWER + json.dumps(answer), flush=True)


def interleave(versions: Sequence[Tree], rounds: int, measure: Callable[[Tree], Any],
               what: str = "") -> dict[str, list[Any]]:
    """``rounds`` measurements of each tree, taking turns: before, after, before, after…"""
    results: dict[str, list[Any]] = {tree.name: [] for tree in versions}
    for r in range(rounds):
        for tree in versions:
            progress.print(f"{what} round {r + 1}/{rounds}: {tree.header}")
            results[tree.name].append(measure(tree))
    return results


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


# ---------------------------------------------------------------------------------------- tables


@dataclass
class Row:
    """One line of a comparison: a value per tree: a number, the numbers of every round (shown as
    their median ± half their interquartile range, relative), or a word such as 'refused'."""

    label: str
    values: dict[str, Any]
    fmt: Callable[[float], str] = "{:.3f}".format
    goal: str = ""
    limit: float | None = None  # a number above this misses the goal (shown red)
    extra: list[str] = field(default_factory=list)


def _cell(value: Any, row: Row) -> str:
    if isinstance(value, list):
        rounds = [v for v in value if v is not None]
        middle = median(rounds)
        if middle is None:
            return "–"
        if len(rounds) < 3 or middle <= 0:
            return _cell(middle, row)
        quartiles = statistics.quantiles(rounds, n=4)
        return f"{_cell(middle, row)} [dim]±{(quartiles[2] - quartiles[0]) / 2 / middle:.0%}[/dim]"
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    text = row.fmt(value)
    return f"[red]{text} ✗[/red]" if row.limit is not None and value > row.limit else text  # ✗: misses the goal


def _middle(value: Any) -> Any:
    return median(value) if isinstance(value, list) else value


def _change(before: Any, after: Any) -> str:
    before, after = _middle(before), _middle(after)
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or before <= 0:
        return ""
    ratio = after / before - 1
    return "±0%" if abs(ratio) < 0.005 else f"{ratio:+.0%}".replace("-", "−")


def table(versions: Sequence[Tree], title: str, first: str, rows: Sequence[Row],
          extra: Sequence[str] = (), caption: str | None = None) -> None:
    """Print rows as: first | before (REV) | after | change | goal | extra…; ``change`` compares medians."""
    names = [tree.name for tree in versions]
    headers = [first, *(tree.header for tree in versions)]
    if "before" in names:
        headers.append("change")
    if any(isinstance(v, list) and len(v) >= 3 for row in rows for v in row.values.values()):
        note = "±: half the interquartile range of the rounds, relative to their median"
        caption = f"{caption}\n{note}" if caption else note
    grid = Table(*headers, "goal", *extra, title=title, caption=caption, header_style="bold")
    for row in rows:
        cells = [_cell(row.values.get(name), row) for name in names]
        if "before" in names:
            cells.append(_change(row.values.get("before"), row.values.get("after")))
        grid.add_row(row.label, *cells, row.goal, *row.extra)
    console.print(grid)


def pair(versions: Sequence[Tree], values: dict[str, Any], fmt: Callable[[Any], str]) -> str:
    """A small value of each tree in one cell: 'before → after' (or the one)."""
    return " → ".join("–" if values.get(t.name) is None else fmt(values[t.name]) for t in versions)
