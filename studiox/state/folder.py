"""The state folder as a thing on disk: creating it so that kill -9 never leaves a half-made one,
its format marker, and whether this process may write it.

Layout of ``STUDIOX_HOME`` (default ``./.studiox``)::

    studiox.json   {"format": 2, ...}: what wrote this folder; checked before anything is opened.
                   Written last when the folder is created, so a folder with it is complete; a
                   folder holding only what an interrupted creation leaves is finished by the next run
    studiox.db     SQLite (WAL): the journal (events), immutable records, and the runs and
                   decisions index tables (see store.py)
    users.db       SQLite (WAL, mode 0600): the portal's accounts (see users.py), made by the first
                   'studiox users add'; not the run store, since an account changes
    cache/         diskcache: the model response cache (JSON text only), made on first use
    locks/         one lock file per run being driven (fcntl locks die with their process)
    logs/          crash reports

A format-1 folder (diskcache ``journal/`` and ``index/``, studiox 0.1) is migrated on first
open by a process that may write it (see migrate.py), or refused with the command that does it.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

from .. import __version__
from ..errors import StoreError

FORMAT = 2
MARKER = "studiox.json"
DATABASE = "studiox.db"
MARKER_TMP = "studiox.tmp"  # the marker before its rename; "studiox.tmp.*" since each writer has its own
DB_FILES = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal"}
OLD_DB_FILES = {"cache.db", "cache.db-wal", "cache.db-shm", "cache.db-journal"}  # format 1 (diskcache)


def corrupt(where: Path, e: Exception) -> StoreError:
    return StoreError(f"the state folder {where} is corrupt ({e}); it was left untouched — move it "
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


def unwritable(home: Path) -> str | None:
    """Why this process may not write the state folder, or None when it may."""
    if os.statvfs(home).f_flag & os.ST_RDONLY:
        return "it is on a read-only file system"
    paths = [home, *(home / f for f in sorted(DB_FILES) if (home / f).exists())]
    for name in ("journal", "index", "locks", "cache"):
        folder = home / name
        if folder.is_dir():
            paths.append(folder)
            paths.extend(folder / f for f in sorted(OLD_DB_FILES) if (folder / f).exists())
    for path in paths:
        if not os.access(path, os.W_OK):
            return f"no write access to {path}"
    return None


def connect_read_only(where: Path, db: Path, probe: str) -> sqlite3.Connection:
    """Open ``db`` without writing a byte: read-only, else immutable when SQLite cannot even do that.

    A WAL database opens read-only only where its -wal and -shm files exist (its last writer was
    killed) or can be created. In a folder that may not be written, after a clean close, neither
    holds — and then nothing lives outside the main file, so reading it as immutable is exact.
    ``probe`` is a query that must work on the database.
    """
    uri = "file:" + urllib.parse.quote(str(db.resolve()))
    try:
        con = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            con.execute(probe).fetchone()
            return con
        except sqlite3.OperationalError:
            con.close()
        wal = db.with_name(db.name + "-wal")
        if wal.exists() and wal.stat().st_size:
            raise StoreError(f"the state folder {where} is read-only, and its latest writes are still in "
                             f"{wal}, which only a user who may write to the folder can read; run this as such a user")
        con = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        con.execute(probe).fetchone()
        return con
    except sqlite3.DatabaseError as e:
        raise corrupt(where, e) from None


def unfinished(home: Path) -> bool:
    """True when ``home`` holds nothing, or only what an interrupted creation of a state folder leaves."""
    for entry in home.iterdir():
        if entry.is_symlink():
            return False
        if entry.name == MARKER_TMP or entry.name.startswith(MARKER_TMP + "."):
            if entry.is_file():
                continue
            return False
        if entry.name in DB_FILES and entry.is_file():
            continue
        if entry.name in ("journal", "index") and entry.is_dir():  # what a format-1 creation left
            if all(f.name in OLD_DB_FILES and f.is_file() and not f.is_symlink() for f in entry.iterdir()):
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


def blocker(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path``, when it is in the way: not a folder."""
    for parent in path.parents:
        if os.path.lexists(parent):
            return None if parent.is_dir() else parent
    return None


def test_kill(stage: str) -> None:
    """Test door: die at a stage of creating a state folder (see tests/test_state_folder.py)."""
    if os.environ.get("STUDIOX_TEST_KILL_DURING_CREATE") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def make_folder(home: Path) -> None:
    """The folder itself, or a StoreError naming what is in the way."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        found = blocker(home) or home
        raise StoreError(f"cannot create the state folder {home}: {found} is a file, not a folder; choose "
                         "another with --home or STUDIOX_HOME") from None


def finish_creation(home: Path) -> None:
    """Write the marker (last), then clear the leftovers of creations cut off before their rename."""
    write_marker(home / MARKER)
    for leftover in home.glob(MARKER_TMP + "*"):
        if not _writer_alive(leftover):  # another process creating the folder now is left alone
            leftover.unlink(missing_ok=True)


def marker_format(marker: Path) -> int:
    """The format the marker names; a StoreError when it is unreadable or newer than this studiox."""
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
    return version


def write_marker(marker: Path, **extra) -> None:
    """Replace the marker atomically (write, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=f"{MARKER_TMP}.{os.getpid()}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": FORMAT, "created_by": f"studiox {__version__}", **extra}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes it private; whoever may read the folder reads the marker too
    test_kill("marker")
    try:
        os.replace(tmp, marker)
    except FileNotFoundError:  # a process creating the folder at the same moment wrote the same
        if not marker.exists():  # marker and cleared ours away as a leftover
            raise
