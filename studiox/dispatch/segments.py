"""One segment of a run, as a worker drives it: the engine's ordinary drive, until the run finishes
or parks. No DBOS here (worker.py wraps it in a workflow): a recovered segment is exactly
``studiox resume`` — finished steps come from the journal, a call cut off in flight becomes the
engine's in-doubt decision, and the run lock keeps a second driver off the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import RunLocked, RunNotFound, RunNotResumable
from ..state.store import Store


def drive(store: Store, run_id: str, *, retry: bool = False, poll: float = 0.5, patience: float = 24 * 3600.0,
          note: Callable[[dict], None] = lambda _: None) -> dict:
    """Drive ``run_id`` on; what happened, as a dict for the worker's log and the segment's result.

    A run another process drives is waited for (``poll``), then driven: this segment was asked for
    after something that process may not have seen (a decision made while it walked another branch).
    A run that has ended, or was never started, is nothing to do.
    """
    from .. import api

    engine = api.engine(store)
    began, waited = time.monotonic(), 0.0
    while True:
        try:
            resume = store.last_seq(run_id) > 1  # a first segment starts the walk; any later one resumes it
            outcome = engine.drive(run_id, resume=resume, retry_failed=retry)
        except RunLocked:
            if time.monotonic() - began > patience:
                raise
            if not waited:
                note({"run": run_id, "segment": "waits", "why": "another process drives the run"})
            waited = time.monotonic() - began
            time.sleep(poll)
            continue
        except (RunNotResumable, RunNotFound) as e:
            return {"run": run_id, "status": "nothing to do", "why": str(e)}
        answer: dict = {"run": outcome.run_id, "status": outcome.status}
        if outcome.status == "waiting" and outcome.waiting:
            answer["decision"] = outcome.waiting["decision"]
        if waited:
            answer["waited"] = round(waited, 3)
        return answer
