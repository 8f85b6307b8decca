"""The two store backends side by side: local (SQLite in the state folder) and postgres.

    python benchmarks/backends.py [--runs N] [--quick]

Starts a throwaway PostgreSQL server (tests/support/postgres.py: initdb and pg_ctl on a temporary
folder, fsync off) and measures each backend in this process, the two taking turns in every round:
- per-step overhead: a mission of 1,000 `set` steps (--quick: 200) started and driven through the
  engine (api.engine(store).start, then .drive), the fixed cost of a drive (a one-step mission)
  taken off, median of 5 rounds (--quick: 3); events appended per second; the store transactions
  and SQL statements a step costs;
- a store of --runs runs (default 1,000): a two-step mission started and driven that many times,
  one run in five parked at a decision (`approval: required`), so `runs` and `decisions` have rows;
- reads in this process, p50 and p95 of 40 calls (--quick: 15): one `SELECT 1` (the round trip),
  api.list_runs(limit=50), api.list_decisions(limit=50), api.run_status of a finished and of a
  waiting run, and the SQL queries each sends; opening the store;
- `studiox runs` and `studiox decisions` as new processes (python start included, median of 5,
  --quick: 3), and whether they import dbos (python -X importtime, which also says what importing
  psycopg costs them).
Then one table: local | postgres | postgres ÷ local. About a minute (--quick: under 30 s).

Neither backend pays for flushing to disk: the server runs with fsync=off and the state folder with
STUDIOX_SYNC=normal (no fsync per commit), so the difference is round trips and the server's work.
No worker has run against the database, so DBOS's tables do not exist (a run that is not locked is
then looked for with to_regclass instead of in dbos.workflow_status: one query either way).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import _versions as versions
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway server: tests/support/postgres.py

from support import postgres  # noqa: E402

from studiox import api  # noqa: E402
from studiox import mission as missions  # noqa: E402
from studiox.state import backends  # noqa: E402

BACKENDS = ("local", "postgres")
PARK_EVERY = 5  # one run in five waits for a decision
TINY = "mission: tiny\nsteps:\n  - {id: a, set: {v: 1}}\n  - {id: b, set: {v: '${{ steps.a.output.v + 1 }}'}}\n"
GATED = ("mission: gated\nsteps:\n  - {id: a, set: {v: 1}}\n"
         "  - {id: sign, set: {ok: true}, approval: required}\n")
progress = versions.progress


def set_mission(n: int) -> str:
    lines = ["mission: bench", "steps:", "  - {id: s0, set: {v: 0}}"]
    lines += [f"  - {{id: s{i}, set: {{v: '${{{{ steps.s{i - 1}.output.v + 1 }}}}'}}}}" for i in range(1, n)]
    return "\n".join(lines) + "\n"


@dataclass
class Backend:
    name: str
    home: Path
    store: object
    env: dict[str, str]
    finished: list[str] = field(default_factory=list)  # run ids, by how they ended
    waiting: list[str] = field(default_factory=list)

    def engine(self):
        return api.engine(self.store)


def drive(backend: Backend, mission) -> tuple[float, int]:
    """Start and drive one run of ``mission``: the drive's time and the events it appended."""
    engine = backend.engine()
    run_id = engine.start(mission, {})
    before = backend.store.last_seq(run_id)
    started = time.perf_counter()
    outcome = engine.drive(run_id, mission=mission)
    elapsed = time.perf_counter() - started
    (backend.waiting if outcome.status == "waiting" else backend.finished).append(run_id)
    assert outcome.status in ("succeeded", "waiting"), outcome
    return elapsed, backend.store.last_seq(run_id) - before


def counting(store, call: Callable[[], object]) -> tuple[int, int]:
    """(SQL statements, transactions) ``call`` sends to ``store``: its read methods and its transactions,
    wrapped for the time being (on postgres each statement is a round trip to the server)."""
    statements = transactions = 0
    rows, snapshot, transaction, insert = store._rows, store._snapshot, store._transaction, store._insert_events

    def counted_rows(query, args=()):
        nonlocal statements
        statements += 1
        return rows(query, args)

    def counted_snapshot(*asked):
        nonlocal statements
        statements += len(asked)
        return snapshot(*asked)

    @contextmanager
    def counted_transaction():
        nonlocal transactions
        transactions += 1
        with transaction() as execute:
            def counted(query, args=()):
                nonlocal statements
                statements += 1
                return execute(query, args)
            yield counted

    def counted_insert(execute, events):
        nonlocal statements
        before = statements
        insert(execute, events)
        statements += statements == before  # SQLite's executemany, on the connection itself: one statement

    store._rows, store._snapshot, store._transaction, store._insert_events = (
        counted_rows, counted_snapshot, counted_transaction, counted_insert)
    try:
        call()
    finally:
        del store._rows, store._snapshot, store._transaction, store._insert_events
    return statements, transactions


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def cli(backend: Backend, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=backend.env, cwd=backend.home.parent, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{backend.name}: python {' '.join(args)} failed: {done.stderr[-1000:]}")
    return elapsed, done


def imports(backend: Backend, command: str) -> tuple[bool, float | None]:
    """Whether ``studiox COMMAND`` imports dbos, and what importing psycopg costs it (ms, None if it does not)."""
    _, done = cli(backend, "-X", "importtime", "-m", "studiox", command)
    modules = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            if cumulative.isdigit():
                modules[name] = int(cumulative)
    dbos = any(name == "dbos" or name.startswith("dbos.") for name in modules)
    return dbos, modules["psycopg"] / 1000 if "psycopg" in modules else None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0],
                                     epilog=(__doc__ or "").strip().partition("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="runs in each store (default 1,000)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (under 30 s)")
    args = parser.parse_args()
    if args.runs < 100:
        parser.error("--runs: at least 100 (the per-step rounds already store a few dozen)")
    steps, rounds, calls, processes = (200, 3, 15, 3) if args.quick else (1000, 5, 40, 5)
    began = time.perf_counter()
    tree = versions.Tree("after", ROOT, "this tree")
    versions.check(tree)  # the CLI processes import studiox from this tree

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="studiox-bench-")))
        progress.print("starting a throwaway PostgreSQL server…")
        url = stack.enter_context(postgres.server())
        os.environ["STUDIOX_DATABASE_URL"] = url
        for name, text in (("one", set_mission(1)), ("long", set_mission(steps)), ("tiny", TINY), ("gated", GATED)):
            (folder / f"{name}.yaml").write_text(text)
        one, long, tiny, gated = (missions.load(folder / f"{n}.yaml") for n in ("one", "long", "tiny", "gated"))

        stores: list[Backend] = []
        for name in BACKENDS:
            home = folder / name / "state"
            home.parent.mkdir()
            store = backends.open_store(home, create=True, backend=name)
            stores.append(Backend(name, home, store, versions.env(
                tree, STUDIOX_HOME=str(home), STUDIOX_BACKEND=name, STUDIOX_DATABASE_URL=url)))
        stack.callback(lambda: [b.store.close() for b in stores])

        # ------------------------------------------------------------------ per-step overhead
        fixed: dict[str, list[float]] = {b.name: [] for b in stores}
        per_step: dict[str, list[float]] = {b.name: [] for b in stores}
        rates: dict[str, list[float]] = {b.name: [] for b in stores}
        for b in stores:  # warm up: the first drive of a process pays for imports
            drive(b, one)
            drive(b, tiny)
        for r in range(rounds):
            for b in stores:
                progress.print(f"per-step overhead, round {r + 1}/{rounds}: {b.name}, {steps:,} set steps")
                cost = min(drive(b, one)[0] for _ in range(3))
                elapsed, events = drive(b, long)
                fixed[b.name].append(cost)
                per_step[b.name].append(max(0.0, elapsed - cost) / (steps - 1))
                rates[b.name].append(events / elapsed)
        sent = {b.name: counting(b.store, lambda b=b: drive(b, long)) for b in stores}

        # ------------------------------------------------------------------ a store of N runs
        filling: dict[str, list[float]] = {b.name: [] for b in stores}
        for batch in itertools.count():
            left = {b.name: args.runs - b.store.count_runs() for b in stores}
            if max(left.values()) <= 0:
                break
            for b in stores:  # in batches of 50, taking turns
                for _ in range(min(50, left[b.name])):
                    started = time.perf_counter()
                    drive(b, gated if (len(filling[b.name]) + 1) % PARK_EVERY == 0 else tiny)
                    filling[b.name].append(time.perf_counter() - started)
            if batch % 4 == 3 or max(left.values()) <= 50:
                progress.print("filling the stores: " + ", ".join(f"{b.name} {b.store.count_runs():,}" for b in stores)
                               + f" of {args.runs:,} runs")
        counts = {b.name: (b.store.count_runs(), len(api.list_decisions(b.store))) for b in stores}

        # ------------------------------------------------------------------ reads
        rng = random.Random(7)
        reads: dict[str, Callable[[Backend], Callable[[], object]]] = {
            "one query (SELECT 1)": lambda b: lambda: b.store._rows("SELECT 1"),
            "api.list_runs(limit=50)": lambda b: lambda: api.list_runs(b.store, limit=50),
            "api.list_decisions(limit=50)": lambda b: lambda: api.list_decisions(b.store, limit=50),
            "api.run_status, a finished run": lambda b: lambda: api.run_status(b.store, rng.choice(b.finished)),
            "api.run_status, a waiting run": lambda b: lambda: api.run_status(b.store, rng.choice(b.waiting)),
        }
        latency: dict[str, dict[str, list[float]]] = {what: {b.name: [] for b in stores} for what in reads}
        for b in stores:  # warm up
            for make in reads.values():
                make(b)()
        for r in range(calls):
            if r % 10 == 0:
                progress.print(f"reads, call {r + 1}/{calls}")
            for b in stores:
                for what, make in reads.items():
                    call = make(b)
                    started = time.perf_counter()
                    call()
                    latency[what][b.name].append(time.perf_counter() - started)
        queries = {what: {b.name: counting(b.store, make(b))[0] for b in stores} for what, make in reads.items()}
        listed = {b.name: (len(api.list_runs(b.store, limit=50)), len(api.list_decisions(b.store, limit=50)),
                           sum(r.status == "waiting" for r in api.list_runs(b.store, limit=50))) for b in stores}

        # ------------------------------------------------------------------ opening the store, its size
        opening: dict[str, list[float]] = {b.name: [] for b in stores}
        progress.print("opening the stores")
        for _ in range(processes):
            for b in stores:  # as each CLI process does (imports done): a connection, the tables made if missing
                b.store.close()  # (closing the local store checkpoints its write-ahead log: the size is the data's)
                started = time.perf_counter()
                b.store = backends.open_store(b.home, create=False, backend=b.name)
                opening[b.name].append(time.perf_counter() - started)
        sizes = {b.name: b.store.journal_size() for b in stores}

        # ------------------------------------------------------------------ the CLI, new processes
        commands = ("runs", "decisions")
        wall: dict[str, dict[str, list[float]]] = {c: {b.name: [] for b in stores} for c in commands}
        floor = []
        for r in range(processes):
            progress.print(f"studiox runs / decisions as processes, round {r + 1}/{processes}")
            floor.append(cli(stores[0], "-c", "pass")[0])
            for b in stores:
                for command in commands:
                    elapsed, done = cli(b, "-m", "studiox", command)
                    said = done.stdout + done.stderr
                    assert (f"of {args.runs:,} runs" if command == "runs" else "pending") in said, said[-500:]
                    wall[command][b.name].append(elapsed)
        progress.print("python -X importtime -m studiox runs / decisions")
        imported = {c: {b.name: imports(b, c) for b in stores} for c in commands}

    # ---------------------------------------------------------------------- the table
    def median(found: dict[str, list[float]]) -> dict[str, float]:
        return {n: statistics.median(v) for n, v in found.items()}

    sections: list[tuple[str, list[tuple[str, dict, Callable]]]] = [
        (f"driving runs (median of {rounds} rounds)", [
            (f"per `set` step, {steps:,} steps (drive's fixed cost off)", median(per_step), ms),
            ("fixed cost of a drive (a one-step mission)", median(fixed), ms),
            (f"events appended per second, {steps:,}-step drive", median(rates), "{:,.0f}/s".format),
            ("store transactions per step", {n: t / steps for n, (_, t) in sent.items()}, "{:.2f}".format),
            ("SQL statements per step", {n: q / steps for n, (q, _) in sent.items()}, "{:.2f}".format),
            (f"start + drive a 2-step run (×{args.runs:,}, median)", median(filling), ms),
        ]),
        (f"reads in process, p50 / p95 of {calls} calls", [
            row for what in reads for row in (
                (what, latency[what], spread),
                ("    SQL queries per call", queries[what], "{:,}".format))
        ] + [(f"open the store (imports done), median of {processes}", median(opening), ms)]),
        (f"the CLI, a new process each, median of {processes}", [
            *((f"studiox {c} (wall, python start included)", median(wall[c]), ms) for c in commands),
            *((f"studiox {c}: imports dbos? / psycopg import", {n: f"{'yes' if d else 'no'} / " + (
                "–" if p is None else f"{p:.0f} ms") for n, (d, p) in imported[c].items()}, str) for c in commands),
        ]),
        ("the store", [
            (f"size with {args.runs:,} runs (local: after a checkpoint)", sizes, lambda v: f"{v / 1e6:.1f} MB"),
        ]),
    ]
    waiting = listed["local"][2]
    grid = Table("what", *BACKENDS, "postgres ÷ local", title=f"store backends: local (SQLite) and postgres, "
                 f"{args.runs:,} runs, 1 in {PARK_EVERY} waiting for a decision", header_style="bold",
                 caption=f"pending decisions: {', '.join(f'{n} {c[1]:,}' for n, c in counts.items())}; the newest 50 "
                         f"runs hold {waiting} waiting ones, and `runs` asks of each whether a process drives it\n"
                         "on postgres every SQL statement is a round trip, and a transaction adds two (BEGIN, COMMIT)"
                         f"\npostgres: fsync=off; local: STUDIOX_SYNC=normal; python -c pass: "
                         f"{ms(statistics.median(floor))}; whole benchmark: {time.perf_counter() - began:.0f} s")
    for title, rows in sections:
        grid.add_section()
        grid.add_row(f"[bold]{title}[/bold]", "", "", "")
        for label, values, fmt in rows:
            cells = [fmt(values[n]) for n in BACKENDS]
            a, b = (_middle(values[n]) for n in BACKENDS)
            ratio = f"{b / a:.1f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 else ""
            grid.add_row(label, *cells, ratio)
    versions.console.print(grid)


def ms(value: float) -> str:
    return f"{value * 1000:.3f} ms" if value < 0.01 else f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def spread(values: list[float]) -> str:
    """p50 / p95 of a list of times."""
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 95))}"


def _middle(value):
    return percentile(value, 50) if isinstance(value, list) else value


if __name__ == "__main__":
    main()
