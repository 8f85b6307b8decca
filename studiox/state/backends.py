"""Which store a process uses: the state folder's SQLite database (``local``, the default) or a
PostgreSQL database (``postgres``), chosen by ``--backend`` or ``STUDIOX_BACKEND``.

The postgres backend reads ``STUDIOX_DATABASE_URL`` (a libpq URL such as
``postgresql://studiox@db.example/studiox``); the state folder still holds what is local to a
machine (the model response cache).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from .store import Store, make_state_folder

BACKENDS = ("local", "postgres")


def backend_name(backend: str | None = None) -> str:
    """The backend asked for: ``backend``, else STUDIOX_BACKEND, else local."""
    name = (backend or os.environ.get("STUDIOX_BACKEND") or "local").strip().lower()
    if name not in BACKENDS:
        raise StoreError(f"unknown backend {name!r} — choose 'local' or 'postgres' (--backend or STUDIOX_BACKEND)")
    return name


def open_store(home: Path, *, create: bool, backend: str | None = None) -> Store | None:
    """The store of ``home`` in the chosen backend; None when a local folder does not exist and ``create``
    is false (a PostgreSQL database always answers: its tables are made when missing).

    On PostgreSQL, ``create`` still makes ``home`` a state folder (store.make_state_folder), for what
    belongs to this machine."""
    if backend_name(backend) == "local":
        return Store.open(home, create=create)
    url = os.environ.get("STUDIOX_DATABASE_URL", "").strip()
    if not url:
        raise StoreError("the postgres backend needs STUDIOX_DATABASE_URL (for example "
                         "postgresql://studiox@db.example:5432/studiox)")
    from .pgstore import PgStore

    if create:
        make_state_folder(Path(home))
    return PgStore.connect(Path(home), url)
