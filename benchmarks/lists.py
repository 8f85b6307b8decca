"""How long `studiox runs` takes with many stored runs: the newest 50 (the default) against every run
(`--all`, what `runs` printed before it had a limit), each a new process.

    python benchmarks/lists.py [N ...]      (default: 10 1000)

Goal: `runs` ≤ 0.3 s at 10,000 runs. The runs are made in-process with the engine (a one-step
mission), so making 10,000 takes a while.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studiox import mission as missions  # noqa: E402
from studiox.engine import Engine  # noqa: E402
from studiox.state.store import Store  # noqa: E402


def make_runs(home: Path, n: int) -> None:
    store = Store.open(home, create=True)
    assert store is not None
    engine = Engine(store)
    mission = missions.loads("mission: many\nsteps:\n  - {id: a, set: {x: 1}}\n", "many.yaml")
    for _ in range(n):
        engine.drive(engine.start(mission, {}))
    store.close()


def timed(home: Path, *args: str, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "studiox", "runs", "--home", str(home), *args], capture_output=True,
                       check=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 1000]
    table = Table("stored runs", "runs --all (before)", "runs (newest 50)", "goal", header_style="bold",
                  title="studiox runs, median of 3, a new process each")
    for n in sizes:
        home = Path(tempfile.mkdtemp(prefix="studiox-lists-")) / "home"
        make_runs(home, n)
        table.add_row(f"{n:,}", f"{timed(home, '--all'):.2f} s", f"{timed(home):.2f} s", "≤ 0.3 s at 10,000")
    Console(width=110).print(table)


if __name__ == "__main__":
    main()
