"""What people wait for when a run starts: checking the mission, and the first model call.

    python benchmarks/first_run.py [ROUNDS]

Each row is a new `studiox run` process. Before/after in one run:
- a 1,000-step mission: the first run validates it; later runs find its digest among the
  missions this version validated and only parse it (goal: the check is not paid twice);
- a mission whose second step is a worker (replayed model): the worker step's recorded duration
  with the model client imported in the background (`STUDIOX_PRELOAD=on`, the default) and
  without (`off`) — goal: ≤ 0.1 s with it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent


def studiox(home: Path, *args: str, **env: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "studiox", *args], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "STUDIOX_HOME": str(home), **env})
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


def worker_duration(home: Path, run_id: str) -> float:
    _, log = studiox(home, "log", run_id, "--json")
    events = [json.loads(line) for line in log.stdout.splitlines()]
    return next(e["duration"] for e in events if e["type"] == "step_finished" and e["step"] == "extract")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    table = Table("what", "first (before)", "again (after)", "goal", title=f"first run, median of {rounds}",
                  header_style="bold")
    folder = Path(tempfile.mkdtemp(prefix="studiox-bench-"))
    long = long_mission(folder)
    first, again = [], []
    for r in range(rounds):
        home = folder / f"long-{r}"
        first.append(studiox(home, "run", str(long), "-q")[0])
        again.append(studiox(home, "run", str(long), "-q")[0])
    table.add_row("run of a 1,000-step mission (wall)", f"{statistics.median(first):.2f} s",
                  f"{statistics.median(again):.2f} s", "checked once")
    path, replay = worker_mission(folder)
    off, on = [], []
    for r in range(rounds):
        for preload, into in (("off", off), ("on", on)):
            home = folder / f"worker-{preload}-{r}"
            _, result = studiox(home, "run", str(path), "--replay", str(replay), "-q", STUDIOX_PRELOAD=preload)
            into.append(worker_duration(home, result.stdout.split()[0]))
    table.add_row("first worker step's recorded duration (preload off → on)", f"{statistics.median(off):.3f} s",
                  f"{statistics.median(on):.3f} s", "≤ 0.1 s")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
