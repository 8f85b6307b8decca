"""Enterprise Knowledge on a real index: SQLite FTS5 (now) against the in-memory BM25 it replaced.

    python benchmarks/knowledge.py [N ...] [--before REV] [--quick]   (default: 1000 10000; REV 7f88862;
                                                                      --quick: 1000 only)

On generated corpora of N Markdown documents (a purchase order each, with front matter): the
first index, a re-index after one document changed, queries (p50 and p95 over 50 part numbers),
and what one retrieve step costs a run — which for the in-memory BM25 of REV (loaded from git)
is building its index from every document, in every run. Goals: first index ≤ 10 s at 10,000;
re-index after one change ≤ 0.2 s; a query ≤ 10 ms at 10,000.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studiox.adapters.knowledge import Knowledge  # noqa: E402

WORDS = ("chair desk lamp monitor cable hotel travel catering licence laptop printer toner paper shelf "
         "cabinet phone headset projector whiteboard marker").split()


def corpus(folder: Path, n: int) -> None:
    rng = random.Random(7)
    folder.mkdir(parents=True)
    for i in range(n):
        items = ", ".join(rng.sample(WORDS, 4))
        (folder / f"PO-{i:05d}.md").write_text(
            f"---\npo_number: PO-{i:05d}\ncost_centre: CC-{rng.randint(100, 999)}\n---\n# Purchase order PO-{i:05d}\n\n"
            f"Supplier {rng.choice(['Nordlicht', 'Südwerk', 'ACME', 'Kontor'])} GmbH.\n\nItems: {items}.\n\n"
            f"Total EUR {rng.randint(100, 9999)}.00, payment 30 days net.\n")


def old_bm25(rev: str):
    """The knowledge module of ``rev`` (the in-memory BM25), loaded from git."""
    source = subprocess.run(["git", "show", f"{rev}:studiox/adapters/knowledge.py"], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    module = types.ModuleType("studiox.adapters.old_knowledge")
    module.__dict__["__package__"] = "studiox.adapters"
    sys.modules[module.__name__] = module  # (dataclasses look their module up)
    exec(compile(source, "old_knowledge.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def measure(n: int, rev: str) -> list[tuple]:
    base = Path(tempfile.mkdtemp(prefix="studiox-kb-"))
    docs = base / "docs"
    corpus(docs, n)
    sources = {"orders": {"path": "docs"}}
    queries = [f"PO-{i:05d} chair" for i in random.Random(3).sample(range(n), 50)]
    new = Knowledge(sources, base, base / "index")
    first = timed(lambda: new.index("orders")[0].close())
    (docs / "PO-00001.md").write_text("---\npo_number: PO-00001\n---\n# Changed\n\nNow about hotels.\n")
    again = timed(lambda: new.index("orders")[0].close())
    new_times = [timed(lambda q=q: asyncio.run(new.search("orders", q, 3))) for q in queries]
    fresh = Knowledge(sources, base, base / "index")  # what a run pays: bring the index up to date, one search
    step_new = timed(lambda: asyncio.run(fresh.search("orders", queries[0], 3)))
    fresh.close()
    new.close()
    old = old_bm25(rev)
    build = timed(lambda: old.Index.build("orders", sources["orders"], base))
    index = old.Index.build("orders", sources["orders"], base)
    old_times = [timed(lambda q=q: index.search(q, 3)) for q in queries]
    return [
        ("first index", f"{build:.2f} s (every run)", f"{first:.2f} s", "≤ 10 s at 10,000"),
        ("re-index after one change", f"{build:.2f} s (every run)", f"{again * 1000:.0f} ms", "≤ 0.2 s"),
        ("query p50 / p95", f"{percentile(old_times, .5) * 1000:.1f} / {percentile(old_times, .95) * 1000:.1f} ms",
         f"{percentile(new_times, .5) * 1000:.1f} / {percentile(new_times, .95) * 1000:.1f} ms", "≤ 10 ms at 10,000"),
        ("a retrieve step in a run", f"{(build + statistics.median(old_times)) * 1000:.0f} ms",
         f"{step_new * 1000:.0f} ms", ""),
    ]


def main() -> None:
    args = sys.argv[1:]
    rev = "7f88862"
    if "--before" in args:
        at = args.index("--before")
        rev = args[at + 1]
        del args[at:at + 2]
    quick = "--quick" in args
    sizes = [int(a) for a in args if a != "--quick"] or ([1000] if quick else [1000, 10000])
    table = Table("documents", "what", f"in-memory BM25 ({rev})", "FTS5 index (now)", "goal", header_style="bold",
                  title="Enterprise Knowledge")
    for n in sizes:
        for what, before, after, goal in measure(n, rev):
            table.add_row(f"{n:,}", what, before, after, goal)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
