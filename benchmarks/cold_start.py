"""How long a cold `studiox` takes to start and answer, as a new process each time.

    python benchmarks/cold_start.py [--before REV] [--quick] [--rounds N]

Each command runs in the tree measured (its working folder, its PYTHONPATH first), 15 rounds
(--quick: 5), the trees taking turns when --before REV is given (see _versions.py); medians.

Goals on the reference machine (2 cores): `studiox --help` ≤ 0.15 s; `studiox validate
missions/invoice.yaml` and `studiox runs` ≤ 0.3 s.
"""

from __future__ import annotations

import subprocess
import sys
import time

import _versions as versions
from _versions import Row

# label → (arguments after `python`, goal in seconds or None)
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "python -c pass (the floor)": (["-c", "pass"], None),
    "studiox --help": (["-m", "studiox", "--help"], 0.15),
    "studiox validate missions/invoice.yaml": (["-m", "studiox", "validate", "missions/invoice.yaml"], 0.3),
    "studiox schema": (["-m", "studiox", "schema"], None),
    "studiox runs (empty home)": (["-m", "studiox", "runs", "--home", "/nonexistent-studiox-home"], 0.3),
}


def timed(tree: versions.Tree, args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=tree.path, env=versions.env(tree), capture_output=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise versions.ChildFailed(f"{tree.header}: python {' '.join(args)} failed: {done.stderr.decode()[-1000:]}")
    return elapsed


def main() -> None:
    args = versions.arguments(__doc__, lambda p: p.add_argument("--rounds", type=int, help="rounds (default 15)"))
    rounds = args.rounds or (5 if args.quick else 15)
    rows = []
    with versions.trees(args.before) as trees:
        for label, (command, goal) in COMMANDS.items():
            times = versions.interleave(trees, rounds, lambda tree, command=command: timed(tree, command), label)
            rows.append(Row(label, times, "{:.3f} s".format, f"≤ {goal} s" if goal else "", goal))
    versions.table(trees, f"cold start, a new process each, median of {rounds} rounds", "command", rows)


if __name__ == "__main__":
    main()
