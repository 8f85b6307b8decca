"""How fast the durable engine is, and how its store grows.

    python benchmarks/engine.py

Runs missions of N `set` steps (N = 10, 100, 1000) and a 100-item `foreach`, each step
journaled durably, and prints total time, time per durable step and the journal's size on
disk. Then it interrupts a 1000-step run near its end (kill -9) and times `studiox resume`
as a new process. Goals on the reference machine (2 cores): under 0.35 ms per durable step,
flat in N; the store growing linearly with N; the resume under 0.5 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from studiox import mission as missions
from studiox.engine import Engine
from studiox.state.store import Store

GOAL_PER_STEP_MS = 0.35
GOAL_RESUME_S = 0.5


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


def measure(text: str, durable_steps: int) -> tuple[float, int]:
    home = Path(tempfile.mkdtemp(prefix="studiox-bench-"))
    try:
        path = home / "m.yaml"
        path.write_text(text)
        mission = missions.load(path)
        store = Store.open(home / "state", create=True)
        engine = Engine(store)
        run_id = engine.start(mission, {})
        started = time.perf_counter()
        outcome = engine.drive(run_id)
        elapsed = time.perf_counter() - started
        assert outcome.status == "succeeded", outcome
        store.close()  # checkpoints the write-ahead log, so the size is the data's, not the log's
        return elapsed, Store.open(home / "state", create=False).journal_size()
    finally:
        shutil.rmtree(home)


def resume_time(n: int) -> float:
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


def main() -> None:
    console = Console(width=110)
    # a drive has a fixed cost (lock, mission snapshot, event loop, doors): measured with one step,
    # and taken off the totals so that 'per step' is what each further durable step costs
    fixed = min(measure(set_mission(1), 1)[0] for _ in range(5))
    base_size = measure(set_mission(1), 1)[1]  # an almost empty store: SQLite's own pages
    table = Table("mission", "durable steps", "total", "per step", "journal on disk", "per step on disk",
                  title=f"studiox engine (fixed cost of a drive: {fixed * 1000:.1f} ms)", header_style="bold")
    for label, text, n in [("10 set steps", set_mission(10), 10), ("100 set steps", set_mission(100), 100),
                           ("1000 set steps", set_mission(1000), 1000),
                           ("foreach, 100 items", foreach_mission(100), 100)]:
        elapsed, size = measure(text, n)
        per_step = max(0.0, elapsed - fixed) / n
        table.add_row(label, str(n), f"{elapsed * 1000:.0f} ms", f"{per_step * 1000:.3f} ms",
                      f"{size / 1e6:.2f} MB", f"{max(0, size - base_size) / n / 1000:.2f} kB")
    console.print(table)
    resumed = resume_time(1000)
    console.print(f"resume of an interrupted 1000-step run, process start included: {resumed:.2f} s "
                  f"(goal < {GOAL_RESUME_S} s)")
    console.print(f"goal per durable step: < {GOAL_PER_STEP_MS} ms, flat in N")


if __name__ == "__main__":
    main()
