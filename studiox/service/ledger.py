"""The trigger ledger: every firing of a trigger, written before its run starts.

``triggers.db`` in the state folder holds one row per firing, unique by (trigger, key): the
inbox file's content hash, the schedule's time, the webhook body's hash. The row is written with
the run id the firing will start, before the run exists; the run is then started with that id.
A crash between the two leaves a row whose run has no journal: the service starts it when it
comes back. A crash after leaves a run that exists: nothing is started again. So a firing
neither loses nor doubles its run.

On the postgres backend the ledger is the ``firings`` table of the database (``open_ledger``), so
services on several machines watching the same inbox or schedule fire each firing once: the first
to write its (trigger, key) row starts the run, the others find the row there.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATABASE = "triggers.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS firings (
    trigger TEXT NOT NULL, key TEXT NOT NULL, mission TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
    at REAL NOT NULL, run TEXT NOT NULL, outcome TEXT, PRIMARY KEY (trigger, key));
CREATE INDEX IF NOT EXISTS firings_by_time ON firings (trigger, at);
"""
PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS firings (
    trigger TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, mission TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, run TEXT NOT NULL, outcome TEXT, PRIMARY KEY (trigger, key));
CREATE INDEX IF NOT EXISTS firings_by_time ON firings (trigger, at);
"""
_PG_SCHEMA_LOCK = 0x5354_5544_494F_5801 >> 1  # (pgstore's tables use ...5800)
_PG_TURN_LOCK = 0x5354_5544_494F_5802 >> 1
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


@dataclass(frozen=True)
class Firing:
    trigger: str
    key: str
    mission: str
    kind: str
    detail: dict
    at: float
    run: str
    outcome: str | None = None  # 'started', or why the run was not (its business key has a live run)
    new: bool = False  # written by this call (else it was there: the firing happened before)


def open_ledger(home: Path) -> Ledger:
    """The ledger of the backend in use: ``triggers.db`` in the state folder, or the database's table."""
    from ..dispatch import database_url, queued

    return PgLedger(database_url()) if queued() else Ledger(home)


class Ledger:
    def __init__(self, home: Path):
        path = home / DATABASE
        fresh = not path.exists()
        self.con = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        if fresh:
            os.chmod(path, 0o600)
        self.con.execute("PRAGMA journal_mode = WAL")
        self.con.execute("PRAGMA synchronous = FULL")  # a firing is on disk before its run starts
        self.con.executescript(SCHEMA)

    def close(self) -> None:
        self.con.close()

    def _execute(self, query: str, args: tuple = ()):
        return self.con.execute(query, args)

    @contextmanager
    def turn(self) -> Iterator[bool]:
        """Whether this service may look at its triggers now: here, always (one service per state folder)."""
        yield True

    def fire(self, trigger: str, key: str, *, mission: str, kind: str, detail: dict, at: float | None = None) -> Firing:
        """Record a firing (once per trigger and key) with the id of the run it starts."""
        run = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        when = time.time() if at is None else at
        cursor = self._execute(
            "INSERT INTO firings (trigger, key, mission, kind, detail, at, run) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (trigger, key, mission, kind, json.dumps(detail, ensure_ascii=False), when, run))
        found = self.get(trigger, key)
        assert found is not None
        return Firing(**{**found.__dict__, "new": cursor.rowcount == 1})

    def get(self, trigger: str, key: str) -> Firing | None:
        rows = self._execute("SELECT trigger, key, mission, kind, detail, at, run, outcome FROM firings WHERE trigger = ? "
                                "AND key = ?", (trigger, key)).fetchall()
        return _firing(rows[0]) if rows else None

    def last(self, trigger: str, limit: int = 1) -> list[Firing]:
        rows = self._execute("SELECT trigger, key, mission, kind, detail, at, run, outcome FROM firings WHERE trigger = ? "
                                "ORDER BY at DESC LIMIT ?", (trigger, limit)).fetchall()
        return [_firing(row) for row in rows]

    def settle(self, firing: Firing, outcome: str) -> None:
        """Say what became of a firing: 'started', or why its run was not started."""
        self._execute("UPDATE firings SET outcome = ? WHERE trigger = ? AND key = ?", (outcome, firing.trigger,
                                                                                         firing.key))

    def unsettled(self) -> list[Firing]:
        """Firings whose run may not have started (a crash came between the two)."""
        rows = self._execute("SELECT trigger, key, mission, kind, detail, at, run, outcome FROM firings WHERE "
                                "outcome IS NULL ORDER BY at").fetchall()
        return [_firing(row) for row in rows]

    def all(self) -> list[Firing]:
        rows = self._execute("SELECT trigger, key, mission, kind, detail, at, run, outcome FROM firings ORDER BY at")
        return [_firing(row) for row in rows]


class PgLedger(Ledger):
    """The ledger as a table of the PostgreSQL database (the same rows; see open_ledger)."""

    def __init__(self, url: str):  # (Ledger.__init__ opens a SQLite file: not called)
        from ..state.pgstore import _connect, ensure_schema

        con = _connect(url)
        ensure_schema(con, PG_SCHEMA, _PG_SCHEMA_LOCK)
        self.con = con

    def _execute(self, query: str, args: tuple = ()):
        return self.con.execute(query.replace("?", "%s"), args)

    @contextmanager
    def turn(self) -> Iterator[bool]:
        """Whether this service may look at its triggers now: one service at a time across machines (an
        advisory lock), so a file or a schedule seen by two at once is fired, and its run started, once."""
        got = self.con.execute("SELECT pg_try_advisory_lock(%s)", (_PG_TURN_LOCK,)).fetchone()[0]
        try:
            yield bool(got)
        finally:
            if got:
                self.con.execute("SELECT pg_advisory_unlock(%s)", (_PG_TURN_LOCK,))


def _firing(row: tuple) -> Firing:
    trigger, key, mission, kind, detail, at, run, outcome = row
    return Firing(trigger, key, mission, kind, json.loads(detail), at, run, outcome)
