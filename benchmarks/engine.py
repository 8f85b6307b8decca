"""How fast the durable engine is, and how its store grows.

    python benchmarks/engine.py [--before REV] [--quick]

Runs missions of N `set` steps (N = 10, 100, 1,000, 2,000) and a 100-item `foreach`, each step
journaled durably, with STUDIOX_SYNC=normal and =full, and prints the time per durable step (a
drive's fixed cost, measured with a one-step mission, taken off), the journal's size on disk
per step and, where strace is installed, how many fsync/fdatasync calls each step costs. Then it
interrupts a 1,000-step run near its end (kill -9) and times `studiox resume` as a new process.
Each measurement is a new process importing the tree measured; with --before REV the two trees
take turns, and the tables show medians (see _versions.py).

Goals on the reference machine (2 cores): ≤ 0.1 ms per durable step at normal sync, flat in N;
the store growing linearly with N; the resume under 0.5 s.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _versions as versions
from _versions import Row

GOAL_PER_STEP_MS = 0.1  # at normal sync
GOAL_RESUME_S = 0.5
SYNCS = ("normal", "full")
MARK = "/nonexistent/studiox-bench-mark-"  # a path the child asks for between drives, to split strace's log


def set_mission(n: int) -> str:
    lines = ["mission: bench", "steps:"]
    lines.append("  - {id: s0, set: {v: 0}}")
    for i in range(1, n):
        lines.append(f"  - {{id: s{i}, set: {{v: '${{{{ steps.s{i - 1}.output.v + 1 }}}}'}}}}")
    return "\n".join(lines) + "\n"


def foreach_mission(n: int) -> str:
    items = "[" + ", ".join(str(i) for i in range(n)) + "]"
    return ("mission: bench\nsteps:\n  - id: each\n    foreach: '${{ " + items + " }}'\n"
            "    concurrency: 8\n    steps:\n      - {id: work, set: {v: '${{ item }}'}}\n")


def mission_text(kind: str, n: int) -> str:
    return foreach_mission(n) if kind == "foreach" else set_mission(n)


# ------------------------------------------------------------------------------- in the child


def load(folder: Path, kind: str, n: int):
    """The mission of a case, written into ``folder`` and checked once (checking 2,000 steps takes seconds)."""
    from studiox import mission as missions

    path = folder / f"{kind}-{n}.yaml"
    path.write_text(mission_text(kind, n))
    return missions.load(path)


def measure(mission) -> tuple[float, int | None]:
    """Drive a mission once in a new state folder: the drive's time and the journal's size on disk."""
    from studiox.engine import Engine
    from studiox.state.store import Store

    home = Path(tempfile.mkdtemp(prefix="studiox-bench-"))
    try:
        store = Store.open(home / "state", create=True)
        engine = Engine(store)
        run_id = engine.start(mission, {})
        # as `studiox run` does, the mission goes along, unless the version measured is too old to take it
        given = {"mission": mission} if "mission" in inspect.signature(engine.drive).parameters else {}
        started = time.perf_counter()
        outcome = engine.drive(run_id, **given)
        elapsed = time.perf_counter() - started
        assert outcome.status == "succeeded", outcome
        store.close()  # checkpoints the write-ahead log, so the size is the data's, not the log's
        reopened = Store.open(home / "state", create=False)
        size = reopened.journal_size() if hasattr(reopened, "journal_size") else None
        reopened.close()
        return elapsed, size
    finally:
        shutil.rmtree(home)


def drives(cases: list[list], repeats: int = 10) -> dict:
    """The fixed cost of a drive, then each case [kind, n]: the median of up to ``repeats`` drives (more of
    the small ones, for about 2,000 steps a case)."""
    import statistics

    with tempfile.TemporaryDirectory(prefix="studiox-bench-") as folder:
        one = load(Path(folder), "set", 1)
        fixed = min(measure(one)[0] for _ in range(min(5, repeats)))
        base_size = measure(one)[1]  # an almost empty store: SQLite's own pages
        answers = []
        for kind, n in cases:
            mission = load(Path(folder), kind, n)
            times, sizes = zip(*(measure(mission) for _ in range(max(1, min(repeats, 2000 // n)))), strict=True)
            answers.append({"elapsed": statistics.median(times), "size": sizes[0]})
    return {"fixed": fixed, "base_size": base_size, "cases": answers}


def marked(cases: list[list]) -> None:
    """Drive each case once, asking for a marker path before each (strace counts the fsyncs between)."""
    with tempfile.TemporaryDirectory(prefix="studiox-bench-") as folder:
        for i, (kind, n) in enumerate([["set", 1], *cases]):
            mission = load(Path(folder), kind, n)
            os.access(f"{MARK}{i}", os.F_OK)
            measure(mission)
        os.access(f"{MARK}end", os.F_OK)


def resume_time(n: int) -> float:
    """Interrupt an n-step run (kill -9) just before its end, then time `studiox resume` as a new process."""
    home = Path(tempfile.mkdtemp(prefix="studiox-bench-"))
    try:
        path = home / "m.yaml"
        path.write_text(set_mission(n))
        env = {**os.environ, "STUDIOX_HOME": str(home / "state")}
        cmd = [sys.executable, "-m", "studiox"]
        # 1 start event + 2 per step: die just before the last step finishes
        kill = subprocess.run([*cmd, "run", str(path), "-q"], env={**env, "STUDIOX_TEST_KILL_AFTER_EVENT": str(2 * n)},
                              capture_output=True, text=True)
        run_id = kill.stdout.split()[0]
        started = time.perf_counter()
        done = subprocess.run([*cmd, "resume", run_id], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        return elapsed
    finally:
        shutil.rmtree(home)


TASKS = {"drives": drives, "marked": marked, "resume": resume_time}


# ------------------------------------------------------------------------------- in the parent


def fsyncs(tree: versions.Tree, sync: str, cases: list[list]) -> list[float] | None:
    """fsync + fdatasync calls per durable step of each case, counted by strace; None without strace."""
    if not shutil.which("strace"):
        return None
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "strace.log"
        wrap = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(log),
                "-e", "trace=fsync,fdatasync,access,faccessat,faccessat2"]
        try:
            versions.child(tree, "marked", {"cases": cases}, wrap=wrap, STUDIOX_SYNC=sync)
        except versions.ChildFailed as e:
            versions.progress.print(f"strace failed, no fsync counts: {e}")
            return None
        counts: list[int] = []
        for line in log.read_text().splitlines():
            if MARK in line:
                counts.append(0)
            elif counts and ("fsync(" in line or "fdatasync(" in line):
                counts[-1] += 1
    one = counts[0]  # a one-step drive: the fixed fsyncs of a drive (start, end, checkpoint)
    return [(count - one) / max(1, n - 1) for count, (_, n) in zip(counts[1:], cases, strict=False)]


def main() -> None:
    args = versions.arguments(__doc__)
    if args.child:
        return versions.serve(TASKS, args.child)
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 2000]
    cases = [["set", n] for n in sizes] + [["foreach", 100]]
    rounds, repeats = (3, 3) if args.quick else (5, 10)
    with versions.trees(args.before) as trees:
        found: dict[str, dict[str, list[dict]]] = {}
        for sync in SYNCS:
            found[sync] = versions.interleave(trees, rounds, lambda tree, sync=sync: versions.child(
                tree, "drives", {"cases": cases, "repeats": repeats}, STUDIOX_SYNC=sync), f"drives at {sync} sync,")
        counted = {sync: {tree.name: fsyncs(tree, sync, cases) for tree in trees} for sync in SYNCS}
        resumed = versions.interleave(trees, rounds, lambda tree: versions.child(tree, "resume", {"n": 1000}),
                                      "resume,")

    def per_step(sync: str, tree: str, i: int) -> list[float]:
        """ms per durable step of case i, in each round"""
        return [max(0.0, a["cases"][i]["elapsed"] - a["fixed"]) / cases[i][1] * 1000 for a in found[sync][tree]]

    def label(i: int) -> str:
        kind, n = cases[i]
        return f"{n:,} set steps" if kind == "set" else f"foreach, {n} items (concurrency 8)"

    names = [tree.name for tree in trees]
    rows, extra = [], []
    have_counts = any(counted[s][t] is not None for s in SYNCS for t in names)
    if have_counts:
        extra = ["fsyncs per step"]
    for sync in SYNCS:
        for i in range(len(cases)):
            cells = []
            if have_counts:
                cells = [versions.pair(trees, {t: (counted[sync][t] or [None] * len(cases))[i] for t in names},
                                       "{:.2f}".format)]
            normal = sync == "normal"
            rows.append(Row(f"{label(i)} · {sync}", {t: per_step(sync, t, i) for t in names}, "{:.3f} ms".format,
                            f"≤ {GOAL_PER_STEP_MS} ms" if normal else "", GOAL_PER_STEP_MS if normal else None, cells))
        biggest = len(sizes) - 1
        rows.append(Row(f"flatness at {sync}: per step at {sizes[biggest]:,} ÷ at 100",
                        {t: [big / max(1e-9, small) for big, small in zip(per_step(sync, t, biggest),
                                                                           per_step(sync, t, 1), strict=True)]
                         for t in names},
                        "{:.2f}×".format, "≈ 1×", extra=[""] * len(extra)))
    fixed = {sync: {t: versions.median([a["fixed"] for a in found[sync][t]]) for t in names} for sync in SYNCS}
    caption = "fixed cost of a drive (one-step mission, taken off): " + "; ".join(
        f"{sync} {versions.pair(trees, fixed[sync], lambda s: f'{s * 1000:.1f} ms')}" for sync in SYNCS)
    versions.table(trees, f"time per durable step, median of {rounds} rounds", "mission · sync", rows, extra,
                   caption)

    sizes_rows = []
    for i in range(len(cases)):
        answers = {t: found["normal"][t][0] for t in names}
        values = {t: None if a["cases"][i]["size"] is None or a["base_size"] is None
                  else max(0, a["cases"][i]["size"] - a["base_size"]) / cases[i][1] / 1000 for t, a in answers.items()}
        sizes_rows.append(Row(label(i), values, "{:.2f} kB".format, "linear in N"))
    versions.table(trees, "journal on disk per durable step (store size less an almost empty store's)", "mission",
                   sizes_rows)
    versions.table(trees, f"resume of an interrupted 1,000-step run, process start included, median of {rounds}",
                   "what", [Row("studiox resume", resumed, "{:.2f} s".format,
                                f"< {GOAL_RESUME_S} s", GOAL_RESUME_S)])
    if not have_counts:
        versions.console.print("(strace is not installed: no fsync counts)")


if __name__ == "__main__":
    main()
