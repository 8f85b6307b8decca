"""Who drives a run: the process that asked (the local backend), or a worker that takes the run
from a queue (the postgres backend).

On PostgreSQL a run is driven in *segments*. A segment is one DBOS workflow that drives the run with
the ordinary engine until it finishes or parks (see segments.py; the workers are worker.py). Faces
never drive a run there: they ask for a segment, under a workflow id fixed by what asks for it, so
that asking twice for the same thing starts one segment (DBOS returns the workflow already there):

==================  =============================  ==========================================
who asks            call                           workflow id
==================  =============================  ==========================================
``studiox run``     ``submit(run)``                ``RUN/start``
a decision          ``wake(run, decision)``        ``RUN/decided/DECISION`` (two approvers: one)
``studiox resume``  ``resume(run, seq)``           ``RUN/resume/SEQ`` (the journal's length)
``resume --retry``  ``resume(run, seq, retry=…)``  ``RUN/retry/SEQ``
a deadline          ``wake(run, decision)``        ``RUN/decided/DECISION``
==================  =============================  ==========================================

Only this module's client and the worker import ``dbos`` (2–3 s); reads (``runs``, ``status``,
``decisions``, ``log``, ``audit``) never do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import StoreError

APP = "studiox"
QUEUE = "studiox-segments"
WORKFLOW = "studiox.segment"
# Segments of any studiox version are the same workflow ("drive this run"): a worker of a newer
# version recovers a segment an older one left, and the engine reads the journal's format itself.
APP_VERSION = "studiox-segments-1"
SCHEMA = "dbos"


def segment_id(run_id: str, why: str, detail: str | int | None = None) -> str:
    return f"{run_id}/{why}" + (f"/{detail}" if detail is not None else "")


def database_url() -> str:
    url = os.environ.get("STUDIOX_DATABASE_URL", "").strip()
    if not url:
        raise StoreError("the postgres backend needs STUDIOX_DATABASE_URL (for example "
                         "postgresql://studiox@db.example:5432/studiox)")
    return url


def queued(backend: str | None = None) -> bool:
    """True when runs of this backend are driven by workers (postgres), not by the process that asks.
    The test door STUDIOX_TEST_DRIVE_HERE keeps them in the asking process on postgres too, as locally:
    the engine's tests run on the PostgreSQL store without workers (a segment runs that same engine)."""
    from ..state.backends import backend_name

    return backend_name(backend) == "postgres" and not os.environ.get("STUDIOX_TEST_DRIVE_HERE")


class Dispatcher:
    """Asks the workers for segments (a DBOS client: it needs no worker alive, only the database)."""

    def __init__(self, url: str | None = None):
        self.url = url or database_url()
        self._client = None

    def _dbos(self):
        if self._client is None:
            from .queue import client

            with _outside(self.url, "reach the workers' queue"):
                self._client = client(self.url)
        return self._client

    def submit(self, run_id: str) -> str:
        """A new run: its first segment."""
        return self._enqueue(run_id, segment_id(run_id, "start"))

    def wake(self, run_id: str, decision_id: str) -> str:
        """A decision was made (or its deadline passed): the segment that applies it."""
        return self._enqueue(run_id, segment_id(run_id, "decided", decision_id))

    def resume(self, run_id: str, seq: int, *, retry: bool = False) -> str:
        """``studiox resume`` at journal length ``seq`` (asked twice at one point: one segment);
        ``retry``: a failed run taken up again from the step that failed (``resume --retry``)."""
        return self._enqueue(run_id, segment_id(run_id, "retry" if retry else "resume", seq), retry=retry)

    def drive(self, run_id: str, seq: int) -> str:
        """Whatever the run needs next: its first segment, or one that resumes it (the portal, the service)."""
        return self.submit(run_id) if seq <= 1 else self.resume(run_id, seq)

    def ask(self, store, run_id: str, decision: str | None = None) -> str:
        """After a face started a run or made a decision: the segment that drives it on. A sub-mission's
        run is driven by its top parent's, so the segment is the top run's."""
        from .. import api

        top = api.top_run(store, run_id)
        return self.wake(top, decision) if decision is not None else self.drive(top, store.last_seq(top))

    def workers(self, within: float = 10.0) -> int:
        """How many workers beat within the last ``within`` seconds (0 when none ever started): asked
        on the client's own connections, not a new one."""
        with _outside(self.url, "count the workers"), self._dbos()._sys_db.engine.connect() as con:
            if con.exec_driver_sql("SELECT to_regclass('workers')").scalar() is None:
                return 0  # (no worker ever started)
            return int(con.exec_driver_sql("SELECT count(*) FROM workers WHERE beat > "
                                           "extract(epoch from clock_timestamp())::float8 - %s", (within,)).scalar() or 0)

    def _enqueue(self, run_id: str, workflow_id: str, *, retry: bool = False) -> str:
        from .queue import enqueue

        client = self._dbos()
        with _outside(self.url, f"queue run {run_id} for the workers"):
            enqueue(client, workflow_id, run_id, retry)
        return workflow_id

    def close(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None


@contextmanager
def _outside(url: str, doing: str) -> Iterator[None]:
    """DBOS's and the database's exceptions, as the studiox error that says what could not be done."""
    from ..state.pgstore import _error

    try:
        yield
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - the border to DBOS: anything it raises is about the database
        raise _error(url, e, doing) from None
