"""How long a cold `studiox` takes to start and answer, as a new process each time.

    python benchmarks/cold_start.py [ROUNDS]

Goal on the reference machine (2 cores): `studiox validate missions/invoice.yaml` under 0.3 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.3
COMMANDS = {
    "python -c pass (the floor)": [sys.executable, "-c", "pass"],
    "studiox --help": [sys.executable, "-m", "studiox", "--help"],
    "studiox validate missions/invoice.yaml": [sys.executable, "-m", "studiox", "validate", "missions/invoice.yaml"],
    "studiox schema": [sys.executable, "-m", "studiox", "schema"],
    "studiox runs (empty home)": [sys.executable, "-m", "studiox", "runs", "--home", "/nonexistent-studiox-home"],
}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    table = Table("command", "median", "best", "worst", "goal", title=f"cold start, {rounds} rounds",
                  header_style="bold")
    for label, cmd in COMMANDS.items():
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
            times.append(time.perf_counter() - started)
        goal = f"< {GOAL_S} s" if "validate" in label else ""
        table.add_row(label, f"{statistics.median(times):.3f} s", f"{min(times):.3f} s", f"{max(times):.3f} s", goal)
    Console(width=110).print(table)


if __name__ == "__main__":
    main()
