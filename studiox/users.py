"""People and roles for the portal: accounts kept in the state folder's ``users.db``.

Roles are ordered, each allowing what the one below it does and more: a ``viewer`` sees runs
and decisions, a ``starter`` also starts runs, an ``approver`` also decides, an ``admin`` also
manages accounts. ``allows(role, needed)`` is the one check.

``users.db`` is its own SQLite file (WAL), not the run store, whose records are immutable: an
account changes. It is created readable by its owner only (0600), and holds no password, only
a self-describing scrypt hash (``scrypt$N$r$p$SALT$KEY``, base64), so the cost can be raised
later without breaking the hashes already stored. Tables::

    users    name primary key, role, password (the hash), created, changed (Unix time),
             session_epoch: bumped when the password or the role changes, so the portal can end
             the sessions it issued under an older epoch
    removed  name primary key, session_epoch, removed: the epoch a removed account reached, so
             the same name added again starts above it and an old session never fits it

``verify`` spends one hash computation whether or not the name exists, so its timing does not
tell which names are accounts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import sqlite3
import stat
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError, UsageError, suggest
from .state import folder

__all__ = ["DATABASE", "ROLES", "User", "add", "allows", "check_new", "get", "hash_password", "list_users",
           "need", "password_matches", "remove", "set_password", "set_role", "verify"]

ROLES = ("viewer", "starter", "approver", "admin")  # each allows what the ones before it do
DATABASE = "users.db"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 64
# a hash read from the file may not ask for more than this: an edited users.db must not exhaust memory
MAX_N, MAX_R, MAX_P = 2**20, 32, 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT NOT NULL PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL,
    created REAL NOT NULL, changed REAL NOT NULL, session_epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS removed (
    name TEXT NOT NULL PRIMARY KEY, session_epoch INTEGER NOT NULL, removed REAL NOT NULL);
"""


@dataclass(frozen=True)
class User:
    """An account as the portal and the CLI see it; it never carries the password's hash."""

    name: str
    role: str
    created: float  # Unix time
    session_epoch: int

    def allows(self, needed: str) -> bool:
        return allows(self.role, needed)


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may; an unknown ``role`` (an edited file) allows nothing."""
    if needed not in ROLES:
        raise ValueError(f"unknown role {needed!r}; the roles are {', '.join(ROLES)}")
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


# ---------------------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$SALT$KEY``: the password's scrypt hash with a fresh random salt."""
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def password_matches(password: str, stored: str | None) -> bool:
    """Whether ``password`` hashes to ``stored``. Without a usable ``stored`` hash (no such account,
    or an unreadable hash), a hash is computed all the same, so the answer takes as long."""
    parsed = _parse(stored) if stored else None
    if parsed is None:
        _scrypt(password, os.urandom(SALT_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
        return False
    n, r, p, salt, key = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(key)), key)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # NFC: the same password typed on two systems (composed or decomposed accents) is the same bytes
    secret = unicodedata.normalize("NFC", password).encode("utf-8", "surrogatepass")
    memory = 128 * r * (n + p + 2) + 2**20  # what OpenSSL needs for these parameters, and some room
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=memory)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """The parameters, salt and key of a stored hash; None when it is not one this studiox can check."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    if not (1 < n <= MAX_N and n & (n - 1) == 0 and 0 < r <= MAX_R and 0 < p <= MAX_P):
        return None
    try:
        salt, key = (base64.b64decode(x, validate=True) for x in parts[4:])
    except (binascii.Error, ValueError):
        return None
    return (n, r, p, salt, key) if salt and 16 <= len(key) <= 256 else None


def _password_rules(password: str) -> None:
    length = len(unicodedata.normalize("NFC", password))
    if length < MIN_PASSWORD:
        raise UsageError(f"the password is too short ({length} characters): use at least {MIN_PASSWORD}")
    if length > MAX_PASSWORD:
        raise UsageError(f"the password is too long ({length} characters): use at most {MAX_PASSWORD}")


# ---------------------------------------------------------------------------- names and roles


def _name_rules(name: str) -> None:
    if not NAME.fullmatch(name):
        raise UsageError(f"'{name}' cannot be a user name: use 1 to 64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or a digit")


def _role_rules(role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role '{role}'{suggest(role, ROLES)} (the roles: {', '.join(ROLES)})")


# ---------------------------------------------------------------------------- the file


def _corrupt(db: Path, e: Exception) -> StoreError:
    return StoreError(f"the accounts file {db} is corrupt ({e}); it was left untouched — restore it from a "
                      "backup, or move it aside to start with no accounts")


def _read_only(home: Path, reason: str) -> StoreError:
    return StoreError(f"the state folder {home} is read-only ({reason}): its accounts can be listed but not "
                      "changed — run this as a user who may write to it")


@contextmanager
def _reading(home: Path) -> Iterator[sqlite3.Connection | None]:
    """A connection to read the accounts with; None when there are none yet (nothing is created)."""
    db = Path(home) / DATABASE
    if not db.is_file():
        yield None
        return
    if not os.access(db, os.R_OK):
        raise StoreError(f"cannot read the accounts in {db}: permission denied — run this as the user who "
                         "owns the state folder")
    try:
        if os.access(db, os.W_OK) and os.access(db.parent, os.W_OK):
            con = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
        else:  # a WAL database opens read-only only with care (see state/folder.py)
            con = folder.connect_read_only(Path(home), db, "SELECT COUNT(*) FROM sqlite_master")
    except sqlite3.DatabaseError as e:
        raise _corrupt(db, e) from None
    try:
        yield con
    finally:
        con.close()


def _rows(home: Path, query: str, args: tuple = ()) -> list[tuple]:
    with _reading(home) as con:
        if con is None:
            return []
        try:
            return con.execute(query, args).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # made, but cut off before its tables: no accounts yet
                return []
            raise _corrupt(Path(home) / DATABASE, e) from None
        except sqlite3.DatabaseError as e:
            raise _corrupt(Path(home) / DATABASE, e) from None


def _private(db: Path) -> None:
    """Create ``db`` readable and writable by its owner only, before SQLite first opens it (SQLite gives
    its -wal and -shm files the same mode); a copy restored with a wider mode is narrowed again."""
    try:
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                path.chmod(0o600)
        except FileNotFoundError:
            pass


@contextmanager
def _writing(home: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction on the accounts (BEGIN IMMEDIATE … COMMIT), making the state folder and
    ``users.db`` first when they do not exist yet."""
    from .state.store import Store

    home = Path(home)
    store = Store.open(home, create=True)  # a state folder as a run makes it: marker last
    assert store is not None
    reason = store.read_only
    store.close()
    if reason is not None:
        raise _read_only(home, reason)
    db = home / DATABASE
    try:
        _private(db)
    except OSError as e:
        raise folder.cannot_write(home, e) from None
    try:
        con = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
    except sqlite3.DatabaseError as e:
        raise _read_only(home, str(e)) from None
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")  # an account change said to be done is on disk
        con.execute("PRAGMA secure_delete = ON")  # a replaced hash is overwritten, not left in a free page
        con.executescript(SCHEMA)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    except sqlite3.OperationalError as e:
        if "readonly" in str(e) or "unable to open" in str(e):
            raise _read_only(home, str(e)) from None
        raise _corrupt(db, e) from None
    except sqlite3.DatabaseError as e:
        raise _corrupt(db, e) from None
    finally:
        con.close()


_COLUMNS = "name, role, created, session_epoch"


def _user(row: tuple) -> User:
    return User(name=row[0], role=row[1], created=row[2], session_epoch=row[3])


def _names(con: sqlite3.Connection) -> list[str]:
    return [row[0] for row in con.execute("SELECT name FROM users")]


def _unknown(home: Path, name: str, names: list[str]) -> UsageError:
    return UsageError(f"there is no user '{name}' in {home}{suggest(name, names)} "
                      "(see them with: studiox users list)")


def _locked_row(con: sqlite3.Connection, home: Path, name: str) -> tuple:
    row = con.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _unknown(home, name, _names(con))
    return row


# ---------------------------------------------------------------------------- the accounts


def get(home: Path, name: str) -> User | None:
    """The account called ``name``, or None."""
    rows = _rows(home, f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,))
    return _user(rows[0]) if rows else None


def list_users(home: Path) -> list[User]:
    """Every account, by name."""
    return [_user(row) for row in _rows(home, f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def need(home: Path, name: str) -> User:
    """The account called ``name``; a UsageError (with a did-you-mean) when there is none."""
    found = get(home, name)
    if found is None:
        raise _unknown(home, name, [u.name for u in list_users(home)])
    return found


def _taken(home: Path, name: str) -> UsageError:
    return UsageError(f"there is already a user '{name}' in {home}; change their password with "
                      f"'studiox users passwd {name}', or their role with 'studiox users role {name} ROLE'")


def check_new(home: Path, name: str, role: str) -> None:
    """Raise the UsageError ``add`` would for this name and role (the CLI asks before the password)."""
    _name_rules(name)
    _role_rules(role)
    if get(home, name) is not None:
        raise _taken(home, name)


def add(home: Path, name: str, role: str, password: str) -> User:
    """A new account; refuses a name that exists, a bad name or role, a password under 8 characters."""
    _name_rules(name)
    _role_rules(role)
    _password_rules(password)
    hashed = hash_password(password)  # outside the transaction: the write lock is held for no hash
    now = time.time()
    with _writing(home) as con:
        if con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise _taken(home, name)
        before = con.execute("SELECT session_epoch FROM removed WHERE name = ?", (name,)).fetchone()
        epoch = before[0] + 1 if before else 1
        con.execute("DELETE FROM removed WHERE name = ?", (name,))
        con.execute("INSERT INTO users (name, role, password, created, changed, session_epoch) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (name, role, hashed, now, now, epoch))
    return User(name=name, role=role, created=now, session_epoch=epoch)


def set_password(home: Path, name: str, password: str) -> User:
    """Replace the password of ``name``; bumps its session epoch, ending the portal sessions it had."""
    _password_rules(password)
    hashed = hash_password(password)
    with _writing(home) as con:
        row = _locked_row(con, home, name)
        con.execute("UPDATE users SET password = ?, changed = ?, session_epoch = ? WHERE name = ?",
                    (hashed, time.time(), row[3] + 1, name))
    return _user((*row[:3], row[3] + 1))


def set_role(home: Path, name: str, role: str) -> User:
    """Give ``name`` another role; bumps its session epoch, so a session never keeps a role taken away."""
    _role_rules(role)
    with _writing(home) as con:
        row = _locked_row(con, home, name)
        if row[1] == role:
            return _user(row)
        con.execute("UPDATE users SET role = ?, changed = ?, session_epoch = ? WHERE name = ?",
                    (role, time.time(), row[3] + 1, name))
    return _user((row[0], role, row[2], row[3] + 1))


def remove(home: Path, name: str) -> None:
    """Remove the account ``name`` (its hash is overwritten); its epoch is kept, bumped, for the name."""
    with _writing(home) as con:
        row = _locked_row(con, home, name)
        con.execute("DELETE FROM users WHERE name = ?", (name,))
        con.execute("DELETE FROM removed WHERE name = ?", (name,))
        con.execute("INSERT INTO removed (name, session_epoch, removed) VALUES (?, ?, ?)",
                    (name, row[3] + 1, time.time()))


def verify(home: Path, name: str, password: str) -> User | None:
    """The account when ``password`` is its password, else None. Always one hash computation, whether
    or not ``name`` exists."""
    known = NAME.fullmatch(name) is not None
    rows = _rows(home, f"SELECT {_COLUMNS}, password FROM users WHERE name = ?", (name,)) if known else []
    stored = rows[0][4] if rows else None
    if not password_matches(password, stored):
        return None
    return _user(rows[0][:4]) if rows else None
