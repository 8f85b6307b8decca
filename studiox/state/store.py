"""The state folder: diskcache stores holding JSON text only, with a format version.

Layout of ``STUDIOX_HOME`` (default ``./.studiox``)::

    studiox.json   {"format": 1, ...}: what wrote this folder; checked before anything is opened.
                   Written last when the folder is created, so a folder with it is complete; a
                   folder holding only what an interrupted creation leaves is finished by the next run
    journal/       diskcache: one key per event, "RUN:SEQ" → the event as JSON text
    index/         diskcache: small immutable records (runs, decisions, cancel requests)
    locks/         one lock file per run being driven (fcntl locks die with their process)

Durability: SQLite in WAL mode with ``synchronous=NORMAL`` (diskcache's default). A committed
event survives ``kill -9`` of studiox at any moment, which is what resume relies on; an
operating-system crash or power cut may lose the last few events. ``STUDIOX_SYNC=full``
switches to ``synchronous=FULL``, which survives those too, at the cost of an fsync per event.

Values are never pickled: a pickle in a shared folder would run code when read, so the disk
class refuses to write or read anything but text.

A folder this process may not write (permissions, a read-only mount, ``chattr +i``) is opened
read-only: everything can be read, and any write is refused as "read-only", never as "corrupt".
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from diskcache import Cache, Disk
from diskcache.core import MODE_RAW, MODE_TEXT, UNKNOWN

from .. import __version__
from ..errors import StoreError

FORMAT = 1
MARKER = "studiox.json"
_SYNC = {"normal": 1, "full": 2}
_MARKER_TMP = "studiox.tmp"  # the marker before its rename; "studiox.tmp.*" since each writer has its own
_DB_FILES = {"cache.db", "cache.db-wal", "cache.db-shm", "cache.db-journal"}  # what diskcache sets up first


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


def _json(value, what: str, fix: str, compact: bool = False) -> str:
    """``value`` as JSON text, or a StoreError saying which part of it JSON cannot hold, then ``fix``."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":") if compact else None)
        text.encode("utf-8")  # a lone surrogate passes json.dumps, then breaks SQLite's encoding
        return text
    except ValueError:  # (UnicodeEncodeError is one)
        path, problem = unstorable(value) or ("", "a value JSON cannot hold")
        where = f"its {path.lstrip('.')}" if path else "it"
        raise StoreError(f"{what} was not written: {where} is {problem}, which JSON — and so the state folder — "
                         f"cannot hold; {fix}") from None


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
        raise _corrupt(directory, e) from None
    except OSError as e:
        raise StoreError(f"cannot open the state folder {directory}: {e.strerror or e}") from None


def _corrupt(directory: Path, e: Exception) -> StoreError:
    return StoreError(f"the state folder {directory} is corrupt ({e}); it was left untouched — move it "
                      "aside to start afresh, or restore it from a backup")


def read_only_error(home: Path, reason: str) -> StoreError:
    """What a command that would write says about a state folder it may not write."""
    return StoreError(f"the state folder {home} is read-only ({reason}): its runs and decisions can be read, "
                      "but not started, resumed, decided or cancelled — run this as a user who may write to it, "
                      "or copy the folder and use the copy with --home")


def cannot_write(home: Path, e: OSError) -> StoreError:
    """What a failed write into the state folder ``home`` means for a person."""
    if e.errno == errno.EROFS:
        return read_only_error(home, "it is on a read-only file system")
    if e.errno in (errno.EACCES, errno.EPERM):
        return read_only_error(home, f"no write access to {e.filename or home}")
    return StoreError(f"cannot write to the state folder {home}: {e.strerror or e}"
                      + (f" ({e.filename})" if e.filename else ""))


def _unwritable(home: Path) -> str | None:
    """Why this process may not write the state folder, or None when it may."""
    if os.statvfs(home).f_flag & os.ST_RDONLY:
        return "it is on a read-only file system"
    paths = [home]
    for name in ("journal", "index", "locks"):
        folder = home / name
        if folder.is_dir():
            paths.append(folder)
            paths.extend(folder / f for f in sorted(_DB_FILES) if (folder / f).exists())
    for path in paths:
        if not os.access(path, os.W_OK):
            return f"no write access to {path}"
    return None


class _ReadOnlyCache:
    """The reading half of a diskcache store, over a database opened read-only: nothing is written.

    diskcache's own Cache writes its settings whenever it opens, so it cannot open a folder that may
    not be written; this reads the same table with the same text-only rules.
    """

    def __init__(self, directory: Path, refusal: StoreError):
        self._directory = directory
        self._disk = _TextOnlyDisk(str(directory))
        self._refusal = refusal
        db = directory / "cache.db"
        self._con = _connect_read_only(directory, db) if db.exists() else None

    def _rows(self, query: str, args: tuple = ()) -> list:
        if self._con is None:  # a folder whose creation stopped before this database: nothing in it
            return []
        try:
            return self._con.execute(query, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise _corrupt(self._directory, e) from None

    def get(self, key: str, retry: bool = True):
        db_key, raw = self._disk.put(key)
        rows = self._rows("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ?", (db_key, raw))
        if not rows:
            return None
        mode, filename, value = rows[0]
        return self._disk.fetch(mode, filename, value, False)

    def __contains__(self, key: str) -> bool:
        db_key, raw = self._disk.put(key)
        return bool(self._rows("SELECT 1 FROM Cache WHERE key = ? AND raw = ?", (db_key, raw)))

    def iterkeys(self) -> Iterator[str]:
        for key, raw in self._rows("SELECT key, raw FROM Cache ORDER BY key"):
            yield self._disk.get(key, raw)

    def add(self, key: str, value: str, retry: bool = True) -> bool:
        raise self._refusal

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


def _connect_read_only(directory: Path, db: Path) -> sqlite3.Connection:
    """Open ``db`` without writing a byte: read-only, else immutable when SQLite cannot even do that.

    A WAL database opens read-only only where its -wal and -shm files exist (its last writer was
    killed) or can be created. In a folder that may not be written, after a clean close, neither
    holds — and then nothing lives outside the main file, so reading it as immutable is exact.
    """
    uri = "file:" + urllib.parse.quote(str(db.resolve()))
    try:
        con = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=60, isolation_level=None)
        try:
            con.execute("SELECT COUNT(*) FROM Cache").fetchone()
            return con
        except sqlite3.OperationalError:
            con.close()
        wal = db.with_name(db.name + "-wal")
        if wal.exists() and wal.stat().st_size:
            raise StoreError(f"the state folder {directory.parent} is read-only, and its latest writes are still in "
                             f"{wal}, which only a user who may write to the folder can read; run this as such a user")
        con = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None)
        con.execute("SELECT COUNT(*) FROM Cache").fetchone()
        return con
    except sqlite3.DatabaseError as e:
        raise _corrupt(directory, e) from None


def _unfinished(home: Path) -> bool:
    """True when ``home`` holds nothing, or only what an interrupted creation of a state folder leaves."""
    for entry in home.iterdir():
        if entry.is_symlink():
            return False
        if entry.name == _MARKER_TMP or entry.name.startswith(_MARKER_TMP + "."):
            if entry.is_file():
                continue
            return False
        if entry.name in ("journal", "index") and entry.is_dir():
            if all(f.name in _DB_FILES and f.is_file() and not f.is_symlink() for f in entry.iterdir()):
                continue
        if entry.name == "logs" and entry.is_dir() and all(f.name == "crash.log" for f in entry.iterdir()):
            continue  # a crash before the first run leaves its log here
        return False
    return True


def _writer_alive(leftover: Path) -> bool:
    """Whether the process that wrote ``studiox.tmp.PID.XXXX`` still lives (and is not this one)."""
    parts = leftover.name.split(".")
    if len(parts) < 4 or not parts[2].isdigit() or int(parts[2]) == os.getpid():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def _blocker(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path``, when it is in the way: not a folder."""
    for parent in path.parents:
        if os.path.lexists(parent):
            return None if parent.is_dir() else parent
    return None


def _test_kill(stage: str) -> None:
    """Test door: die at a stage of creating a state folder (see tests/test_state_folder.py)."""
    if os.environ.get("STUDIOX_TEST_KILL_DURING_CREATE") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


class Store:
    """One state folder. Open it with :meth:`open`; it never rewrites what it did not write."""

    def __init__(self, home: Path, journal: Cache | _ReadOnlyCache, index: Cache | _ReadOnlyCache,
                 read_only: str | None = None):
        self.home = home
        self._journal = journal
        self._index = index
        self.read_only = read_only  # why this process may not write the folder; None when it may

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, home: Path, *, create: bool) -> Store | None:
        """Open the folder; ``None`` when it does not exist (or was never finished) and ``create`` is false."""
        home = Path(home)
        sync = _SYNC.get(os.environ.get("STUDIOX_SYNC", "normal").lower())
        if sync is None:
            raise StoreError("STUDIOX_SYNC must be 'normal' or 'full'")
        try:
            return cls._open(home, create, sync)
        except OSError as e:  # what the operating system refuses about the folder itself
            where = f" ({e.filename})" if e.filename and str(e.filename) != str(home) else ""
            raise StoreError(f"cannot use the state folder {home}: {e.strerror or e}{where}; choose another with "
                             "--home or STUDIOX_HOME") from None

    @classmethod
    def _open(cls, home: Path, create: bool, sync: int) -> Store | None:
        marker = home / MARKER
        if not home.exists():
            if not create:
                return None
            cls._create(home, sync)
        elif not home.is_dir():
            raise StoreError(f"the state folder {home} is not a folder")
        elif not marker.exists():
            if not _unfinished(home):
                raise StoreError(f"{home} is not empty but has no {MARKER}, so it is not a studiox state folder; "
                                 "it was left untouched — choose another with --home or STUDIOX_HOME")
            if not create:
                return None  # empty, or a creation that was cut off: no runs yet
            cls._create(home, sync)
        cls._check_marker(marker)
        reason = _unwritable(home)
        if reason is not None:
            refusal = read_only_error(home, reason)
            return cls(home, _ReadOnlyCache(home / "journal", refusal), _ReadOnlyCache(home / "index", refusal),
                       read_only=reason)
        return cls(home, _open_cache(home / "journal", sync), _open_cache(home / "index", sync))

    @classmethod
    def _create(cls, home: Path, sync: int) -> None:
        """Make ``home`` a state folder. The marker comes last, so a creation cut off by kill -9 is never
        taken for a finished one; the next run finishes it (each stage may safely be done twice)."""
        try:
            home.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = _blocker(home) or home
            raise StoreError(f"cannot create the state folder {home}: {blocker} is a file, not a folder; choose "
                             "another with --home or STUDIOX_HOME") from None
        _test_kill("folder")
        reason = _unwritable(home)
        if reason is not None:
            raise read_only_error(home, reason)
        for name in ("journal", "index"):
            _open_cache(home / name, sync).close()
        _test_kill("caches")
        cls._write_marker(home / MARKER)
        for leftover in home.glob(_MARKER_TMP + "*"):  # from creations cut off before their rename
            if not _writer_alive(leftover):  # another process creating the folder now is left alone
                leftover.unlink(missing_ok=True)

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
        fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=f"{_MARKER_TMP}.{os.getpid()}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"format": FORMAT, "created_by": f"studiox {__version__}"}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; whoever may read the folder reads the marker too
        _test_kill("marker")
        try:
            os.replace(tmp, marker)
        except FileNotFoundError:  # a process creating the folder at the same moment wrote the same
            if not marker.exists():  # marker and cleared ours away as a leftover
                raise

    def close(self) -> None:
        self._journal.close()
        self._index.close()

    # ------------------------------------------------------------------ journal

    def append(self, run_id: str, seq: int, event: dict) -> None:
        """Commit one event; it is on disk when this returns. A taken slot is an error, never overwritten."""
        text = _json(event, f"the {event.get('type', '?')} event of run {run_id}",
                     "the run stopped here — fix where this value comes from, then start a new run", compact=True)
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
        text = _json(record, f"the record {key}", "nothing was recorded — give a finite number, null or valid text")
        return self._index.add(key, text, retry=True)

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
