"""Business keys: which runs are about the same business object, and what was already done for it.

A mission's ``key`` (an invoice number, say) names the object a run is about. Each run that has
one registers it (``key:ID:RUN``), and each state-changing call it is about to make is recorded
(``act:ID:TOOL:RUN:ADDRESS``) before the call is journaled, so another run about the same
object can see, from the records and the runs' own journals, whether that call was already done
or is under way there. Records are immutable, so two runs never overwrite each other's.
"""

from __future__ import annotations

import hashlib

from .journal import derive, run_status, summary
from .store import Store

LIVE = ("running", "waiting", "interrupted")  # not finished: it may still act


def key_id(mission: str, key: str) -> str:
    """A short, fixed-shape id of (mission, key): keys may hold any characters."""
    return hashlib.sha256(f"{mission}\0{key}".encode()).hexdigest()[:24]


def register(store: Store, mission: str, key: str, run_id: str, at: float) -> None:
    """Record that ``run_id`` is about ``key``."""
    store.add_record(f"key:{key_id(mission, key)}:{run_id}", {"run": run_id, "mission": mission, "key": key, "at": at})
    store.add_record(f"runkey:{run_id}", {"key": key})


def key_of(store: Store, run_id: str) -> str | None:
    """The business key of a run, if it has one (yet)."""
    record = store.record(f"runkey:{run_id}")
    return record["key"] if record else None


def live_runs(store: Store, mission: str, key: str, *, other_than: str, before: float | None = None) -> list[dict]:
    """Other runs about the same key that have not finished (registered ``before`` a time, when given):
    ``[{run, status, at}]``, oldest first."""
    found = []
    for _, record in store.records(f"key:{key_id(mission, key)}:"):
        if record["run"] == other_than or (before is not None and (record["at"], record["run"]) >= (before, other_than)):
            continue
        _, last = summary(store, record["run"])
        status = run_status(last, driven=store.driven(record["run"]))
        if status in LIVE:
            found.append({"run": record["run"], "status": status, "at": record["at"]})
    return sorted(found, key=lambda r: (r["at"], r["run"]))


def claim(store: Store, mission: str, key: str, target: str, run_id: str, address: str, at: float) -> None:
    """Record that ``run_id`` is about to make the call ``target`` at ``address`` for ``key``."""
    store.add_record(f"act:{key_id(mission, key)}:{target}:{run_id}:{address}",
                     {"run": run_id, "address": address, "target": target, "at": at})


def done_elsewhere(store: Store, mission: str, key: str, target: str, *, run_id: str) -> list[dict]:
    """The calls of ``target`` for this key in other runs that happened or may be under way.

    ``[{run, address, status: done|under way, at, by}]``: a call whose run recorded its failure
    (or a person said it did not happen) is left out.
    """
    found = []
    for _, record in store.records(f"act:{key_id(mission, key)}:{target}:"):
        if record["run"] == run_id:
            continue
        state = derive(record["run"], store.events(record["run"]))
        event = state.actions.get(record["address"])
        if event is not None and event["type"] == "action_finished" and not event["ok"]:
            continue
        if event is None and (state.finished or (state.done.get(record["address"]) or {}).get("status") == "rejected"):
            continue  # it claimed the call but never made it
        applied = state.decided.get(record["address"]) or {}
        done = event is not None and event["type"] == "action_finished"
        found.append({"run": record["run"], "address": record["address"], "status": "done" if done else "under way",
                      "at": event["at"] if event else record["at"], "by": applied.get("by")})
    return found
