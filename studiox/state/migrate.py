"""Format 1 → 2: a state folder written by studiox 0.1 (two diskcache stores, ``journal/`` and
``index/``) becomes one SQLite database with index tables.

It happens on the first open by a process that may write the folder (or ``studiox migrate``),
under a lock, so two processes never migrate at once. Nothing old is deleted: ``journal/`` and
``index/`` are moved into ``format-1/`` once the marker says format 2, and can be removed by
hand. A migration cut off by kill -9 is redone from the start by the next open: until the marker
is rewritten, the folder is format 1 and the new database is a leftover.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StoreError
from . import folder
from .cache import TextOnlyDisk, open_cache
from .indexing import index_events, index_record

KEPT = "format-1"


def _entries(directory: Path) -> Iterator[tuple[str, str]]:
    """Every (key, text) of a format-1 diskcache store, read with the text-only rules."""
    db = directory / "cache.db"
    if not db.exists():
        return
    disk = TextOnlyDisk(str(directory))
    con = folder.connect_read_only(directory, db, "SELECT COUNT(*) FROM Cache")
    try:
        for key, raw, mode, filename, value in con.execute("SELECT key, raw, mode, filename, value FROM Cache"):
            yield disk.get(key, raw), disk.fetch(mode, filename, value, False)
    except sqlite3.DatabaseError as e:
        raise folder.corrupt(directory, e) from None
    finally:
        con.close()


def _decode(text: str, what: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"{what} is corrupt (not a JSON record), so the state folder cannot be migrated; it was "
                         "left untouched")
    return value


def migrate(home: Path, connect: Callable[[], sqlite3.Connection]) -> dict | None:
    """Migrate ``home``; what was done (``{"runs", "events", "kept"}``), or None when another process did it."""
    (home / "locks").mkdir(exist_ok=True)
    with open(home / "locks" / "migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if folder.marker_format(home / folder.MARKER) >= folder.FORMAT:
            return None
        for name in folder.DB_FILES:  # from a migration cut off before its marker
            (home / name).unlink(missing_ok=True)
        records = sorted((k, _decode(t, f"the record {k} in {home / 'index'}")) for k, t in _entries(home / "index"))
        runs: dict[str, list[dict]] = {}
        for key, text in _entries(home / "journal"):
            run_id, _, seq = key.rpartition(":")
            event = _decode(text, f"event {seq} of run {run_id} in {home / 'journal'}")
            runs.setdefault(run_id, []).append(event)
        con = connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            cache = None
            for key, record in records:
                if key.startswith("cache:"):
                    cache = cache or open_cache(home / "cache")
                    cache.set(key, _json(record))
                    continue
                con.execute("INSERT INTO records (key, body) VALUES (?, ?)", (key, _json(record)))
                index_record(con.execute, key, record)
            events = 0
            for run_id, found in runs.items():
                found.sort(key=lambda e: e.get("seq", 0))
                for event in found:
                    con.execute("INSERT INTO events (run, seq, type, at, body) VALUES (?, ?, ?, ?, ?)",
                                (run_id, event["seq"], event["type"], event["at"], _json(event)))
                index_events(con.execute, run_id, found)
                events += len(found)
            folder.test_kill("migration")
            con.execute("COMMIT")
            if cache is not None:
                cache.close()
        except (KeyError, TypeError) as e:
            con.execute("ROLLBACK")
            raise StoreError(f"the state folder {home} holds an event that is not as studiox 0.1 wrote it ({e}), so "
                             "it cannot be migrated; it was left untouched") from None
        finally:
            con.close()
        folder.write_marker(home / folder.MARKER, migrated_from=1)
        kept = home / KEPT
        for name in ("journal", "index"):
            if (home / name).exists():
                kept.mkdir(exist_ok=True)
                shutil.move(str(home / name), str(kept / name))
        os.sync()
    return {"runs": len(runs), "events": events, "kept": str(kept) if kept.exists() else None}


def _json(value: dict) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
