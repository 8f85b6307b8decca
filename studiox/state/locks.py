"""One driver per run: an advisory file lock that the operating system drops when its process dies.

A lock left by a process killed with ``kill -9`` is therefore free at once, and taking it over is
safe: no live process can still be appending to the run. The holder writes who it is (pid, host,
command) into the lock file, so a second driver is told whom to wait for; the PostgreSQL store's
lock (pgstore.py) records the same and words its refusal with :func:`held_message`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import RunLocked
from .folder import cannot_write


class RunLock:
    """Hold the lock of ``run_id`` for as long as this object is open."""

    def __init__(self, home: Path, run_id: str):
        self.path = Path(home) / "locks" / f"{run_id}.lock"
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # driving a run writes; a folder this process may not write is read-only
            raise cannot_write(self.path.parent.parent, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(self._held_message()) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(this_process()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _held_message(self) -> str:
        return held_message(self.run_id, _read_holder(self.path))


def this_process() -> dict:
    """Who this process is, as a lock's holder records it: pid, host, since when, the command line."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            "command": " ".join(["studiox", *sys.argv[1:]])[:200]}


def held_message(run_id: str, holder: dict | None, unnamed: str = "another process") -> str:
    """The refusal of a second driver, naming the holder (a :func:`this_process` record) when known."""
    who = f"process {holder['pid']} on {holder['host']} ('{holder['command']}')" if holder else unnamed
    return (f"run {run_id} is being driven by {who}; only one process may drive a run at a time — "
            "wait for it to finish or pause, or stop that process")


def _read_holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not {"pid", "host", "command"} <= holder.keys():
        return None
    return holder


def holder(home: Path, run_id: str) -> dict | None:
    """Who drives the run now (a :func:`this_process` record), or None when no live process does."""
    return _read_holder(Path(home) / "locks" / f"{run_id}.lock") if is_driven(home, run_id) else None


def is_driven(home: Path, run_id: str) -> bool:
    """True when a live process holds the run's lock."""
    path = Path(home) / "locks" / f"{run_id}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock if it was taken
    return False
