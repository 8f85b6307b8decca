"""The index tables (runs, decisions) kept true to the events and records that change them.

Each function takes the ``execute`` of an open transaction: the index is written in the same
transaction as what it indexes, so it never disagrees with the journal (see store.py).
"""

from __future__ import annotations

from collections.abc import Callable

FINISHED = ("succeeded", "failed", "cancelled")  # a run's state once run_finished is journaled


def run_state_of(event: dict) -> str:
    """What the runs table says about a run whose last event is ``event``."""
    if event["type"] == "run_finished":
        return event["status"]
    return "waiting" if event["type"] == "waiting" or event.get("waiting") else "active"


def index_events(execute: Callable, run_id: str, events: list[dict]) -> None:
    """Keep the runs and decisions tables true to ``events`` (the run's newest), in the caller's transaction."""
    for event in events:
        if event["type"] == "run_started":
            execute("INSERT INTO runs (id, mission, key, state, started, updated, head_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, str(event.get("mission", "?")), event.get("key"), "active", event["at"], event["at"],
                     event["seq"]))
        elif event["type"] == "run_finished":
            execute("UPDATE decisions SET state = 'void' WHERE run = ? AND state = 'pending'", (run_id,))
        elif event["type"] == "run_reopened":
            execute("UPDATE decisions SET state = 'pending' WHERE run = ? AND state = 'void'", (run_id,))
    keys = [e["key"] for e in events if e["type"] == "key_set"]
    last = events[-1]
    verdict = last.get("verdict") if last["type"] == "run_finished" else None
    head = (last.get("seq"), last.get("chain"))  # where the journal ends: a cut-short journal is found by it
    if keys:
        execute("UPDATE runs SET state = ?, updated = ?, verdict = ?, head_seq = ?, head = ?, key = ? WHERE id = ?",
                (run_state_of(last), last["at"], verdict, *head, keys[-1], run_id))
    else:
        execute("UPDATE runs SET state = ?, updated = ?, verdict = ?, head_seq = ?, head = ? WHERE id = ?",
                (run_state_of(last), last["at"], verdict, *head, run_id))


def index_record(execute: Callable, key: str, record: dict) -> None:
    """Keep the decisions table true to a new record, in the caller's transaction."""
    parts = key.split(":")
    if parts[0] != "decision":
        return
    if len(parts) == 2 and "run" in record:
        execute("INSERT INTO decisions (id, run, step, mission, key, state, requested, expires) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                (parts[1], record["run"], record.get("step"), record.get("mission"), record.get("key"),
                 record.get("requested_at") or 0.0, record.get("expires_at")))
    elif len(parts) == 3 and parts[2] == "outcome":
        execute("UPDATE decisions SET state = ?, decided = ? WHERE id = ?",
                (str(record.get("status", "decided")), record.get("at"), parts[1]))
