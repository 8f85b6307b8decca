"""The audit trail read back: one run in full (``show``), a run followed as it is written
(``log --follow``) and how it stands after (``outcome_of``), journals verified against their
chains (``audit verify``), and the runs an audit export covers. Part of the library surface: ``api`` re-exports these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import RunNotFound, suggest

if TYPE_CHECKING:
    from .engine.control import Outcome
    from .state.store import Store


def show_run(store: Store, run_id: str, step: str | None = None) -> dict:
    """``studiox show``: the run in full (see studiox.report), or only the step at ``step``."""
    from .errors import UsageError
    from .report import gather
    from .state.journal import derive

    events = store.events(run_id)
    state = derive(run_id, events)
    from .governance import DecisionQueue
    from .units import iso

    decisions = DecisionQueue(store, time.time)

    def decision(decision_id: str) -> dict | None:
        try:
            found = decisions.get(decision_id)
        except RunNotFound:
            return None
        return {"status": found.status, "requested_at": iso(found.request.get("requested_at")),
                "decided": iso((found.outcome or {}).get("at")), "by": (found.outcome or {}).get("by"),
                "note": (found.outcome or {}).get("note")}

    data = gather(state, events, decision, iso)
    data["run"]["status"] = state.status(not state.finished and store.driven(run_id))
    # the links of composition: the run (and step) this one serves, and the runs its mission steps started
    data["run"]["parent"] = (state.started or {}).get("parent")
    data["run"]["children"] = [{"step": key.split(":", 2)[2], "run": claim["run"]}
                               for key, claim in store.records(f"child:{run_id}:")]
    if step is not None:
        chosen = [s for s in data["steps"] if s["step"] == step]
        if not chosen:
            raise UsageError(f"run {run_id} has no step '{step}'{suggest(step, [s['step'] for s in data['steps']])}")
        data["steps"] = chosen
    return data


def descendants(store: Store, run_id: str) -> list[tuple[str, str]]:
    """``(run, via)`` of every run below ``run_id`` (its mission steps' child runs, theirs, …), with
    the path of steps that started it (``payment``, ``payment/pay``)."""
    found = []
    for key, claim in store.records(f"child:{run_id}:"):
        via = key.split(":", 2)[2]
        found.append((claim["run"], via))
        found += [(child, f"{via}/{below}") for child, below in descendants(store, claim["run"])]
    return found


def with_children(store: Store, run_id: str) -> list[str]:
    """A run and every run below it, parent first."""
    return [run_id, *(child for child, _ in descendants(store, run_id))]


def runs_in_full(store: Store, ids: list[str], *, until: float | None = None,
                 approver: str | None = None) -> list[tuple[dict, list[dict]]]:
    """(the run in full, its events) for each of ``ids`` started by ``until`` and, with ``approver``,
    with a decision that person made."""
    chosen = []
    for rid in ids:
        report = show_run(store, rid)
        if until is not None and report["run"]["started"] and \
                datetime.fromisoformat(report["run"]["started"]).timestamp() > until:
            continue
        if approver and not any(d.get("by") == approver for s in report["steps"] for d in s["decisions"]):
            continue
        chosen.append((report, store.events(rid)))
    return chosen


def follow(store: Store, run_id: str, *, poll: float = 0.2, settle: float = 1.0, start: int = 0) -> Iterator[dict]:
    """A run's events as they are written, after the ``start``-th: until it finishes, or no process
    has driven it for ``settle`` seconds (it parked, or its driver stopped; on the postgres backend a
    segment queued for it counts as driving it)."""

    seq, undriven = start, None
    while True:
        new = store.events(run_id, start=seq + 1)
        yield from new
        if new:
            seq = new[-1]["seq"]
            if new[-1]["type"] == "run_finished":
                return
        if store.driven(run_id):
            undriven = None
        elif undriven is None:
            undriven = time.monotonic()
        elif time.monotonic() - undriven >= settle:  # (a moment's grace: a process may be taking it up)
            return
        time.sleep(poll)


def verify_runs(store: Store, run_ids: list[str] | None = None) -> list:
    """``audit verify``: each run's journal against its hash chain and the index head (chain.Verdict)."""
    from .state import chain

    return [chain.verify(run_id, store.event_rows(run_id), store.run_head(run_id))
            for run_id in (run_ids if run_ids is not None else store.run_ids())]


def outcome_of(store: Store, run_id: str) -> Outcome:
    """How a run stands, as the outcome of a drive (for a run another process drove: a worker)."""
    from .engine import control
    from .state.journal import derive

    state = derive(run_id, store.events(run_id))
    finished = state.finished or {}
    status = state.status(driven=not state.finished and store.driven(run_id))
    waiting = dict(state.waiting) if status == "waiting" and state.waiting else None
    return control.Outcome(run_id, status, verdict=finished.get("verdict"), note=finished.get("note"),
                           error=finished.get("error"), waiting=waiting)
