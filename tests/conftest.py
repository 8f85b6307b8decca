from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

# Test doors that SIGKILL the process they are in: never set them for a call in the test process.
KILL_DOORS = ("STUDIOX_TEST_KILL_AFTER_EVENT", "STUDIOX_TEST_KILL_DURING_CREATE")


# ---------------------------------------------------------------------------- the CLI in this process


@contextlib.contextmanager
def _fresh_process(argv: list[str], env: Mapping[str, str], cwd: Path | str | None, ports,
                   stdin_text: str | None = None) -> Iterator[dict]:
    """What a fresh ``studiox`` process would see, for one call in the test process, all put back after:
    exactly ``env`` as os.environ, ``cwd``, ``argv``, no terminal (stdin is /dev/null, or a pipe holding
    ``stdin_text``; stdout and stderr are pipes read as UTF-8 text), Python's default warnings and
    logging (to stderr), the CLI's global state, consoles sized and coloured as at start-up, and
    ``ports`` as studiox.api.PORTS_FACTORY (None: the real integrations)."""
    import importlib

    from studiox import api
    from studiox.cli import output
    from studiox.state.store import Store

    app_module = importlib.import_module("studiox.cli.app")  # the module ('studiox.cli.app' is also the Typer)

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr, sys.argv
    saved_state = dict(app_module.state)
    saved_ports = api.PORTS_FACTORY
    saved_sigint = signal.getsignal(signal.SIGINT)
    consoles = (output.out, output.err)
    saved_consoles = [(c._width, c._height, c._color_system) for c in consoles]
    root, mcp_logger = logging.getLogger(), logging.getLogger("mcp")
    saved_root = root.handlers[:], root.level
    saved_mcp = mcp_logger.handlers[:], mcp_logger.propagate, mcp_logger.level

    # the CLI leaves its stores to be closed at exit: close the ones this call opens when it ends, as
    # exit would (a store left for the garbage collector holds SQLite's shared memory mapped; closed
    # later, after another process reset that file, it dies of SIGBUS)
    opened: list[Store] = []
    store_init = Store.__init__

    def tracked_init(self, *args, **kwargs):
        store_init(self, *args, **kwargs)
        opened.append(self)

    pipes = {"stdout": io.BytesIO(), "stderr": io.BytesIO()}
    wrappers: list[io.TextIOWrapper] = []
    stdin = open(os.devnull, encoding="utf-8") if stdin_text is None else io.StringIO(stdin_text)  # closed below
    try:
        os.environ.clear()
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = stdin
        # as a child's pipes: UTF-8 (the tests' locale), strict on stdout, backslashreplace on stderr
        sys.stdout = io.TextIOWrapper(pipes["stdout"], encoding="utf-8", errors="strict", write_through=True)
        sys.stderr = io.TextIOWrapper(pipes["stderr"], encoding="utf-8", errors="backslashreplace",
                                      write_through=True)
        wrappers.extend((sys.stdout, sys.stderr))
        sys.argv = ["studiox", *argv]
        app_module.state.update(debug=False, home=None)
        api.PORTS_FACTORY = ports
        Store.__init__ = tracked_init  # type: ignore[method-assign]
        for console in consoles:  # rich reads COLUMNS/LINES and detects colour when a console is made
            columns, lines = env.get("COLUMNS", ""), env.get("LINES", "")
            console._width = int(columns) if columns.isdigit() else None
            console._height = int(lines) if lines.isdigit() else None
            console._color_system = console._detect_color_system()
        root.handlers = []  # pytest's capture handlers out: a warning is printed on stderr, as in a process
        root.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's default filters, not pytest's
            for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                                     ("ignore", ImportWarning), ("ignore", ResourceWarning)):
                warnings.simplefilter(action, category)
            warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]
            yield pipes
    finally:
        Store.__init__ = store_init  # type: ignore[method-assign]
        for store in opened:
            store.close()
        for stream in wrappers:
            stream.flush()
            stream.detach()  # the bytes stay readable in ``pipes`` once the wrapper is gone
        sys.stdin, sys.stdout, sys.stderr, sys.argv = saved_streams
        stdin.close()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        app_module.state.clear()
        app_module.state.update(saved_state)
        api.PORTS_FACTORY = saved_ports
        signal.signal(signal.SIGINT, saved_sigint)
        for console, (width, height, colour) in zip(consoles, saved_consoles, strict=True):
            console._width, console._height, console._color_system = width, height, colour
        root.handlers = saved_root[0]
        root.setLevel(saved_root[1])
        for handler in mcp_logger.handlers:  # studiox's log file of the MCP SDK (adapters/mcp.py)
            if handler not in saved_mcp[0]:
                handler.close()
        mcp_logger.handlers, mcp_logger.propagate = saved_mcp[0], saved_mcp[1]
        mcp_logger.setLevel(saved_mcp[2])


def run_in_process(argv: list, *, env: Mapping[str, str], cwd: Path | str | None = None, ports=None,
                   timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """``studiox ARGV`` run by ``studiox.cli.main`` in this process, as if in a fresh child process with
    ``env``: its exit code, stdout and stderr, like subprocess.run(..., capture_output=True, text=True).
    Past ``timeout`` it is interrupted (SIGINT) and subprocess.TimeoutExpired is raised."""
    from studiox.cli import main

    argv = [str(a) for a in argv]
    assert not set(KILL_DOORS) & set(env), "a kill door would kill the test process: use a subprocess"
    watch = {"done": False, "fired": False}
    lock = threading.Lock()

    def interrupt() -> None:
        with lock:
            if not watch["done"]:
                watch["fired"] = True
                os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(timeout, interrupt)
    timer.daemon = True
    with _fresh_process(argv, env, cwd, ports, input) as pipes:
        timer.start()
        try:
            try:
                code = main(argv)
            finally:
                with lock:
                    watch["done"] = True
                timer.cancel()
        except SystemExit as e:  # as the interpreter turns it into an exit status
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if not isinstance(e.code, int | None):
                print(e.code, file=sys.stderr)
        except KeyboardInterrupt:
            if not watch["fired"]:
                raise
            code = -signal.SIGINT
        except Exception:  # an uncaught exception: the traceback on stderr, status 1 (e.g. with --debug)
            traceback.print_exc()
            code = 1
    stdout, stderr = (_text(pipes[name].getvalue()) for name in ("stdout", "stderr"))
    if watch["fired"]:
        raise subprocess.TimeoutExpired(["studiox", *argv], timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(["studiox", *argv], code, stdout, stderr)


def _text(data: bytes) -> str:
    """Bytes read from a pipe as subprocess.run(text=True) reads them (UTF-8, universal newlines)."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def cli(*args, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """The plain ``studiox`` command in this process; ``env`` replaces the environment (default: this one's)."""
    return run_in_process(list(args), env=dict(os.environ) if env is None else env, cwd=cwd, timeout=timeout)


# ---------------------------------------------------------------------------- the runner fixtures


class Sx:
    """Runs the studiox CLI (with the test tools door) in one state folder.

    ``sx(...)`` runs it in the test process (fast, and coverage sees it); ``sx.process(...)`` and
    ``sx.popen(...)`` run it as a real subprocess, for what needs one: SIGKILL (the kill doors),
    signals, competing processes, a terminal. Both give a subprocess.CompletedProcess.
    """

    def __init__(self, tmp_path: Path, database_url: str | None = None):
        self.home = tmp_path / "home"
        self.effects = tmp_path / "effects.jsonl"
        self.tmp = tmp_path
        # when the store is PostgreSQL (a schema of its own): STUDIOX_BACKEND, STUDIOX_DATABASE_URL, and runs
        # driven by the CLI process that asks, as locally (not queued for workers: see ON_POSTGRES)
        self.backend: dict[str, str] = {**ON_POSTGRES, "STUDIOX_DATABASE_URL": database_url} if database_url else {}

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOX_")}
        env.update(STUDIOX_HOME=str(self.home), SX_EFFECTS=str(self.effects), SX_FLAKY=str(self.tmp / "flaky"),
                   PYTHONPATH=str(TESTS) + os.pathsep + env.get("PYTHONPATH", ""), COLUMNS="200",
                   RECORD_DELAY="0")  # read by tests/support/mcp_test_server.py
        env.update(self.backend)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    real = False  # True: the plain studiox CLI with its real MCP integrations

    def argv(self, *args) -> list[str]:
        return [sys.executable, "-m", "studiox" if self.real else "support.sx", *map(str, args)]

    def __call__(self, *args, timeout: float = 60, cwd: Path | str | None = None, input: str | None = None,
                 **env) -> subprocess.CompletedProcess:
        from support.sx import ports

        return run_in_process(list(args), env=self.env(**env), cwd=cwd, ports=None if self.real else ports,
                              timeout=timeout, input=input)

    def process(self, *args, timeout: float = 60, **env) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env(**env),
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args, **env) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(**env), stdin=subprocess.DEVNULL)

    @property
    def on_postgres(self) -> bool:
        return bool(self.backend)

    @property
    def where(self) -> str:
        """Where the runs are, as studiox's messages name it (Store.where)."""
        if not self.backend:
            return str(self.home)
        from studiox.state.pgstore import safe_url

        return f"the database {safe_url(self.backend['STUDIOX_DATABASE_URL'])}"

    def store(self):
        """The store the CLI of this runner writes (its state folder, or its PostgreSQL database)."""
        from studiox.state.store import Store

        if self.backend:
            from studiox.state.pgstore import PgStore

            return PgStore.connect(self.home, self.backend["STUDIOX_DATABASE_URL"])
        return Store.open(self.home, create=False)

    def holder(self, run_id: str) -> dict | None:
        """Who drives ``run_id`` now (pid, host, command), on either backend; None when nobody does."""
        store = self.store()
        if store is None:
            return None
        try:
            return store.holder(run_id)
        finally:
            store.close()

    @contextlib.contextmanager
    def tamper(self) -> Iterator[Tampering]:
        """A connection to the store's tables from outside studiox, as someone editing the database would
        (SQL with ``?`` placeholders, on either backend); what it did is committed at the end."""
        if self.backend:
            import psycopg

            with psycopg.connect(self.backend["STUDIOX_DATABASE_URL"]) as con:  # commits when the block ends
                yield Tampering(con, "%s")
        else:
            import sqlite3

            con = sqlite3.connect(self.home / "studiox.db")
            try:
                with con:  # commits when the block ends
                    yield Tampering(con, "?")
            finally:
                con.close()

    def stored(self) -> object:
        """Everything the store holds, to compare before and after: the database file's bytes locally,
        every table's rows in PostgreSQL."""
        if not self.backend:
            return (self.home / "studiox.db").read_bytes()
        with self.tamper() as db:
            return {table: sorted(map(tuple, db.execute(f"SELECT * FROM {table}")), key=repr)
                    for table in ("events", "records", "runs", "decisions")}

    def copy(self, tmp_path: Path) -> Sx:
        """Another runner over a copy of this one's store (and state folder), in ``tmp_path``."""
        if self.home.exists():  # (on PostgreSQL, a run that needed no cache or log made no folder)
            shutil.copytree(self.home, tmp_path / "home")
        if not self.backend:
            return Sx(tmp_path)
        from tests.support import postgres

        return Sx(tmp_path, postgres.copy_schema(self.backend["STUDIOX_DATABASE_URL"]))

    def effects_log(self) -> list[dict]:
        if not self.effects.exists():
            return []
        return [json.loads(line) for line in self.effects.read_text().splitlines()]

    def run_ids(self) -> list[str]:
        result = self("runs", "--json")
        assert result.returncode == 0, result.stderr
        return [r["id"] for r in json.loads(result.stdout)]

    def state(self, run_id: str) -> dict:
        result = self("status", run_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


class Tampering:
    """A DB-API connection to the store's database, taking SQL with ``?`` placeholders on either backend."""

    def __init__(self, con, placeholder: str):
        self.con = con
        self.placeholder = placeholder

    def execute(self, query: str, args: tuple = ()):
        return self.con.execute(query.replace("?", self.placeholder), args)


@pytest.fixture
def sx(tmp_path, backend, request) -> Sx:
    return Sx(tmp_path, request.getfixturevalue("postgres_schema") if backend == "postgres" else None)


@pytest.fixture
def studiox(tmp_path, backend, request) -> Sx:
    """The plain CLI (real MCP integrations), in its own state folder."""
    runner = Sx(tmp_path, request.getfixturevalue("postgres_schema") if backend == "postgres" else None)
    runner.real = True
    return runner


def wait_for(predicate, seconds: float = 60) -> bool:
    """Whether ``predicate()`` came true within ``seconds`` (looked at every 0.2 s)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def write_mission(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def _model_client_imported():
    """litellm imported once per test process, up front: a run that finds it still loading in the
    background says so on its rail, which would make one run's events differ from another's.
    (tests/test_preload.py covers that line; the fast-command tests run fresh interpreters.)"""
    from studiox.adapters.models import _litellm

    _litellm()


# ---------------------------------------------------------------------------- the store's backends
#
# A test that uses the ``backend`` fixture — through ``sx`` or ``studiox``, or by
# ``pytestmark = pytest.mark.usefixtures("backend")`` for tests that open the store themselves — runs once
# on each backend: the local state folder, and PostgreSQL (a fresh schema on the test process's throwaway
# server). ``@pytest.mark.backends("local", reason=...)`` keeps a test (or a module) on the backends it
# names, saying why. STUDIOX_TEST_BACKEND=local (or postgres) runs only that backend's variants.

BACKENDS = ("local", "postgres")
for _name in ("STUDIOX_BACKEND", "STUDIOX_DATABASE_URL"):  # the tests choose the backend, not the shell
    os.environ.pop(_name, None)
# The engine's tests on the PostgreSQL store: the process that asks drives the run, as locally, where on
# postgres a worker would (studiox/dispatch). A worker's segment runs the same engine on the same store;
# the workers themselves are tested in test_postgres_workers.py.
ON_POSTGRES = {"STUDIOX_BACKEND": "postgres", "STUDIOX_TEST_DRIVE_HERE": "1"}


def _tested_backends() -> tuple[str, ...]:
    chosen = os.environ.get("STUDIOX_TEST_BACKEND", "").strip().lower()
    if not chosen:
        return BACKENDS
    if chosen not in BACKENDS:
        raise pytest.UsageError(f"STUDIOX_TEST_BACKEND={chosen!r}: choose local or postgres (or leave it unset: both)")
    return (chosen,)


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    names = _tested_backends()
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        if not marker.kwargs.get("reason") or not set(marker.args) <= set(BACKENDS):
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: backends(...) takes backend names "
                                    f"{BACKENDS} and a reason=")
        names = tuple(n for n in names if n in marker.args) or marker.args  # its own, whatever was asked
    metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request, monkeypatch) -> str:
    """The store's backend for this test: STUDIOX_BACKEND and STUDIOX_DATABASE_URL are set in this process
    as a user would set them, so code under test that opens the store (api.open_store, state.backends)
    finds it there."""
    name = getattr(request, "param", "local")
    if name == "postgres":
        for variable, value in {**ON_POSTGRES, "STUDIOX_DATABASE_URL": request.getfixturevalue("postgres_schema")}.items():
            monkeypatch.setenv(variable, value)
    return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One throwaway PostgreSQL server per test process (about 1.3 s to start; see tests/support/postgres.py);
    the URL of its first database. Without PostgreSQL installed this is an error, never a skip: the
    postgres half of the suite must not pass by not running."""
    from tests.support import postgres

    if postgres.binaries() is None:
        pytest.fail("PostgreSQL is not installed, and the tests of the postgres backend need it: apt-get install "
                    "postgresql (.ci/run does), or run only the local backend's tests with STUDIOX_TEST_BACKEND=local",
                    pytrace=False)
    with postgres.server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the session's server, for one test (DBOS keeps its tables in a schema of
    its own, so the workers' tests need a database each)."""
    from tests.support import postgres

    return postgres.fresh_database(postgres_server)


@pytest.fixture
def postgres_schema(postgres_server) -> str:
    """A new, empty schema in the session's database, for one test: a URL whose connections use it (their
    search_path). Enough for the store, and cheaper: a few ms and no disk, where a database takes ~35 ms
    and 7 MB."""
    from tests.support import postgres

    return postgres.fresh_schema(postgres_server)


# ---------------------------------------------------------------------------- measures a test reports

MEASURES = "STUDIOX_TEST_MEASURES"  # a file every test process appends to; the main one prints it at the end


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "backends(*names, reason): run the test on these store backends only, "
                                       "for the reason given (the default: local and postgres; see above)")
    if not hasattr(config, "workerinput"):  # the main process (xdist's workers inherit the variable)
        import tempfile

        handle, path = tempfile.mkstemp(prefix="studiox-measures-", suffix=".txt")
        os.close(handle)
        os.environ[MEASURES] = path
        config.stash[_measures] = Path(path)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    path = config.stash.get(_measures, None)
    if path is None or not path.exists():
        return
    lines = path.read_text().splitlines()
    path.unlink()
    if lines:
        terminalreporter.section("measured by the tests")
        for line in lines:
            terminalreporter.write_line(line)


_measures = pytest.StashKey[Path]()


@pytest.fixture
def measured():
    """``measured(text)``: a line shown in the test summary, whichever process ran the test (no timing asserts)."""

    def say(text: str) -> None:
        with open(os.environ[MEASURES], "a") as f:
            f.write(text + "\n")

    return say
