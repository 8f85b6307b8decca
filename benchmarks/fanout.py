"""How close a `foreach` over a slow MCP tool comes to the ideal time, at a few concurrencies.

    python benchmarks/fanout.py [--before REV] [--quick] [--profile C]

A mission calls a real MCP server (benchmarks/slow_mcp_server.py, a subprocess over stdio) whose
one read-only tool waits 50 ms without blocking and returns its argument: first once (which
starts the server), then in a `foreach` of 100 items at concurrency 10, 64 and 100. Only the
`foreach` is timed: from the warm-up step's end to the run's end, seen by an engine listener in
the child that drives the run in-process (process start, mission check and server start are
left out). The ideal is ceil(100 / concurrency) × 50 ms. A version whose schema refuses a
concurrency shows "refused".

Beside it, the same 100 calls made by the MCP SDK's own client (no studiox, the same server,
at most C at a time): the floor on this machine. "studiox overhead per item" is (the drive −
that floor) / 100; "studiox CPU per item" is the CPU time of the studiox process during the
`foreach` / 100 (the engine and the SDK's client side; the server's CPU not counted).

--profile C: also drive once in each tree at concurrency C with cProfile on during the `foreach`
(as timed) and print where the studiox process spends its time.

Goals on the reference machine (2 cores): within 1.3× the ideal at concurrency 10 and 64, and
1.5× at 100.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from pathlib import Path

import _versions as versions
from _versions import Row

ITEMS = 100
DELAY = 0.05
CONCURRENCIES = (10, 64, 100)
GOALS = {10: 1.3, 64: 1.3, 100: 1.5}  # × the ideal
SERVER = Path(__file__).resolve().with_name("slow_mcp_server.py")


def ideal(concurrency: int) -> float:
    return math.ceil(ITEMS / concurrency) * DELAY


def mission_text(concurrency: int, items: int) -> str:
    listing = "[" + ", ".join(str(i) for i in range(items)) + "]"
    return ("mission: fanout\nintegrations:\n  slow:\n    command: python\n"
            f"    args: ['{SERVER}', --delay, '{DELAY}']\n"
            "steps:\n  - {id: warm, tool: slow.wait, arguments: {value: -1}}\n"
            f"  - id: each\n    foreach: '${{{{ {listing} }}}}'\n    concurrency: {concurrency}\n"
            "    steps:\n      - {id: call, tool: slow.wait, arguments: {value: '${{ item }}'}}\n")


# ------------------------------------------------------------------------------- in the child


def drive(concurrency: int, profile: bool = False) -> dict:
    """Drive the mission once in a new state folder: the foreach's wall and CPU time, or 'refused'."""
    from studiox import mission as missions
    from studiox.engine import Engine
    from studiox.errors import MissionInvalid
    from studiox.state.store import Store

    with tempfile.TemporaryDirectory(prefix="studiox-fanout-") as folder:
        path = Path(folder) / "fanout.yaml"
        path.write_text(mission_text(concurrency, ITEMS))
        try:
            mission = missions.load(path)
        except MissionInvalid as e:
            return {"refused": str(e).splitlines()[0].replace(f"{path.parent}{os.sep}", "")}
        marks: dict[str, tuple[float, float]] = {}
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()

        def listener(event: dict) -> None:
            if (event["type"] == "step_finished" and event.get("step") == "warm") or event["type"] == "run_finished":
                marks.setdefault(event["type"], (time.perf_counter(), time.process_time()))
                if profiler:  # the foreach only, as timed
                    profiler.enable() if event["type"] == "step_finished" else profiler.disable()

        store = Store.open(Path(folder) / "state", create=True)
        engine = Engine(store, listener=listener)
        run_id = engine.start(mission, {})
        outcome = engine.drive(run_id)
        store.close()
        assert outcome.status == "succeeded", outcome
        (wall0, cpu0), (wall1, cpu1) = marks["step_finished"], marks["run_finished"]
        answer: dict = {"wall": wall1 - wall0, "cpu": cpu1 - cpu0}
        if profiler:
            answer["profile"] = _profile_text(profiler)
        return answer


def _profile_text(profiler) -> str:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return out.getvalue()


async def bare(concurrency: int) -> float:
    """The same calls through the MCP SDK's client alone (at most ``concurrency`` at a time)."""
    import sys

    from mcp import StdioServerParameters
    from mcp.client import Client
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER), "--delay", str(DELAY)])
    async with Client(stdio_client(params), read_timeout_seconds=None) as client:
        await client.list_tools()
        await client.call_tool("wait", {"value": -1})
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                result = await client.call_tool("wait", {"value": i})
                assert not result.is_error, result

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(ITEMS)))
        return time.perf_counter() - started


def measure(concurrencies: list[int], with_bare: bool) -> dict:
    answers = {}
    for c in concurrencies:
        answers[str(c)] = drive(c)
        if with_bare:
            answers[str(c)]["bare"] = asyncio.run(bare(c))
    return answers


TASKS = {"measure": measure, "profile": lambda concurrency: drive(concurrency, profile=True)}


# ------------------------------------------------------------------------------- in the parent


def main() -> None:
    args = versions.arguments(__doc__, lambda p: p.add_argument(
        "--profile", type=int, metavar="C", help="also profile one drive at concurrency C in each tree"))
    if args.child:
        return versions.serve(TASKS, args.child)
    rounds = 3 if args.quick else 7
    with versions.trees(args.before) as trees:
        found = versions.interleave(trees, rounds, lambda tree: versions.child(
            tree, "measure", {"concurrencies": list(CONCURRENCIES), "with_bare": tree.name == "after"}), "fanout,")
        profiles = {tree.header: versions.child(tree, "profile", {"concurrency": args.profile})
                    for tree in trees} if args.profile else {}
    names = [tree.name for tree in trees]

    def values(c: int, field: str, scale=lambda v, a: v) -> dict:
        out: dict = {}
        for name in names:
            answers = [round_[str(c)] for round_ in found[name]]
            out[name] = "refused" if any("refused" in a for a in answers) else [scale(a[field], a) for a in answers]
        return out

    floor = {c: versions.median([r[str(c)]["bare"] for r in found["after"]]) for c in CONCURRENCIES}
    walls, costs = [], []
    for c in CONCURRENCIES:
        walls.append(Row(f"concurrency {c}", values(c, "wall"), lambda v, c=c: f"{v:.3f} s ({v / ideal(c):.2f}×)",
                         f"≤ {GOALS[c]}× ideal", GOALS[c] * ideal(c),
                         [f"{ideal(c):.3f} s", f"{floor[c]:.3f} s ({floor[c] / ideal(c):.2f}×)"]))
        over = values(c, "wall", lambda v, a, c=c: (v - floor[c]) / ITEMS * 1000)
        cpu = values(c, "cpu", lambda v, a: v / ITEMS * 1000)
        costs.append(Row(f"concurrency {c}", over, "{:.2f} ms".format, "",
                         extra=[versions.pair(trees, {n: v if isinstance(v, str) else versions.median(v)
                                                      for n, v in cpu.items()}, lambda v: v if isinstance(v, str)
                                              else f"{v:.2f} ms")]))
    refusals = {a["refused"] for name in names for r in found[name] for a in r.values() if "refused" in a}
    versions.table(trees, f"foreach of {ITEMS} items over a {DELAY * 1000:.0f} ms MCP tool: wall time of the drive, "
                   f"median of {rounds}", "what", walls, ["ideal", "MCP SDK alone"],
                   "\n".join(f"refused: {r}" for r in sorted(refusals)) or None)
    versions.table(trees, "studiox overhead per item: (drive − MCP SDK alone) ÷ items", "what", costs,
                   ["studiox CPU per item"])
    for header, answer in profiles.items():
        versions.console.rule(f"{header}: cProfile of one drive at concurrency {args.profile}")
        versions.console.print(answer.get("profile") or answer.get("refused"), markup=False, highlight=False)


if __name__ == "__main__":
    main()
