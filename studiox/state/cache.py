"""The model response cache: diskcache, used for what it is made for, holding JSON text only.

Values are never pickled: a pickle in a shared folder would run code when read, so the disk
class refuses to write or read anything but text. (Format-1 state folders kept their whole
journal in diskcache stores; migrate.py reads them with the same rules.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from diskcache import Cache, Disk
from diskcache.core import MODE_RAW, MODE_TEXT, UNKNOWN

from ..errors import StoreError
from .folder import corrupt


class TextOnlyDisk(Disk):
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


def open_cache(directory: Path) -> Cache:
    """The response cache in ``directory`` (1 GB at most; the least recently stored replies go first)."""
    try:
        return Cache(str(directory), disk=TextOnlyDisk, size_limit=2**30, statistics=0, tag_index=0)
    except sqlite3.DatabaseError as e:
        raise corrupt(directory, e) from None
    except OSError as e:
        raise StoreError(f"cannot open the response cache {directory}: {e.strerror or e}") from None
