"""The state folder: diskcache stores holding JSON text only, with a format version.

Layout of ``STUDIOX_HOME`` (default ``./.studiox``)::

    studiox.json   {"format": 1, ...}: what wrote this folder; checked before anything is opened
    journal/       diskcache: one key per event, "RUN:SEQ" → the event as JSON text
    index/         diskcache: small immutable records (runs, decisions, cancel requests)
    locks/         one lock file per run being driven (fcntl locks die with their process)

Durability: SQLite in WAL mode with ``synchronous=NORMAL`` (diskcache's default). A committed
event survives ``kill -9`` of studiox at any moment, which is what resume relies on; an
operating-system crash or power cut may lose the last few events. ``STUDIOX_SYNC=full``
switches to ``synchronous=FULL``, which survives those too, at the cost of an fsync per event.

Values are never pickled: a pickle in a shared folder would run code when read, so the disk
class refuses to write or read anything but text.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from diskcache import Cache, Disk
from diskcache.core import MODE_RAW, MODE_TEXT, UNKNOWN

from .. import __version__
from ..errors import StoreError

FORMAT = 1
MARKER = "studiox.json"
_SYNC = {"normal": 1, "full": 2}


class _TextOnlyDisk(Disk):
    """diskcache serialisation that stores and reads text only: no pickle, either way."""

    def put(self, key):
        if type(key) is not str:
            raise TypeError("studiox store keys are text")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise StoreError(f"the state folder {self._directory} holds a pickled key; studiox never writes "
                             "one, so the folder was altered — refusing to read it")
        return super().get(key, raw)

    def store(self, value, read, key=UNKNOWN):
        if type(value) is not str:
            raise TypeError("studiox stores JSON text only")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode not in (MODE_RAW, MODE_TEXT):
            raise StoreError(f"the state folder {self._directory} holds a value that is not JSON text (a pickle?); "
                             "studiox never writes one, so the folder was altered — refusing to read it")
        return super().fetch(mode, filename, value, read)


def _open_cache(directory: Path, sync: int) -> Cache:
    try:
        return Cache(str(directory), disk=_TextOnlyDisk, eviction_policy="none", size_limit=2**62,
                     cull_limit=0, sqlite_synchronous=sync, statistics=0, tag_index=0)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"the state folder {directory} is corrupt ({e}); it was left untouched — move it "
                         "aside to start afresh, or restore it from a backup") from None
    except OSError as e:
        raise StoreError(f"cannot open the state folder {directory}: {e.strerror or e}") from None


class Store:
    """One state folder. Open it with :meth:`open`; it never rewrites what it did not write."""

    def __init__(self, home: Path, journal: Cache, index: Cache):
        self.home = home
        self._journal = journal
        self._index = index

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, home: Path, *, create: bool) -> Store | None:
        """Open the folder; ``None`` when it does not exist and ``create`` is false."""
        home = Path(home)
        marker = home / MARKER
        if not home.exists():
            if not create:
                return None
            home.mkdir(parents=True)
        if not home.is_dir():
            raise StoreError(f"the state folder {home} is not a folder")
        if marker.exists():
            cls._check_marker(marker)
        elif any(home.iterdir()):
            raise StoreError(f"{home} is not empty but has no {MARKER}, so it is not a studiox state folder; "
                             "it was left untouched — choose another with --home or STUDIOX_HOME")
        elif not create:
            return None
        else:
            cls._write_marker(marker)
        sync = _SYNC.get(os.environ.get("STUDIOX_SYNC", "normal").lower())
        if sync is None:
            raise StoreError("STUDIOX_SYNC must be 'normal' or 'full'")
        return cls(home, _open_cache(home / "journal", sync), _open_cache(home / "index", sync))

    @staticmethod
    def _check_marker(marker: Path) -> None:
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            version = int(info["format"])
        except PermissionError:
            raise StoreError(f"cannot read {marker}: permission denied") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise StoreError(f"{marker} is corrupt, so the state folder cannot be trusted; it was left "
                             "untouched — restore it from a backup or move the folder aside") from None
        if version > FORMAT:
            raise StoreError(f"the state folder {marker.parent} was written by a newer studiox (format {version}; "
                             f"this is studiox {__version__}, format {FORMAT}); upgrade studiox to use it")

    @staticmethod
    def _write_marker(marker: Path) -> None:
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "created_by": f"studiox {__version__}"}) + "\n")
        os.replace(tmp, marker)

    def close(self) -> None:
        self._journal.close()
        self._index.close()

    # ------------------------------------------------------------------ journal

    def append(self, run_id: str, seq: int, event: dict) -> None:
        """Commit one event; it is on disk when this returns. A taken slot is an error, never overwritten."""
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        if not self._journal.add(f"{run_id}:{seq:09d}", text, retry=True):
            raise StoreError(f"event {seq} of run {run_id} was already written by another process; "
                             "this process stops driving the run")

    def events(self, run_id: str, start: int = 1) -> list[dict]:
        """The run's events from ``start`` on, in order."""
        result = []
        seq = start
        while (text := self._journal.get(f"{run_id}:{seq:09d}", retry=True)) is not None:
            result.append(self._decode(text, f"event {seq} of run {run_id}"))
            seq += 1
        return result

    def last_seq(self, run_id: str) -> int:
        """The number of the run's last event (0 if none), found in O(log n) reads."""
        def has(n: int) -> bool:
            return f"{run_id}:{n:09d}" in self._journal

        if not has(1):
            return 0
        hi = 1
        while has(hi * 2):
            hi *= 2
        lo, hi = hi, hi * 2  # has(lo) and not has(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if has(mid) else (lo, mid)
        return lo

    def event(self, run_id: str, seq: int) -> dict | None:
        text = self._journal.get(f"{run_id}:{seq:09d}", retry=True)
        return None if text is None else self._decode(text, f"event {seq} of run {run_id}")

    def journal_size(self) -> int:
        """Bytes the journal takes on disk (database, WAL and value files)."""
        return sum(p.stat().st_size for p in (self.home / "journal").rglob("*") if p.is_file())

    # ------------------------------------------------------------------ index

    def add_record(self, key: str, record: dict) -> bool:
        """Write an immutable record; False when the key is taken (the first writer wins)."""
        return self._index.add(key, json.dumps(record, ensure_ascii=False), retry=True)

    def record(self, key: str) -> dict | None:
        text = self._index.get(key, retry=True)
        return None if text is None else self._decode(text, key)

    def records(self, prefix: str) -> list[tuple[str, dict]]:
        """Every record whose key starts with ``prefix``, in key order."""
        keys = sorted(k for k in self._index.iterkeys() if k.startswith(prefix))
        return [(k, rec) for k in keys if (rec := self.record(k)) is not None]

    def _decode(self, text: str, what: str) -> dict:
        try:
            value = json.loads(text)
        except ValueError:
            raise StoreError(f"{what} in {self.home} is corrupt (not JSON); the folder was left untouched") from None
        if not isinstance(value, dict):
            raise StoreError(f"{what} in {self.home} is corrupt (not a record); the folder was left untouched")
        return value
