"""The drives the portal starts: each a ``studiox resume RUN --no-input`` process of its own
(on the postgres backend: a segment queued for the workers, see studiox/dispatch).

The CLI's drive is the one drive studiox has: a decision parks it (the process ends, exit 3),
its lock keeps a second driver off the run, and SIGINT stops it cleanly (``run_interrupted`` is
journaled and the run stays resumable). On shutdown the portal sends SIGINT to every drive still
going and waits for them; one that does not stop in time is killed, which the journal survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STOP_WAIT = 15.0  # seconds a drive gets to stop after SIGINT on shutdown


class Drives:
    def __init__(self, home: Path):
        from ..dispatch import Dispatcher, queued

        self.home = home
        self.running: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = False
        self.queue = Dispatcher() if queued() else None  # the postgres backend: workers drive the runs

    def drive(self, run_id: str, decision: str | None = None) -> None:
        """Drive (or resume) a run in a process of its own, unless one of ours drives it already; on
        the postgres backend, queue a segment of it instead (``decision``: the one just made, which
        names the segment, so that two people deciding at once wake the run once)."""
        if self.queue is not None:
            self._queue(run_id, decision)
            return
        with self.lock:
            if self.stopping:
                return
            found = self.running.get(run_id)
            if found is not None and found.poll() is None:
                return
            log = open(self.home / "logs" / "portal-drives.log", "ab")  # noqa: SIM115 - the child holds it
            self.running[run_id] = subprocess.Popen(
                [sys.executable, "-m", "studiox", "resume", run_id, "--no-input", "--json", "--home", str(self.home)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, "NO_COLOR": "1"})
            log.close()

    def _queue(self, run_id: str, decision: str | None) -> None:
        from .. import api

        assert self.queue is not None
        store = api.need_store(self.home)
        try:
            with self.lock:
                self.queue.ask(store, run_id, decision)
        finally:
            store.close()

    def stop_all(self) -> None:
        """SIGINT to every drive still going (each journals run_interrupted), then wait for them."""
        with self.lock:
            self.stopping = True
            live = [p for p in self.running.values() if p.poll() is None]
            if self.queue is not None:
                self.queue.close()
        for process in live:
            process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_WAIT
        for process in live:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()  # the journal is durable: the run is resumable all the same
                process.wait()
