"""What a terminal shows below the rail while a run goes on: a spinner with the elapsed time of
each step that has taken longer than a second, and each ``foreach`` as a bar (done/total, running,
failed). Only on a terminal: piped output stays plain lines, with no control codes.

It reads the same events as the rail (the engine's listener) and never changes a run.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

SHOW_AFTER = 1.0  # seconds: a step quicker than this never gets a spinner


class Board:
    """The live part of a terminal's rail: what runs now, for how long, and how far each loop is."""

    def __init__(self, console: Console):
        self.console = console
        self.running: dict[str, tuple[str, float]] = {}  # step address → (kind, when it started, monotonic)
        self.loops: dict[str, dict] = {}  # foreach address → total, done, failed
        self.live: Live | None = None
        self.held = False  # a person is being asked something: nothing moves on the screen

    def hold(self) -> None:
        self.held = True
        self.stop()

    def release(self) -> None:
        self.held = False

    def start(self) -> None:
        if self.live is None and not self.held:
            self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def on_event(self, event: dict) -> None:
        kind, step = event["type"], str(event.get("step", ""))
        if kind == "step_started":
            self.running[step] = (event.get("kind", ""), time.monotonic())
        elif kind == "step_finished":
            self.running.pop(step, None)
            self.loops.pop(step, None)
            loop = self._loop_of(step)
            if loop is not None and event.get("status") == "failed":
                loop["failed"] += 1
        elif kind == "step_failed" and event.get("retry_in") is None:
            loop = self._loop_of(step)
            if loop is not None:
                loop["failed"] += 1
        elif kind == "observation" and isinstance((event.get("data") or {}).get("items"), int):
            self.loops[step] = {"total": event["data"]["items"], "done": 0, "failed": 0}
        elif kind == "item_finished" and step in self.loops:
            self.loops[step]["done"] += 1
        elif kind in ("run_finished", "run_interrupted", "waiting"):
            self.running.clear()
            self.loops.clear()

    def _loop_of(self, address: str | None) -> dict | None:
        if not address or "[" not in address:
            return None
        return self.loops.get(address.split("[", 1)[0])

    def __rich__(self):
        now = time.monotonic()
        rows = []
        for address, loop in self.loops.items():
            running = len({a.split("]", 1)[0] for a in self.running if a.startswith(f"{address}[")})
            bar = Table.grid(padding=(0, 1))
            bar.add_row(Text(f"  {address}", style="cyan"), ProgressBar(total=max(loop["total"], 1),
                                                                       completed=loop["done"], width=30),
                        Text(f"{loop['done']}/{loop['total']} done · {running} running · {loop['failed']} failed"))
            rows.append(bar)
        for address, (kind, since) in self.running.items():
            if kind == "foreach" or "[" in address or now - since < SHOW_AFTER:
                continue
            line = Table.grid(padding=(0, 1))
            line.add_row(Spinner("dots", style="cyan"), Text.from_markup(
                f"{escape(address)} [dim]{escape(kind)}[/] · {now - since:.0f} s"))
            rows.append(line)
        return Group(*rows)
