"""``studiox worker``: a long-running process that drives queued segments (postgres backend).

Several workers, on one machine or many, share one queue in the database (DBOS Transact). Each
has an *executor id*. What DBOS gives, and what studiox adds:

- DBOS dequeues each segment to one worker (at most ``concurrency`` at once per worker), and a worker
  restarted with the same executor id takes up the segments it was driving when it stopped
  (DBOS's own recovery at launch).
- DBOS recovers another executor's segments only when told to (its Conductor service does that);
  studiox tells it: each worker writes a heartbeat to the ``workers`` table every ``beat`` seconds,
  and a worker that finds segments held by an executor silent for ``takeover_after`` seconds has
  DBOS re-queue them (``recover_pending_workflows``; re-queuing is atomic, so two survivors taking
  over at once re-queue each segment once).
- A segment taken over while its old worker was only slow, not dead, cannot drive the run twice:
  the run lock (an advisory lock on the driving process's connection) keeps the second waiting.
- Decision deadlines are a DBOS scheduled workflow (``studiox.deadlines``, every two seconds, once
  per tick across all workers): a decision past its limit wakes its run, and the engine applies
  ``on_timeout``.
- The missions' triggers (inbox folders, schedules), when a worker is given missions, are another
  (``studiox.triggers``): the service's tick (service/loop.py) on the trigger ledger in the database,
  whose runs are queued for the workers. The ledger's turn lock keeps two ticks from overlapping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbos import DBOS, SetWorkflowID

from . import APP, APP_VERSION, QUEUE, SCHEMA, WORKFLOW, segment_id
from . import segments as segments_

DEADLINES = "studiox.deadlines"
TRIGGERS = "studiox.triggers"
WORKERS = """
CREATE TABLE IF NOT EXISTS workers (
    executor TEXT COLLATE "C" NOT NULL PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started DOUBLE PRECISION NOT NULL, beat DOUBLE PRECISION NOT NULL, concurrency INTEGER NOT NULL)
"""
PRUNE_EVERY, KEEP_TICKS = 60.0, 600.0
NOW = "extract(epoch from clock_timestamp())::float8"  # the database's clock: workers' clocks may disagree


class _Here:
    """What the workflow functions need of the worker that runs them (one worker per process)."""

    home: Path = Path(".studiox")
    url: str = ""
    executor: str = ""
    say: Callable[[dict], None] = staticmethod(lambda _: None)
    service: Any = None  # the missions' triggers (service.loop.Service), when the worker was given missions
    recovered: bool = False  # the service's firings cut off by a crash: started once per worker


here = _Here()


@DBOS.workflow(name=WORKFLOW)
def segment(run_id: str, retry: bool = False) -> dict:
    return drive_step(run_id, retry)


def _transient(error: BaseException) -> bool:
    """A database trouble (a deadlock, a lost connection): the drive is tried again, which is always safe."""
    from ..errors import StoreError

    return isinstance(error, StoreError)


@DBOS.step(name="studiox.drive", retries_allowed=True, max_attempts=5, interval_seconds=1.0, backoff_rate=2.0,
           should_retry=_transient)
def drive_step(run_id: str, retry: bool = False) -> dict:
    from ..state.backends import open_store

    store = open_store(here.home, create=True, backend="postgres")
    assert store is not None
    began = time.monotonic()
    here.say({"run": run_id, "segment": DBOS.workflow_id, "event": "start"})
    try:
        answer = segments_.drive(store, run_id, retry=retry, note=here.say)
    except Exception as e:  # noqa: BLE001 - said in the log, and the segment ends failed in DBOS
        here.say({"run": run_id, "segment": DBOS.workflow_id, "event": "error", "error": f"{type(e).__name__}: {e}"})
        raise
    finally:
        store.close()
    here.say({**answer, "segment": DBOS.workflow_id, "event": "end", "seconds": round(time.monotonic() - began, 3)})
    return answer


@DBOS.workflow(name=DEADLINES)
def deadlines(scheduled: datetime, context: Any) -> None:
    """Every two seconds, once across all workers: the runs of decisions past their limit are woken
    (as a decision would wake them: the same segment id, so a person deciding meanwhile wakes it once)."""
    queue = DBOS.retrieve_queue(QUEUE)
    assert queue is not None  # registered by every worker at start
    for run_id, decision_id in late_decisions():
        with SetWorkflowID(segment_id(run_id, "decided", decision_id)):
            queue.enqueue(segment, run_id, False)


@DBOS.workflow(name=TRIGGERS)
def triggers(scheduled: datetime, context: Any) -> None:
    """Every two seconds, once across all workers: the missions' inbox folders and schedules."""
    tick_triggers()


@DBOS.step(name="studiox.tick_triggers")
def tick_triggers() -> None:
    if here.service is None:
        return
    if not here.recovered:
        here.service.recover()
        here.recovered = True
    here.service.tick()


def _queue_run(run_id: str) -> None:
    """The triggers' ``drive``: a run a trigger started, or one to go on, queued for the workers."""
    from ..state.backends import open_store
    from . import Dispatcher

    store = open_store(here.home, create=True, backend="postgres")
    assert store is not None
    dispatcher = Dispatcher(here.url)
    try:
        dispatcher.ask(store, run_id)
    finally:
        dispatcher.close()
        store.close()


@DBOS.step(name="studiox.late_decisions")
def late_decisions() -> list[list[str]]:
    """Undecided decisions past their limit, by the decisions index (none read in vain)."""
    from .. import api
    from ..state.backends import open_store

    store = open_store(here.home, create=True, backend="postgres")
    assert store is not None
    try:
        queue, late = api.queue(store), []
        for row in store.decision_rows(states=("pending",), expires_by=time.time(), limit=10_000):
            decision = queue.get(row["id"])
            if decision.outcome is None and not decision.run_ended:  # (a sub-mission's: its top run goes on)
                late.append([api.top_run(store, decision.run_id), decision.id])
        return late
    finally:
        store.close()


def _warm() -> None:
    """What every segment would otherwise import on its first model call or tool (litellm: seconds),
    once per worker, while it waits for work."""
    from .. import engine  # noqa: F401
    from ..adapters import mcp  # noqa: F401
    from ..adapters.preload import warmed_litellm

    warmed_litellm()


class Worker:
    def __init__(self, home: Path, url: str, *, executor: str, concurrency: int = 2, beat: float = 1.0,
                 takeover_after: float = 5.0, poll: float = 0.5, say: Callable[[dict], None] = lambda _: None,
                 missions: list | None = None):
        self.home, self.url, self.executor = home, url, executor
        self.missions = missions or []  # whose triggers this worker ticks (its turn comes with DBOS's schedule)
        self.concurrency, self.beat, self.takeover_after, self.poll = concurrency, beat, takeover_after, poll
        self.say = say
        self.stop = threading.Event()

    def run(self, grace: float = 30.0) -> None:
        """Serve until ``stop`` is set; then let running segments finish for up to ``grace`` seconds."""
        from ..state.pgstore import _connect
        from . import _outside

        here.home, here.url, here.executor = self.home, self.url, self.executor
        if self.missions:
            from ..service.loop import Service

            here.service = Service(self.home, self.missions, _queue_run)
        here.say = lambda event: self.say({"worker": self.executor, **event})
        con = _connect(self.url)  # (a database it cannot use: said, exit 2)
        try:
            con.execute(WORKERS)
            self._beat(con)
            logging.getLogger("dbos").setLevel(logging.WARNING)
            DBOS(config={"name": APP, "system_database_url": self.url, "executor_id": self.executor,
                         "application_version": APP_VERSION, "dbos_system_schema": SCHEMA, "log_level": "WARNING",
                         "scheduler_polling_interval_sec": 1.0, "max_executor_threads": self.concurrency + 8})
            with _outside(self.url, "start the workers' queue (DBOS)"):
                DBOS.launch()  # recovers the segments this executor id held when it last stopped
            DBOS.register_queue(QUEUE, worker_concurrency=self.concurrency, polling_interval_sec=self.poll,
                                on_conflict="always_update")
            DBOS.apply_schedules([{"schedule_name": DEADLINES, "workflow_fn": deadlines, "schedule": "*/2 * * * * *"},
                                  {"schedule_name": TRIGGERS, "workflow_fn": triggers, "schedule": "*/2 * * * * *"}])
            here.say({"event": "ready", "concurrency": self.concurrency, "pid": os.getpid(),
                      "host": socket.gethostname()})
            threading.Thread(target=_warm, daemon=True, name="studiox-warm").start()
            pruned = time.monotonic()
            while not self.stop.wait(self.beat):
                self._beat(con)
                self._take_over(con)
                if time.monotonic() - pruned > PRUNE_EVERY:
                    self._prune()
                    pruned = time.monotonic()
        finally:
            try:
                DBOS.destroy(workflow_completion_timeout_sec=int(grace))
            finally:
                con.execute("DELETE FROM workers WHERE executor = %s", (self.executor,))
                con.close()
                if here.service is not None:
                    here.service.close()
                here.say({"event": "stopped"})

    def _prune(self) -> None:
        """The timers' finished ticks (two every two seconds) are forgotten after KEEP_TICKS seconds:
        they record nothing a person needs (what they did is in the runs' journals)."""
        before = datetime.fromtimestamp(time.time() - KEEP_TICKS, tz=UTC).isoformat()
        done = DBOS.list_workflows(name=[DEADLINES, TRIGGERS], status="SUCCESS", end_time=before, limit=5_000,
                                   load_input=False, load_output=False)
        if done:
            DBOS.delete_workflows([w.workflow_id for w in done], delete_children=False)

    def _beat(self, con) -> None:
        con.execute(f"INSERT INTO workers VALUES (%s, %s, %s, {NOW}, {NOW}, %s) ON CONFLICT (executor) DO UPDATE "
                    f"SET beat = {NOW}, host = excluded.host, pid = excluded.pid, concurrency = excluded.concurrency",
                    (self.executor, socket.gethostname(), os.getpid(), self.concurrency))

    def _take_over(self, con) -> None:
        """Segments held by an executor silent for ``takeover_after`` seconds (or gone): re-queued."""
        rows = con.execute(
            f"SELECT w.executor_id, max(k.beat), {NOW} FROM {SCHEMA}.workflow_status w "
            "LEFT JOIN workers k ON k.executor = w.executor_id "
            "WHERE w.status = 'PENDING' AND w.executor_id <> %s AND w.application_version = %s "
            f"AND (k.beat IS NULL OR k.beat < {NOW} - %s) GROUP BY w.executor_id",
            (self.executor, APP_VERSION, self.takeover_after)).fetchall()
        for dead, last_beat, now in rows:
            handles = DBOS._recover_pending_workflows([dead])
            if handles:
                self.say({"worker": self.executor, "event": "takeover", "from": dead, "segments": len(handles),
                          "silent_for": round(now - last_beat, 3) if last_beat is not None else None})
