"""What people wait for when a run starts: checking the mission, and the first model call.

    python benchmarks/first_run.py [--before REV] [--quick] [--rounds N]

Each measurement is a new `studiox run` process in the tree measured (its PYTHONPATH first), 5
rounds (--quick: 3), the trees taking turns with --before REV (see _versions.py); medians.
- a 1,000-step mission, first run and again: the first run validates it; later runs find its
  digest among the missions this version validated and only parse it (goal: the check is not
  paid twice);
- a mission whose second step is a worker (replayed model): the worker step's recorded duration
  with the model client imported in the background (`STUDIOX_PRELOAD=on`, the default) and
  without (`off`) — goal: ≤ 0.1 s with it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _versions as versions
from _versions import Row


def studiox(tree: versions.Tree, home: Path, *args: str, **env: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "studiox", *args], capture_output=True, text=True, cwd=tree.path,
                            env=versions.env(tree, STUDIOX_HOME=str(home), **env))
    return time.perf_counter() - started, result


def long_mission(folder: Path) -> Path:
    path = folder / "long.yaml"
    steps = "".join(f"  - {{id: s{i}, set: {{x: '${{{{ {i} + 1 }}}}'}}}}\n" for i in range(1000))
    path.write_text(f"mission: long\nsteps:\n{steps}")
    return path


def worker_mission(folder: Path) -> tuple[Path, Path]:
    path, replay = folder / "worker.yaml", folder / "worker.replay.yaml"
    path.write_text("mission: w\nmodels: {fast: openai/gpt-4o-mini}\nsteps:\n"
                    "  - {id: look, set: {text: 'INVOICE INV-1 total 500'}}\n"
                    "  - id: extract\n    worker:\n      instructions: Extract the total.\n"
                    "      input: ${{ steps.look.output.text }}\n"
                    "      output: {type: object, required: [total], properties: {total: {type: number}}}\n")
    replay.write_text(json.dumps({"extract": [{"output": {"total": 500}}]}))
    return path, replay


def worker_duration(tree: versions.Tree, home: Path, result: subprocess.CompletedProcess) -> float:
    if result.returncode != 0:
        raise versions.ChildFailed(f"{tree.header}: studiox run failed: {result.stdout[-500:]}{result.stderr[-500:]}")
    _, log = studiox(tree, home, "log", result.stdout.split()[0], "--json")
    events = [json.loads(line) for line in log.stdout.splitlines()]
    return next(e["duration"] for e in events if e["type"] == "step_finished" and e["step"] == "extract")


def main() -> None:
    args = versions.arguments(__doc__, lambda p: p.add_argument("--rounds", type=int, help="rounds (default 5)"))
    rounds = args.rounds or (3 if args.quick else 5)
    folder = Path(tempfile.mkdtemp(prefix="studiox-bench-"))
    long = long_mission(folder)
    path, replay = worker_mission(folder)
    count = iter(range(10**6))

    def long_runs(tree: versions.Tree) -> list[float]:
        home = folder / f"long-{next(count)}"
        return [studiox(tree, home, "run", str(long), "-q")[0] for _ in range(2)]  # first, again

    def worker(tree: versions.Tree, preload: str) -> float:
        home = folder / f"worker-{next(count)}"
        _, result = studiox(tree, home, "run", str(path), "--replay", str(replay), "-q", STUDIOX_PRELOAD=preload)
        return worker_duration(tree, home, result)

    try:
        with versions.trees(args.before) as trees:
            long_times = versions.interleave(trees, rounds, long_runs, "1,000-step mission,")
            off = versions.interleave(trees, rounds, lambda tree: worker(tree, "off"), "worker, preload off,")
            on = versions.interleave(trees, rounds, lambda tree: worker(tree, "on"), "worker, preload on,")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [
        Row("run of a 1,000-step mission, first (wall)", {t: [r[0] for r in v] for t, v in long_times.items()},
            "{:.2f} s".format, "checked here"),
        Row("the same mission again (wall)", {t: [r[1] for r in v] for t, v in long_times.items()},
            "{:.2f} s".format, "not checked again"),
        Row("first worker step's recorded duration, preload off", off, "{:.3f} s".format),
        Row("first worker step's recorded duration, preload on", on, "{:.3f} s".format, "≤ 0.1 s", 0.1),
    ]
    versions.table(trees, f"first run, a new process each, median of {rounds}", "what", rows)


if __name__ == "__main__":
    main()
