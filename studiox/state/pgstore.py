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
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RunLocked, StoreError
from .locks import held_message, this_process
from .store import Store, make_state_folder

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
CREATE TABLE IF NOT EXISTS run_locks (
    run TEXT COLLATE "C" NOT NULL PRIMARY KEY, session INTEGER NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    command TEXT NOT NULL, since DOUBLE PRECISION NOT NULL);
"""
_SCHEMA_LOCK = 0x5354_5544_494F_5800 >> 1  # a fixed advisory-lock key: two processes creating the tables queue
# the session holding a run's lock, and who that session says it is (run_locks, written as the lock is taken;
# a row whose session no longer holds the lock is a leftover of a killed process, and is not joined)
_HOLDER = """
SELECT r.pid, r.host, r.command, r.since, a.pid, a.client_addr, a.application_name
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid LEFT JOIN run_locks r ON r.run = %s AND r.session = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
"""
GONE_WAIT = 5.0  # seconds: how long to wait for the server to end the session of a holder seen to be dead


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
        self._folder_made = False

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

    @property
    def where(self) -> str:
        return f"the database {safe_url(self.url)}"

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
        if not self._folder_made:  # a process driving a run writes its logs and response cache there
            make_state_folder(self.home)
            self._folder_made = True
        return PgRunLock(self.url, run_id)

    def driven(self, run_id: str) -> bool:
        """True when some session holds the run's advisory lock, or a segment of the run waits in the
        workers' queue or is under way (studiox/dispatch; DBOS's table, read with plain SQL: no dbos
        import). One round trip. Segment ids start with ``RUN/``; '0' follows '/', so the range reads
        the primary key's index."""
        locked = ("EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                  "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                  "AND ((classid::bigint << 32) | objid::bigint) = ?)")  # (advisory locks are per database)
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

    def holder(self, run_id: str) -> dict | None:
        with self._pg_lock, self._errors():
            return _holder(self._pg, run_id)


class PgRunLock:
    """One driver per run across machines: a session-level advisory lock on a connection of its own,
    which PostgreSQL drops when that connection ends — also when the process holding it is killed.

    Taking the lock also writes who holds it (``run_locks``: pid, host, command), so a second driver,
    on any machine, is told whom to wait for."""

    def __init__(self, url: str, run_id: str):
        self.url = url
        self.run_id = run_id
        self._con = None

    def acquire(self) -> PgRunLock:
        import psycopg

        con = _connect(self.url)
        key = lock_key(self.run_id)
        deadline = time.monotonic() + GONE_WAIT
        try:
            while True:
                holder = None
                with con.transaction():  # who holds it is recorded a moment after the lock is visible
                    taken = con.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
                    if taken:
                        me = this_process()
                        con.execute("INSERT INTO run_locks (run, session, pid, host, command, since) VALUES "
                                    "(%s, pg_backend_pid(), %s, %s, %s, %s) ON CONFLICT (run) DO UPDATE SET "
                                    "session = EXCLUDED.session, pid = EXCLUDED.pid, host = EXCLUDED.host, "
                                    "command = EXCLUDED.command, since = EXCLUDED.since",
                                    (self.run_id, me["pid"], me["host"], me["command"], me["since"]))
                    else:
                        holder = _holder(con, self.run_id)
                if taken:
                    self._con = con
                    return self
                # a holder killed on this machine: its session ends once the server sees its socket close
                if holder and _gone(holder) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise RunLocked(held_message(self.run_id, holder) if holder else
                                held_message(self.run_id, None, _session(con, key)))
        except psycopg.Error as e:
            con.close()
            raise _error(self.url, e) from None
        except BaseException:
            con.close()
            raise

    def release(self) -> None:
        if self._con is not None:
            import psycopg

            con, self._con = self._con, None
            try:  # unlocked before the close returns: the next driver need not wait for the session to end
                con.execute("DELETE FROM run_locks WHERE run = %s AND session = pg_backend_pid()", (self.run_id,))
                con.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.run_id),))
            except psycopg.Error:
                pass  # a broken connection: ending it drops the lock all the same
            finally:
                con.close()

    def __enter__(self) -> PgRunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(con, run_id: str) -> dict | None:
    """Who holds the run's lock, as that process recorded it in run_locks; None when no session holds it, or
    its holder has not recorded itself (yet)."""
    row = con.execute(_HOLDER, (run_id, lock_key(run_id))).fetchone()
    if row is None or row[0] is None:
        return None
    return {"pid": row[0], "host": row[1], "command": row[2], "since": row[3]}


def _session(con, key: int) -> str:
    """The lock's holder by its database session, when it did not record itself (an older studiox)."""
    row = con.execute(_HOLDER, ("", key)).fetchone()
    if row is None:
        return "another process"
    return f"the database session {row[4]} from {row[5] or 'this machine'} ({row[6] or 'studiox'})"


def _gone(holder: dict) -> bool:
    """True when ``holder`` ran on this machine and its process has ended (a zombie, not yet waited for
    by its parent, has ended too: its sockets are closed)."""
    if holder["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{int(holder['pid'])}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[:1] == ["Z"]
    except OSError:
        return False


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


def _error(url: str, e: Exception, doing: str | None = None) -> StoreError:
    """``e`` (psycopg's, or DBOS's when ``doing`` says what it was doing) as the studiox error a person reads."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    what = f"{doing} in the database" if doing else "use the database"
    return StoreError(f"cannot {what} {safe_url(url)}: {text}; check STUDIOX_DATABASE_URL")
