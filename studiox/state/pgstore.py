"""The store on PostgreSQL: the same tables and methods as the SQLite store (store.py), for runs
driven from more than one machine.

The tables have the shape of store.py's: ``events`` keyed by ``(run, seq)`` — a second writer of a
run is refused by the primary key, never overwrites —, ``records`` first writer wins, and the
``runs`` and ``decisions`` index tables written by indexing.py in the same transaction as the event
or record that changes them. Times are ``DOUBLE PRECISION`` (``REAL`` is 4 bytes in PostgreSQL),
and text columns use the "C" collation, so keys compare and sort by code point as in SQLite and
Python (``records(prefix)`` depends on it).

Only the journal, the records and the index live in the database: the model response cache stays
a diskcache in the local folder ``home`` (a cache, so each machine may have its own).

Durability is the server's: a commit returns once PostgreSQL has flushed its WAL, unless the server
or the session runs with ``synchronous_commit = off`` (see docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RunLocked, StoreError
from .store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    run TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run, seq));
CREATE TABLE IF NOT EXISTS records (key TEXT COLLATE "C" NOT NULL PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY, mission TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C",
    state TEXT NOT NULL, started DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, verdict TEXT,
    head_seq BIGINT, head TEXT);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started, id);
CREATE INDEX IF NOT EXISTS runs_by_mission ON runs (mission, started);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, started);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, started);
CREATE INDEX IF NOT EXISTS runs_by_updated ON runs (updated);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY, run TEXT COLLATE "C" NOT NULL, step TEXT, mission TEXT COLLATE "C",
    key TEXT COLLATE "C", state TEXT NOT NULL, requested DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION,
    decided DOUBLE PRECISION);
CREATE INDEX IF NOT EXISTS decisions_by_state ON decisions (state, requested);
CREATE INDEX IF NOT EXISTS decisions_by_run ON decisions (run);
"""
_SCHEMA_LOCK = 0x5354_5544_494F_5800 >> 1  # a fixed advisory-lock key: two processes creating the tables queue


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def ensure_schema(con, schema: str, lock: int) -> None:
    """Make the tables and indexes of ``schema`` unless all are there. Looked for first, without a lock:
    ``CREATE INDEX IF NOT EXISTS`` takes a SHARE lock on its table even when the index exists, and two
    processes opening the store while others write would deadlock on those locks. When some are
    missing, they are made under an advisory lock (two processes starting together queue)."""
    names = re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", schema)
    found = con.execute("SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relnamespace = "
                        "current_schema()::regnamespace", (names,)).fetchone()
    if found and found[0] == len(names):
        return
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        con.execute(schema)


def lock_key(run_id: str) -> int:
    """The 64-bit advisory-lock key of a run (PostgreSQL's locks take a bigint, not text)."""
    return int.from_bytes(hashlib.sha256(f"studiox-run:{run_id}".encode()).digest()[:8], "big", signed=True)


class PgStore(Store):
    """The store in a PostgreSQL database; ``home`` is the local folder for the response cache."""

    def __init__(self, home: Path, url: str, connection):
        import psycopg

        super().__init__(home, None)
        self.url = url
        self._segments: bool | float | None = None  # DBOS's tables exist: True, or when last found missing
        self._pg = connection
        self._pg_lock = threading.Lock()
        self._taken = psycopg.errors.UniqueViolation

    @classmethod
    def connect(cls, home: Path, url: str) -> PgStore:
        """Open the database at ``url`` (its tables are made when missing)."""
        con = _connect(url)
        try:
            ensure_schema(con, SCHEMA, _SCHEMA_LOCK)
        except Exception as e:
            con.close()
            raise _error(url, e) from None
        return cls(Path(home), url, con)

    def close(self) -> None:
        self._pg.close()
        super().close()

    # ------------------------------------------------------------------ SQL (store.py's, with %s for ?)

    def _rows(self, query: str, args: Iterable = ()) -> list[tuple]:
        with self._pg_lock, self._errors():
            return self._pg.execute(_pg(query), tuple(args)).fetchall()

    def _snapshot(self, *queries: tuple[str, tuple]) -> list[list[tuple]]:
        with self._pg_lock, self._errors(), self._pg.transaction():
            self._pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return [self._pg.execute(_pg(query), args).fetchall() for query, args in queries]

    @contextmanager
    def _transaction(self):
        with self._pg_lock, self._errors(), self._pg.transaction():
            cursor = self._pg.cursor()
            yield lambda query, args=(): cursor.execute(_pg(query), args)

    def _insert_events(self, execute, rows: list[tuple]) -> None:
        for row in rows:
            execute("INSERT INTO events (run, seq, type, at, body) VALUES (?, ?, ?, ?, ?)", row)

    @contextmanager
    def _errors(self):
        """Map psycopg's errors to studiox's (a taken key passes through: the callers decide what it means)."""
        import psycopg

        try:
            yield
        except psycopg.errors.UniqueViolation:
            raise
        except psycopg.Error as e:
            raise _error(self.url, e) from None

    def journal_size(self) -> int:
        """Bytes the store's tables take in the database (with their indexes)."""
        rows = self._rows("SELECT SUM(pg_total_relation_size(c)) FROM unnest(ARRAY['events', 'records', 'runs', "
                          "'decisions']::regclass[]) AS c")
        return int(rows[0][0] or 0)

    # ------------------------------------------------------------------ who drives a run

    def lock(self, run_id: str) -> PgRunLock:
        return PgRunLock(self.url, run_id)

    def driven(self, run_id: str) -> bool:
        """True when some session holds the run's advisory lock, or a segment of the run waits in the
        workers' queue or is under way (studiox/dispatch; DBOS's table, read with plain SQL: no dbos
        import). One round trip. Segment ids start with ``RUN/``; '0' follows '/', so the range reads
        the primary key's index."""
        locked = ("EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                  "AND ((classid::bigint << 32) | objid::bigint) = ?)")
        if not self._has_segments():
            rows = self._rows(f"SELECT {locked}", (lock_key(run_id),))
        else:
            rows = self._rows(f"SELECT {locked} OR EXISTS (SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid >= ? "
                              "AND workflow_uuid < ? AND status IN ('ENQUEUED', 'PENDING'))",
                              (lock_key(run_id), f"{run_id}/", f"{run_id}0"))
        return bool(rows and rows[0][0])

    def _has_segments(self) -> bool:
        """Whether DBOS's tables exist (made by the first worker or client); asked again at most each second until then."""
        if self._segments is True or (self._segments is not None and time.monotonic() - self._segments < 1.0):
            return self._segments is True
        found = self._rows("SELECT to_regclass('dbos.workflow_status') IS NOT NULL")
        self._segments = True if found and found[0][0] else time.monotonic()
        return self._segments is True


class PgRunLock:
    """One driver per run across machines: a session-level advisory lock on a connection of its own,
    which PostgreSQL drops when that connection ends — also when the process holding it is killed."""

    def __init__(self, url: str, run_id: str):
        self.url = url
        self.run_id = run_id
        self._con = None

    def acquire(self) -> PgRunLock:
        con = _connect(self.url)
        key = lock_key(self.run_id)
        row = con.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (row and row[0]):
            holder = con.execute("SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l "
                                 "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                                 "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                                 (key,)).fetchone()
            con.close()
            who = (f"the database session {holder[0]} from {holder[1] or 'this machine'} ({holder[2] or 'studiox'})"
                   if holder else "another process")
            raise RunLocked(f"run {self.run_id} is being driven by {who}; only one process may drive a run at a "
                            "time — wait for it to finish or pause, or stop that process")
        self._con = con
        return self

    def release(self) -> None:
        if self._con is not None:
            try:  # unlocked before the session ends (which drops it too, but a moment later: the server's backend exits)
                self._con.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.run_id),))
            except Exception:  # noqa: BLE001, S110 - the connection is gone: so is the lock
                pass
            self._con.close()
            self._con = None

    def __enter__(self) -> PgRunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pg(query: str) -> str:
    """store.py's SQL for psycopg: ``%s`` placeholders for ``?`` (the queries hold no other ? or %)."""
    return query.replace("?", "%s")


def _connect(url: str):
    try:
        import psycopg
    except ImportError:
        raise StoreError("the postgres backend needs psycopg: pip install 'studiox[postgres]'") from None
    try:
        return psycopg.connect(url, autocommit=True, application_name="studiox")
    except psycopg.Error as e:
        raise _error(url, e) from None


def _error(url: str, e: Exception) -> StoreError:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return StoreError(f"cannot use the database {safe_url(url)}: {text}; check STUDIOX_DATABASE_URL")
