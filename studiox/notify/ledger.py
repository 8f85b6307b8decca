"""The delivery ledger: ``notifications.db`` in the state folder, the record of every notification.

Its own SQLite file (WAL, mode 0600), not the run store: a delivery changes (pending, then
delivered or failed), while the store's records are immutable. Tables::

    deliveries  (event, target) primary key: one row per event and target, so nothing is sent
                to a target twice, across restarts and between two notifiers; kind, run, decision,
                mission, channel, address (for people), entry and message (JSON: a retry sends the
                same message where it said), status (pending · delivered · failed), attempts, the
                last error, created, next_at (when a pending one is due), done_at
    cursors     run → the last seq of its journal the notifier has looked at
    marks       name → value: ``first_look`` (when the notifier first looked), ``updated`` (the
                newest run update it has seen)

A delivery is claimed before it is sent by moving its ``next_at`` past a lease: another notifier
on the same folder does not send it meanwhile, and one killed mid-send leaves it due again once
the lease ends (at least once: a kill between sending and recording may send it twice).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError
from ..state import folder
from ..units import iso

__all__ = ["DATABASE", "LEASE", "RETRY_IN", "Ledger", "deliveries"]

DATABASE = "notifications.db"
RETRY_IN = (5.0, 30.0, 120.0, 600.0)  # after the 1st, 2nd, … failed attempt; then it is given up as failed
LEASE = 120.0  # a claimed delivery is not due again before this (a sender takes at most 30 s)
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    event TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL, run TEXT, decision TEXT, mission TEXT,
    channel TEXT NOT NULL, address TEXT NOT NULL, entry TEXT NOT NULL, message TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT, created REAL NOT NULL, next_at REAL,
    done_at REAL, PRIMARY KEY (event, target));
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (created);
CREATE TABLE IF NOT EXISTS cursors (run TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (name TEXT NOT NULL PRIMARY KEY, value REAL NOT NULL);
"""
_COLUMNS = ("event", "target", "kind", "run", "decision", "mission", "channel", "address", "status", "attempts",
            "error", "created", "next_at", "done_at")


class Ledger:
    """One state folder's ``notifications.db``, open for one notifier (made when first opened)."""

    def __init__(self, home: Path):
        self.path = Path(home) / DATABASE
        try:
            if not self.path.exists():
                self.path.touch(mode=0o600)  # before SQLite opens it: its -wal and -shm files get this mode
            self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.executescript(SCHEMA)
        except (OSError, sqlite3.DatabaseError) as e:
            raise StoreError(f"cannot use the notification ledger {self.path}: {e}") from None

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot write the notification ledger {self.path}: {e}") from None

    def _rows(self, query: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._con.execute(query, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot read the notification ledger {self.path}: {e}") from None

    # ------------------------------------------------------------------ where the last look ended

    def marks(self) -> dict[str, float]:
        return dict(self._rows("SELECT name, value FROM marks"))

    def cursors(self) -> dict[str, int]:
        return dict(self._rows("SELECT run, seq FROM cursors"))

    def record_look(self, cursors: dict[str, int], marks: dict[str, float], new: list[dict]) -> int:
        """In one transaction: where each run's journal was read to, the marks, and the deliveries the
        look found (one already there for an event and target is left as it is). Returns how many were new."""
        added = 0
        with self._transaction() as con:
            for name, value in marks.items():
                con.execute("DELETE FROM marks WHERE name = ?", (name,))
                con.execute("INSERT INTO marks (name, value) VALUES (?, ?)", (name, value))
            for run, seq in cursors.items():
                con.execute("DELETE FROM cursors WHERE run = ?", (run,))
                con.execute("INSERT INTO cursors (run, seq) VALUES (?, ?)", (run, seq))
            for row in new:
                if con.execute("SELECT 1 FROM deliveries WHERE event = ? AND target = ?",
                               (row["event"], row["target"])).fetchone():
                    continue
                con.execute("INSERT INTO deliveries (event, target, kind, run, decision, mission, channel, address, "
                            "entry, message, status, attempts, created, next_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                            (row["event"], row["target"], row["kind"], row.get("run"), row.get("decision"),
                             row.get("mission"), row["channel"], row["address"], _json(row["entry"]),
                             _json(row["message"]), PENDING, row["created"], row["created"]))
                added += 1
        return added

    def known(self, event: str, target: str) -> bool:
        return bool(self._rows("SELECT 1 FROM deliveries WHERE event = ? AND target = ?", (event, target)))

    # ------------------------------------------------------------------ sending

    def claim_due(self, now: float, limit: int = 50) -> list[dict]:
        """Pending deliveries that are due, each claimed for :data:`LEASE` seconds (none another
        notifier claimed): their rows with ``entry`` and ``message`` as data."""
        names = (*_COLUMNS, "entry", "message")
        if not self._rows("SELECT 1 FROM deliveries WHERE status = ? AND next_at <= ? LIMIT 1", (PENDING, now)):
            return []  # (a quiet tick takes no write lock)
        claimed = []
        with self._transaction() as con:
            rows = con.execute(f"SELECT {', '.join(names)} FROM deliveries WHERE status = ? AND next_at <= ? "
                               "ORDER BY next_at, created LIMIT ?", (PENDING, now, limit)).fetchall()
            for row in rows:
                found = dict(zip(names, row, strict=True))
                con.execute("UPDATE deliveries SET next_at = ? WHERE event = ? AND target = ?",
                            (now + LEASE, found["event"], found["target"]))
                found["entry"], found["message"] = json.loads(found["entry"]), json.loads(found["message"])
                claimed.append(found)
        return claimed

    def attempted(self, row: dict, error: str | None, now: float) -> dict:
        """Record one attempt: delivered, due again after its backoff, or given up as failed. Returns the row."""
        attempts = row["attempts"] + 1
        if error is None:
            status, next_at, done_at = DELIVERED, None, now
        elif attempts <= len(RETRY_IN):
            status, next_at, done_at = PENDING, now + RETRY_IN[attempts - 1], None
        else:
            status, next_at, done_at = FAILED, None, now
        with self._transaction() as con:
            con.execute("UPDATE deliveries SET status = ?, attempts = ?, error = ?, next_at = ?, done_at = ? "
                        "WHERE event = ? AND target = ?",
                        (status, attempts, error, next_at, done_at, row["event"], row["target"]))
        return {**row, "status": status, "attempts": attempts, "error": error, "next_at": next_at,
                "done_at": done_at}


def deliveries(home: Path, *, limit: int = 200) -> list[dict]:
    """The newest notifications of a state folder and how their delivery went, for a CLI or the portal:
    event, kind, target (its id), channel, address, run, decision, mission, status (pending · delivered ·
    failed), attempts, error, and times (ISO 8601 UTC). Empty when nothing was ever notified."""
    path = Path(home) / DATABASE
    if not path.is_file():
        return []
    try:
        if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
            con = sqlite3.connect(path, timeout=30)
        else:  # a WAL database opens read-only only with care
            con = folder.connect_read_only(Path(home), path, "SELECT COUNT(*) FROM sqlite_master")
        try:
            rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM deliveries ORDER BY created DESC, event "
                               "LIMIT ?", (limit,)).fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot read the notification ledger {path}: {e}") from None
    found = []
    for row in rows:
        item = dict(zip(_COLUMNS, row, strict=True))
        for name in ("created", "next_at", "done_at"):
            item[name] = iso(item[name])
        found.append(item)
    return found


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
