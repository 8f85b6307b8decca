"""The store: the journal, immutable records and the index tables, in one SQLite database.

Tables (``studiox.db`` in the state folder, WAL mode)::

    events     (run, seq) primary key → the event as JSON text; an insert that conflicts is the
               "slot taken" signal: a second writer of a run is refused, never overwrites
    records    key → JSON text, immutable, first writer wins (runs, decisions, claims, keys)
    runs       one row per run: mission, key, state, started, updated, verdict
    decisions  one row per decision: run, step, mission, key, state, requested, expires, decided

The index tables are written in the same transaction as the event or record that changes them,
so they never disagree with the journal; they exist so that listings read a page of rows in
time independent of how many runs are stored. Everything else is derived from the events.

Durability: ``synchronous=NORMAL`` in WAL mode: a committed event survives ``kill -9`` of studiox
at any moment, which is what resume relies on; an operating-system crash or power cut may lose
the last few commits. ``STUDIOX_SYNC=full`` switches to ``synchronous=FULL``: one fsync per
commit. ``STUDIOX_SYNC=off`` (``synchronous=OFF``) is for throwaway folders, such as those of
``studiox test``: a kill -9 still loses nothing, an operating-system crash may lose the folder.
Events that may wait (see ``Journal.note``) share the commit of the next one.

The SQL is kept portable (no upserts, no SQLite-only functions in queries), so a PostgreSQL
store can implement the same methods. Values are JSON text, never pickles.

A folder this process may not write (permissions, a read-only mount, ``chattr +i``) is opened
read-only: everything can be read, and any write is refused as "read-only", never as "corrupt".
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from .. import secrets
from ..errors import StoreError
from . import chain, folder
from .folder import DATABASE, MARKER, cannot_write, corrupt, read_only_error
from .indexing import FINISHED, index_events, index_record

__all__ = ["FINISHED", "MARKER", "Store", "cannot_write", "make_state_folder", "read_only_error", "unstorable"]

_SYNC = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    run TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, at REAL NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (run, seq));
CREATE TABLE IF NOT EXISTS records (key TEXT NOT NULL PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT NOT NULL PRIMARY KEY, mission TEXT NOT NULL, key TEXT, state TEXT NOT NULL,
    started REAL NOT NULL, updated REAL NOT NULL, verdict TEXT, head_seq INTEGER, head TEXT);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started, id);
CREATE INDEX IF NOT EXISTS runs_by_mission ON runs (mission, started);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, started);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, started);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT NOT NULL PRIMARY KEY, run TEXT NOT NULL, step TEXT, mission TEXT, key TEXT, state TEXT NOT NULL,
    requested REAL NOT NULL, expires REAL, decided REAL);
CREATE INDEX IF NOT EXISTS decisions_by_state ON decisions (state, requested);
CREATE INDEX IF NOT EXISTS decisions_by_run ON decisions (run);
"""


def unstorable(value, path: str = "") -> tuple[str, str] | None:
    """Where ``value`` holds something JSON text cannot (NaN, Infinity, text that is not valid Unicode),
    and what: ``(".a[1]", "NaN")``; None when it holds nothing of the kind."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: from bytes that were not UTF-8, or a JSON escape
            return path, f"text that is not valid Unicode (\\u{ord(value[e.start]):04x} at character {e.start + 1})"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable(key, path) or unstorable(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if found := unstorable(item, f"{path}[{index}]"):
                return found
    return None


def to_json(value, what: str, fix: str) -> str:
    """``value`` as JSON text, or a StoreError saying which part of it JSON cannot hold, then ``fix``."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode("utf-8")  # a lone surrogate passes json.dumps, then breaks SQLite's encoding
        return text
    except ValueError:  # (UnicodeEncodeError is one)
        path, problem = unstorable(value) or ("", "a value JSON cannot hold")
        where = f"its {path.lstrip('.')}" if path else "it"
        raise StoreError(f"{what} was not written: {where} is {problem}, which JSON — and so the state folder — "
                         f"cannot hold; {fix}") from None


def make_state_folder(home: Path) -> None:
    """Make ``home`` a state folder, as a first run would, when it is not one yet. On the postgres backend,
    where the runs are not in it, it still keeps what belongs to this machine (logs, the response cache,
    accounts, the notification ledger), and a folder studiox writes to is one it will open again."""
    if not (Path(home) / MARKER).is_file():
        store = Store.open(home, create=True)
        if store is not None:
            store.close()


def _after(prefix: str) -> str | None:
    """The least text greater than every text starting with ``prefix`` (None: no bound)."""
    while prefix and ord(prefix[-1]) >= 0x10FFFF:
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


class Store:
    """One state folder's database. Open it with :meth:`open`; it never rewrites what it did not write."""

    _taken: type[Exception] = sqlite3.IntegrityError  # what the database raises for a key already written

    def __init__(self, home: Path, con: sqlite3.Connection | None, read_only: str | None = None):
        self.home = home
        self._con = con  # None: a read-only folder whose creation stopped before the database
        self._lock = threading.Lock()  # one statement or transaction at a time on the connection
        self.read_only = read_only  # why this process may not write the folder; None when it may
        self._refusal = read_only_error(home, read_only) if read_only else None
        self._cache = None
        self.migrated: dict | None = None  # what a migration on opening did (see migrate.py)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, home: Path, *, create: bool) -> Store | None:
        """Open the folder; ``None`` when it does not exist (or was never finished) and ``create`` is false."""
        home = Path(home)
        sync = _SYNC.get(os.environ.get("STUDIOX_SYNC", "normal").lower())
        if sync is None:
            raise StoreError("STUDIOX_SYNC must be 'normal', 'full' or 'off'")
        try:
            return cls._open(home, create, sync)
        except OSError as e:  # what the operating system refuses about the folder itself
            where = f" ({e.filename})" if e.filename and str(e.filename) != str(home) else ""
            raise StoreError(f"cannot use the state folder {home}: {e.strerror or e}{where}; choose another with "
                             "--home or STUDIOX_HOME") from None

    @classmethod
    def _open(cls, home: Path, create: bool, sync: str) -> Store | None:
        marker = home / MARKER
        if not home.exists():
            if not create:
                return None
            cls._create(home, sync)
        elif not home.is_dir():
            raise StoreError(f"the state folder {home} is not a folder")
        elif not marker.exists():
            if not folder.unfinished(home):
                raise StoreError(f"{home} is not empty but has no {MARKER}, so it is not a studiox state folder; "
                                 "it was left untouched — choose another with --home or STUDIOX_HOME")
            if not create:
                return None  # empty, or a creation that was cut off: no runs yet
            cls._create(home, sync)
        reason = folder.unwritable(home)
        migrated = None
        if folder.marker_format(marker) < folder.FORMAT:
            from .migrate import migrate

            if reason is not None:
                raise StoreError(f"the state folder {home} was written by an older studiox (format 1) and must be "
                                 f"migrated before it is used, which needs write access ({reason}); run "
                                 f"'studiox migrate --home {home}' as a user who may write to it")
            migrated = migrate(home, lambda: cls._connect(home, sync))
        if reason is not None:
            db = home / DATABASE
            con = folder.connect_read_only(home, db, "SELECT COUNT(*) FROM events") if db.exists() else None
            return cls(home, con, read_only=reason)
        store = cls(home, cls._connect(home, sync))
        store.migrated = migrated
        return store

    @staticmethod
    def _connect(home: Path, sync: str) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(home / DATABASE, timeout=60, isolation_level=None, check_same_thread=False)
            for wait in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 1, 2, 5, None):
                try:  # switching to WAL and making the tables need the database to themselves: a process
                    con.execute("PRAGMA journal_mode = WAL")  # creating the folder at the same moment
                    if not _has_schema(con):  # makes SQLite answer 'locked' at once, not after a wait
                        con.executescript(SCHEMA)
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or wait is None:
                        raise
                    time.sleep(wait)
            con.execute(f"PRAGMA synchronous = {sync}")
            return con
        except sqlite3.OperationalError as e:
            if "readonly" in str(e) or "unable to open" in str(e):
                raise read_only_error(home, str(e)) from None
            raise corrupt(home, e) from None
        except sqlite3.DatabaseError as e:
            raise corrupt(home, e) from None

    @classmethod
    def _create(cls, home: Path, sync: str) -> None:
        """Make ``home`` a state folder. The marker comes last, so a creation cut off by kill -9 is never
        taken for a finished one; the next run finishes it (each stage may safely be done twice)."""
        folder.make_folder(home)
        folder.test_kill("folder")
        reason = folder.unwritable(home)
        if reason is not None:
            raise read_only_error(home, reason)
        cls._connect(home, sync).close()
        folder.test_kill("caches")
        folder.finish_creation(home)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
        if self._cache is not None:
            self._cache.close()

    @property
    def where(self) -> str:
        """Where the runs are, for messages: the state folder (the database, for PostgreSQL)."""
        return str(self.home)

    # ------------------------------------------------------------------ who drives a run

    def lock(self, run_id: str):
        """The lock a process holds while it drives ``run_id`` (a RunLock: use it in a with-block)."""
        from .locks import RunLock

        return RunLock(self.home, run_id)

    def driven(self, run_id: str) -> bool:
        """True when a live process holds the lock of ``run_id``."""
        from .locks import is_driven

        return is_driven(self.home, run_id)

    def holder(self, run_id: str) -> dict | None:
        """Who drives ``run_id`` now — ``pid``, ``host``, ``command``, ``since`` — or None when no process does
        (or the holder has not said who it is yet)."""
        from .locks import holder

        return holder(self.home, run_id)

    # ------------------------------------------------------------------ SQL

    def _rows(self, query: str, args: Iterable = ()) -> list[tuple]:
        if self._con is None:  # a read-only folder whose creation stopped before the database: nothing in it
            return []
        with self._lock:
            try:
                return self._con.execute(query, tuple(args)).fetchall()
            except sqlite3.DatabaseError as e:
                raise corrupt(self.home, e) from None

    def _snapshot(self, *queries: tuple[str, tuple]) -> list[list[tuple]]:
        """Several reads seen at one moment (one read transaction): a run being written meanwhile
        never shows its events from before a commit beside its index head from after it."""
        if self._con is None:
            return [[] for _ in queries]
        with self._lock:
            try:
                self._con.execute("BEGIN")
                try:
                    return [self._con.execute(query, args).fetchall() for query, args in queries]
                finally:
                    self._con.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                raise corrupt(self.home, e) from None

    @contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE … COMMIT: the write lock is taken first, so two writers never deadlock."""
        if self._refusal is not None:
            raise self._refusal
        assert self._con is not None
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con.execute
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if "readonly" in str(e):
                    raise read_only_error(self.home, str(e)) from None
                if "disk" in str(e) or "full" in str(e):
                    raise StoreError(f"cannot write to the state folder {self.home}: {e}") from None
                raise corrupt(self.home, e) from None
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as e:
                raise corrupt(self.home, e) from None

    def _decode(self, text: str, what: str) -> dict:
        try:
            value = json.loads(text)
        except ValueError:
            raise StoreError(f"{what} in {self.where} is corrupt (not JSON); nothing was changed") from None
        if not isinstance(value, dict):
            raise StoreError(f"{what} in {self.where} is corrupt (not a record); nothing was changed")
        return value

    # ------------------------------------------------------------------ journal

    def append(self, run_id: str, seq: int, event: dict) -> None:
        """Commit one event; it is on disk when this returns. A taken slot is an error, never overwritten."""
        self.append_all(run_id, [(seq, event)])

    def append_all(self, run_id: str, events: list[tuple[int, dict]], encoded: dict[int, str] | None = None) -> None:
        """Commit several events of one run in one transaction: all of them, or none. ``encoded``: the
        JSON text of some of them by seq, already made (a chained event is encoded once, when sealed)."""
        encoded = encoded or {}
        texts = [encoded.get(seq) or to_json(event, f"the {event.get('type', '?')} event of run {run_id}",
                                             "the run stopped here — fix where this value comes from, then start "
                                             "a new run")
                 for seq, event in events]
        rows = [(run_id, seq, event["type"], event["at"], text) for (seq, event), text in zip(events, texts, strict=True)]
        try:
            with self._transaction() as execute:
                self._insert_events(execute, rows)
                index_events(execute, run_id, [event for _, event in events])
        except self._taken:
            raise StoreError(f"event {events[0][0]} of run {run_id} was already written by another process; "
                             "this process stops driving the run") from None

    def _insert_events(self, execute, rows: list[tuple]) -> None:
        if len(rows) == 1:
            execute("INSERT INTO events (run, seq, type, at, body) VALUES (?, ?, ?, ?, ?)", rows[0])
        else:
            self._con.executemany(  # type: ignore[union-attr]
                "INSERT INTO events (run, seq, type, at, body) VALUES (?, ?, ?, ?, ?)", rows)

    def events(self, run_id: str, start: int = 1) -> list[dict]:
        """The run's events from ``start`` on, in order; a StoreError when one is missing or out of place
        (deleted, moved, or the journal cut short of what the runs index says), never a silent gap, or
        when a whole run read does not follow its hash chain (an event edited, inserted or swapped)."""
        rows, heads = self._snapshot(("SELECT seq, body FROM events WHERE run = ? AND seq >= ? ORDER BY seq",
                                      (run_id, start)), ("SELECT head_seq, head FROM runs WHERE id = ?", (run_id,)))
        events = []
        for expected, (seq, body) in enumerate(rows, start=start):
            event = self._decode(body, f"event {seq} of run {run_id}")
            if seq != expected:
                raise self._damaged(run_id, f"event {expected} is missing")
            if event.get("seq") != seq:
                raise self._damaged(run_id, f"event {seq} is out of order (it says it is event {event.get('seq')})")
            events.append(event)
        checkable = (chain.PLAIN, chain.KEYED if chain.audit_key() else None)
        if start == 1 and events and chain.kind_of(events[0]) in checkable:
            verdict = chain.links(run_id, events[0], [body for _, body in rows], None)  # edited, inserted, swapped
            if verdict.state == "tampered":
                raise self._damaged(run_id, verdict.problem or "its chain is broken")
        head = heads[0] if heads else None
        if head is not None and head[0] is not None and head[0] > start - 1 + len(rows):
            found = start - 1 + len(rows)
            raise self._damaged(run_id, f"it ends at event {found}, but event {head[0]} was written" if found else
                                "the run is in the index, but its journal is empty")
        return events

    def _damaged(self, run_id: str, what: str) -> StoreError:
        return StoreError(f"the journal of run {run_id} in {self.where} is damaged: {what}, so the run cannot be "
                          f"trusted; nothing was changed (see 'studiox audit verify {run_id}')")

    def run_head(self, run_id: str) -> tuple[int | None, str | None] | None:
        """Where the runs index says the run's journal ends: (seq, chain); None for a run it does not know."""
        rows = self._rows("SELECT head_seq, head FROM runs WHERE id = ?", (run_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def event_rows(self, run_id: str) -> list[tuple[int, str]]:
        """The run's events as stored, (seq, body text), for verification."""
        return self._rows("SELECT seq, body FROM events WHERE run = ? ORDER BY seq", (run_id,))

    def run_ids(self) -> list[str]:
        """Every run the index or the journal knows, oldest first."""
        return [r[0] for r in self._rows("SELECT id FROM runs UNION SELECT DISTINCT run FROM events ORDER BY 1")]

    def last_seq(self, run_id: str) -> int:
        """The number of the run's last event (0 if none)."""
        rows = self._rows("SELECT MAX(seq) FROM events WHERE run = ?", (run_id,))
        return rows[0][0] or 0 if rows else 0

    def event(self, run_id: str, seq: int) -> dict | None:
        rows = self._rows("SELECT body FROM events WHERE run = ? AND seq = ?", (run_id, seq))
        return self._decode(rows[0][0], f"event {seq} of run {run_id}") if rows else None

    def last_event(self, run_id: str) -> dict | None:
        rows = self._rows("SELECT seq, body FROM events WHERE run = ? ORDER BY seq DESC LIMIT 1", (run_id,))
        return self._decode(rows[0][1], f"event {rows[0][0]} of run {run_id}") if rows else None

    def journal_size(self) -> int:
        """Bytes the store takes on disk (database and WAL)."""
        return sum((self.home / f).stat().st_size for f in folder.DB_FILES if (self.home / f).exists())

    # ------------------------------------------------------------------ records

    def add_record(self, key: str, record: dict) -> bool:
        """Write an immutable record (any secret in it masked); False when the key is taken (the first writer wins)."""
        record = secrets.redact_value(record)
        text = to_json(record, f"the record {key}", "nothing was recorded — give a finite number, null or valid text")
        try:
            with self._transaction() as execute:
                execute("INSERT INTO records (key, body) VALUES (?, ?)", (key, text))
                index_record(execute, key, record)
        except self._taken:
            return False
        return True

    def record(self, key: str) -> dict | None:
        rows = self._rows("SELECT body FROM records WHERE key = ?", (key,))
        return self._decode(rows[0][0], key) if rows else None

    def records(self, prefix: str) -> list[tuple[str, dict]]:
        """Every record whose key starts with ``prefix``, in key order."""
        upper = _after(prefix)
        if upper is None:
            rows = self._rows("SELECT key, body FROM records WHERE key >= ? ORDER BY key", (prefix,))
        else:
            rows = self._rows("SELECT key, body FROM records WHERE key >= ? AND key < ? ORDER BY key", (prefix, upper))
        return [(key, self._decode(body, key)) for key, body in rows if key.startswith(prefix)]

    # ------------------------------------------------------------------ index tables

    def run_rows(self, *, states: tuple[str, ...] | None = None, mission: str | None = None, key: str | None = None,
                 since: float | None = None, before: tuple[float, str] | None = None, limit: int = 100) -> list[dict]:
        """Rows of the runs table, newest first: ``before`` is the (started, id) the previous page ended at."""
        names = ("id", "mission", "key", "state", "started", "updated", "verdict")
        where, args = _filters(mission, key, states, ("started", ">=", since), ("started", "<", before))
        query = f"SELECT {', '.join(names)} FROM runs{where} ORDER BY started DESC, id DESC LIMIT ?"
        return [dict(zip(names, row, strict=True)) for row in self._rows(query, (*args, limit))]

    def run_heads(self, *, updated_since: float | None = None) -> list[tuple[str, int, float]]:
        """(id, last seq, time of the last event) of every run whose last event was journaled at or
        after ``updated_since`` (every run: None): where to look for what happened since a last look."""
        where, args = ("", ()) if updated_since is None else (" WHERE updated >= ?", (updated_since,))
        return [(run_id, head or 0, updated) for run_id, head, updated
                in self._rows(f"SELECT id, head_seq, updated FROM runs{where}", args)]

    def count_runs(self) -> int:
        rows = self._rows("SELECT COUNT(*) FROM runs")
        return rows[0][0] if rows else 0

    def decision_rows(self, *, states: tuple[str, ...] | None = None, mission: str | None = None,
                      key: str | None = None, after: tuple[float, str] | None = None, limit: int = 100,
                      expires_by: float | None = None) -> list[dict]:
        """Rows of the decisions table, oldest first: ``after`` is the (requested, id) the previous page ended at;
        ``expires_by``: only those with a time limit that ends then or sooner."""
        names = ("id", "run", "state", "requested", "expires")
        where, args = _filters(mission, key, states, ("requested", ">", after), ("expires", "<=", expires_by))
        query = f"SELECT {', '.join(names)} FROM decisions{where} ORDER BY requested, id LIMIT ?"
        return [dict(zip(names, row, strict=True)) for row in self._rows(query, (*args, limit))]

    # ------------------------------------------------------------------ the model response cache

    def cached(self, key: str) -> dict | None:
        """A model reply kept in the response cache (diskcache: what it is made for), if any."""
        cache = self._response_cache()
        text = cache.get(key) if cache is not None else None
        return None if text is None else self._decode(text, f"the cached reply {key}")

    def cache(self, key: str, reply: dict) -> None:
        cache = self._response_cache()
        if cache is not None:
            cache.set(key, to_json(reply, "a model reply", "it was not cached"))

    def _response_cache(self):
        if self._cache is None and self.read_only is None:
            from .cache import open_cache

            self._cache = open_cache(self.home / "cache")
        return self._cache


def _filters(mission: str | None, key: str | None, states: tuple[str, ...] | None, *bounds) -> tuple[str, list]:
    """A WHERE clause (and its arguments) over an index table: equal mission and key, a state among
    ``states``, and ``(column, op, value)`` bounds — a number, or a page's (value, id) to go past."""
    where: list[str] = []
    args: list = []
    for column, value in (("mission", mission), ("key", key)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        args.extend(states)
    for column, op, value in bounds:
        if isinstance(value, tuple):  # keyset paging: past the last row of the page before
            where.append(f"({column} {op} ? OR ({column} = ? AND id {op} ?))")
            args.extend((value[0], value[0], value[1]))
        elif value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def _has_schema(con: sqlite3.Connection) -> bool:
    return bool(con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'").fetchall())
