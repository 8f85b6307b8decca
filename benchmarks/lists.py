"""How long the commands that read many stored runs take: `runs` (the newest 50, the default),
`runs --all` (every run, what `runs` printed before it had a limit), `decisions` (the Decision
Queue) and `status RUN` (an old run), each a new process.

    python benchmarks/lists.py [--before REV] [--quick] [--sizes N ...]

With 10, 1,000 and 10,000 stored runs (--quick: 10 and 1,000; `runs --all` is left out at
10,000). Every 10th run is of a mission whose `tool` step needs an approval, so it parks in the
Decision Queue; every other one of those is rejected and driven to its end, so the queue holds
decided and pending decisions, oldest first. The runs are made once per version (the store is
each version's own), in-process with that version's engine in a child process, so making
10,000 takes a while; the commands are then timed in turns (before, after, …), median of 5
(--quick: 3). See _versions.py.

Goal on the reference machine (2 cores): `runs`, `decisions` and `status RUN` ≤ 0.3 s each at
10,000 runs.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _versions as versions
from _versions import Row

GOAL_S = 0.3
PARK_EVERY = 10  # every 10th run waits for a decision; every other one of those is rejected and ends
PLAIN = "mission: many\nsteps:\n  - {id: a, set: {x: 1}}\n"
GATED = ("mission: pay\nintegrations: {erp: {command: python}}\nsteps:\n"
         "  - {id: look, set: {amount: 120}}\n"
         "  - {id: pay, tool: erp.post_payment, arguments: {amount: '${{ steps.look.output.amount }}', to: ACME}}\n")


# ------------------------------------------------------------------------------- in the child


def make_runs(home: str, first: int, count: int) -> dict:
    """Add runs number first … first + count - 1 to the state folder ``home``; the id of the oldest run.

    The tools door has no servers (``Ports()``): a tool it knows nothing of is not read-only, so the
    gated step parks for a decision without starting anything."""
    from studiox import mission as missions
    from studiox.adapters.ports import Ports
    from studiox.engine import Engine
    from studiox.state.store import Store

    started = time.perf_counter()
    store = Store.open(Path(home), create=True)
    assert store is not None
    engine = Engine(store, ports=lambda mission, run_id, options: Ports())
    plain = missions.loads(PLAIN, "many.yaml")
    gated = missions.loads(GATED, "pay.yaml")
    oldest, parked = None, 0
    for i in range(first, first + count):
        gate = i % PARK_EVERY == PARK_EVERY - 1
        run_id = engine.start(gated if gate else plain, {})
        outcome = engine.drive(run_id)
        oldest = oldest or run_id
        if gate:
            assert outcome.status == "waiting", outcome
            parked += 1
            if parked % 2 == 0:
                reject(store, engine, run_id, outcome)
    store.close()
    return {"oldest": oldest, "seconds": time.perf_counter() - started}


def reject(store, engine, run_id: str, outcome) -> None:
    from studiox import api

    decision = (outcome.waiting or {}).get("decision")
    if decision is None or not hasattr(api, "decide"):
        return  # a version that says otherwise: leave it pending
    api.decide(store, decision, "rejected", by=getpass.getuser(), note="not this one")
    engine.drive(run_id, resume=True)


TASKS = {"make": make_runs}


# ------------------------------------------------------------------------------- in the parent


def command(what: str, oldest: str) -> list[str]:
    return {"runs": ["runs"], "runs --all": ["runs", "--all"], "decisions": ["decisions"],
            "status RUN": ["status", oldest]}[what]


def timed(tree: versions.Tree, home: Path, args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "studiox", *args, "--home", str(home)], env=versions.env(tree),
                          cwd=tree.path, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "no pending decisions" in done.stdout or "no runs" in done.stdout:
        raise versions.ChildFailed(f"{tree.header}: studiox {' '.join(args)} said: {done.stdout[-500:]}"
                                   f"{done.stderr[-1000:]}")
    return elapsed


def main() -> None:
    args = versions.arguments(__doc__, lambda p: p.add_argument("--sizes", type=int, nargs="+", metavar="N",
                                                                help="how many stored runs (default 10 1000 10000)"))
    if args.child:
        return versions.serve(TASKS, args.child)
    sizes = args.sizes or ([10, 1000] if args.quick else [10, 1000, 10_000])
    rounds = 3 if args.quick else 5
    folder = Path(tempfile.mkdtemp(prefix="studiox-lists-"))
    rows: list[Row] = []
    try:
        with versions.trees(args.before) as trees:
            made = {tree.name: 0 for tree in trees}
            oldest: dict[str, str] = {}
            making: dict[str, float] = {tree.name: 0.0 for tree in trees}
            for n in sorted(sizes):
                for tree in trees:  # each version's store grows to n runs, made by that version
                    home = folder / tree.name
                    versions.progress.print(f"{tree.header}: making runs {made[tree.name] + 1:,}…{n:,}")
                    answer = versions.child(tree, "make", {"home": str(home), "first": made[tree.name],
                                                           "count": n - made[tree.name]})
                    oldest.setdefault(tree.name, answer["oldest"])
                    making[tree.name] += answer["seconds"]
                    made[tree.name] = n
                whats = ["runs", "decisions", "status RUN"] + (["runs --all"] if n < 10_000 else [])
                for what in whats:
                    times = versions.interleave(trees, rounds, lambda tree, what=what: timed(
                        tree, folder / tree.name, command(what, oldest[tree.name])), f"{what} at {n:,},")
                    rows.append(Row(f"{what} · {n:,} runs", times,
                                    "{:.2f} s".format, "" if what == "runs --all" else f"≤ {GOAL_S} s at 10,000",
                                    GOAL_S if n >= 10_000 and what != "runs --all" else None))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    caption = (f"each a new process; every {PARK_EVERY}th run parked for a decision, half of those rejected; "
               f"making {max(sizes):,} runs took " + versions.pair(trees, making, lambda s: f"{s:.0f} s"))
    versions.table(trees, f"commands over many stored runs, median of {rounds}", "command · stored runs", rows,
                   caption=caption)


if __name__ == "__main__":
    main()
