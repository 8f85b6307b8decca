"""What the hash chain costs a durable step (goal: no more than 10% slower).

    python benchmarks/chain.py [ROUNDS]

Drives missions of 1,000 `set` steps in this process, alternating rounds with the chain on (as
studiox runs) and off (the journal told to write unchained events, as runs from before chains
were), and prints the median time per step of each and the difference. Same tree, same run, so
the difference is the chain's own work (encoding, hashing, and checking it when the run is read).
"""

from __future__ import annotations

import statistics
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

N = 1000


def mission_text(n: int) -> str:
    lines = ["mission: bench", "steps:", "  - {id: s0, set: {v: 0}}"]
    lines += [f"  - {{id: s{i}, set: {{v: '${{{{ steps.s{i - 1}.output.v + 1 }}}}'}}}}" for i in range(1, n)]
    return "\n".join(lines) + "\n"


def per_step(chained: bool, mission) -> float:
    home = Path(tempfile.mkdtemp(prefix="studiox-chain-")) / "home"
    store = Store.open(home, create=True)
    assert store is not None
    engine = Engine(store)
    if not chained:  # every journal of this engine writes unchained events, as runs from before chains
        made = engine._journal

        def unchained(run_id):
            written = made(run_id)
            written.chain = None
            return written

        engine._journal = unchained  # type: ignore[method-assign]
    try:
        run_id = engine.start(mission, {})
        started = time.perf_counter()
        outcome = engine.drive(run_id, mission=mission)
        elapsed = time.perf_counter() - started
        assert outcome.status == "succeeded"
        assert ("audit" in (store.event(run_id, 1) or {})) == chained
    finally:
        store.close()
    return elapsed / N


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    path = Path(tempfile.mkdtemp()) / "m.yaml"
    path.write_text(mission_text(N))
    mission = missions.load(path)
    on, off = [], []
    per_step(True, mission)  # warm up
    for _ in range(rounds):
        off.append(per_step(False, mission))
        on.append(per_step(True, mission))
    a, b = statistics.median(off), statistics.median(on)
    table = Table("journal", "per step", "vs unchained", "goal", title=f"the hash chain, {N} set steps, median of "
                  f"{rounds} alternating rounds", header_style="bold")
    table.add_row("unchained (as before chains)", f"{a * 1000:.3f} ms", "", "")
    table.add_row("chained (sha256)", f"{b * 1000:.3f} ms", f"{(b / a - 1) * 100:+.1f}%", "≤ +10%")
    Console(width=110).print(table)


if __name__ == "__main__":
    main()
