"""A throwaway PostgreSQL server for tests: Debian's ``postgresql`` package, ``initdb`` and ``pg_ctl``
on a temporary folder and a free port; a fresh database or schema for each test.

``pg_ctl`` refuses to run as root, so when the tests run as root the server runs as an unprivileged
system user (``studiox-pg``) that is created when missing. The server listens on 127.0.0.1 only,
trusts local connections (``initdb --auth=trust``) and runs with ``fsync=off``: it is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

USER = "studiox-pg"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian version first), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    """The user to run the server as: None (this one) unless this is root, then ``studiox-pg``."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)
    return USER


def _as(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


@contextlib.contextmanager
def server(database: str = "studiox") -> Iterator[str]:
    """Start a server, create ``database`` in it and yield its URL; stop the server and delete its folder after."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    user = _server_user()
    top = Path(tempfile.mkdtemp(prefix="studiox-pg-"))
    data, sockets = top / "data", top / "sockets"
    sockets.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (top, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(top, 0o755)
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True, cwd=top)  # cwd: the user may not read the caller's
    try:
        subprocess.run(_as(user, [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                  "-E", "UTF8", "--locale=C", "--no-sync"]), **run)  # type: ignore[call-overload]
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        subprocess.run(_as(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(top / "log"), "-o", options,
                                  "-w", "-t", "60", "start"]), **run)  # type: ignore[call-overload]
        try:
            url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
            _create_database(f"postgresql://postgres@127.0.0.1:{port}/postgres", database)
            yield url
        finally:
            subprocess.run(_as(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, cwd=top)
    except subprocess.CalledProcessError as e:
        log = (top / "log").read_text() if (top / "log").exists() else ""
        raise RuntimeError(f"{e.cmd[0]} failed: {e.stderr}{e.stdout}\n{log}") from None
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')


def fresh_database(url: str) -> str:
    """A new, empty database on the server of ``url``; its URL (one per test keeps tests apart)."""
    base, _, _ = url.rpartition("/")
    name = f"t{time.time_ns()}_{os.getpid()}"
    _create_database(f"{base}/postgres", name)
    return f"{base}/{name}"


def fresh_schema(url: str) -> str:
    """A new, empty schema in the database of ``url`` (one per test keeps tests apart); a URL whose
    connections use it (``search_path``), so studiox makes its tables there."""
    import psycopg

    name = f"t{time.time_ns()}_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{name}"')
    return f"{url.partition('?')[0]}?options=-csearch_path%3D{name}"


def schema_of(url: str) -> str:
    """The schema a URL made by :func:`fresh_schema` uses."""
    return url.rpartition("search_path%3D")[2]


def copy_schema(url: str) -> str:
    """A fresh schema holding a copy of every table of ``url``'s schema (a copy of a test's store); its URL."""
    import psycopg

    old = schema_of(url)
    copy = fresh_schema(url.partition("?")[0])
    new = schema_of(copy)
    with psycopg.connect(url.partition("?")[0], autocommit=True) as con, con.transaction():
        tables = [row[0] for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (old,))]
        for table in tables:
            con.execute(f'CREATE TABLE "{new}"."{table}" (LIKE "{old}"."{table}" INCLUDING ALL)')
            con.execute(f'INSERT INTO "{new}"."{table}" SELECT * FROM "{old}"."{table}"')
    return copy


if __name__ == "__main__":
    started = time.monotonic()
    with server() as url:
        print(url, f"up in {time.monotonic() - started:.2f}s")
        import psycopg

        with psycopg.connect(url) as con:
            print(con.execute("SELECT version()").fetchone())
        stopping = time.monotonic()
    print(f"stopped in {time.monotonic() - stopping:.2f}s")
