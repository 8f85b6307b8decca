"""The state folder as a thing on disk: its creation survives kill -9, a read-only one can still be
read, and a --home that cannot be a folder is a usage error, not a crash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import TESTS, Sx, write_mission

pytestmark = pytest.mark.backends(
    "local", reason="the local state folder itself (files, permissions, creation) is under test")

HELLO = "mission: hello\nsteps:\n  - {id: a, set: {v: 1}}\n"
PAYMENT = TESTS / "missions" / "payment.yaml"


def _tree_digest(path: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- creation


def _database_leftover(home: Path) -> None:
    """What the store leaves when it has set up its database and nothing else happened."""
    from studiox.state.store import Store

    Store._connect(home, "NORMAL").close()


LEFTOVERS = {
    "a half-written studiox.tmp": lambda home: (home / "studiox.tmp").write_text('{"format": 2, "crea'),
    "an empty studiox.tmp": lambda home: (home / "studiox.tmp").write_text(""),
    "empty journal and index folders of an older studiox": lambda home: [(home / d).mkdir() for d in ("journal", "index")],
    "a marker not yet renamed, and a set-up database": lambda home: (
        (home / "studiox.tmp").write_text('{"format": 2, "created_by": "studiox"}\n'), _database_leftover(home)),
}


@pytest.mark.parametrize("leftover", list(LEFTOVERS))
def test_a_folder_left_by_an_unfinished_creation_is_finished_by_the_next_run(sx, tmp_path, leftover):
    sx.home.mkdir()
    LEFTOVERS[leftover](sx.home)
    listed = sx("runs")
    assert listed.returncode == 0, listed.stderr
    assert "no runs" in listed.stdout
    result = sx("run", write_mission(tmp_path / "m.yaml", HELLO), "-q")
    assert result.returncode == 0, result.stderr
    assert len(sx.run_ids()) == 1
    assert not (sx.home / "studiox.tmp").exists()
    assert json.loads((sx.home / "studiox.json").read_text())["format"] == 2


@pytest.mark.parametrize("stage", ["folder", "caches", "marker"])
def test_kill_during_the_creation_of_the_state_folder_then_run_again(sx, tmp_path, stage):
    mission = write_mission(tmp_path / "m.yaml", HELLO)
    killed = sx.process("run", mission, "-q", STUDIOX_TEST_KILL_DURING_CREATE=stage)  # SIGKILL: a real process
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sx.home.is_dir()
    again = sx("run", mission, "-q")
    assert again.returncode == 0, again.stderr
    assert "verdict: Completed" in again.stdout
    assert len(sx.run_ids()) == 1


def test_a_folder_with_more_than_creation_leftovers_is_still_refused_and_untouched(sx, tmp_path):
    sx.home.mkdir()
    (sx.home / "studiox.tmp").write_text("")
    (sx.home / "journal").mkdir()
    (sx.home / "journal" / "notes.txt").write_text("keep me")
    before = _tree_digest(sx.home)
    result = sx("run", write_mission(tmp_path / "m.yaml", HELLO))
    assert result.returncode == 2
    assert "not a studiox state folder" in result.stderr
    assert _tree_digest(sx.home) == before


# ---------------------------------------------------------------------------- --home that cannot be a folder


def test_a_home_below_a_regular_file_is_a_usage_error_that_names_the_file(sx, tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder")
    result = sx("run", write_mission(tmp_path / "m.yaml", HELLO), "--home", blocker / "state")
    assert result.returncode == 2, result.stderr
    assert f"cannot create the state folder {blocker / 'state'}: {blocker} is a file, not a folder" in result.stderr
    assert "internal error" not in result.stderr
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------------- a read-only state folder


def _without_root_bypass() -> list[str]:
    """A command prefix that runs a program as this user but without root's power to ignore file
    permissions (no capabilities at all): root is then refused a folder without write permission,
    like anyone else. Empty when the tests do not run as root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


class ReadOnly:
    """Makes a state folder read-only for the commands run through it, for real.

    ``permissions``: write permission removed, commands run without root's bypass (capabilities
    dropped with setpriv when the tests run as root). ``immutable``: chattr +i, which even root
    cannot write through.
    """

    def __init__(self, sx: Sx, method: str):
        self.sx, self.method = sx, method
        self.prefix = _without_root_bypass() if method == "permissions" else []

    def available(self) -> str | None:
        if self.method == "permissions":
            return None if not self.prefix or shutil.which("setpriv") else "setpriv (util-linux) is not installed"
        if os.geteuid() != 0 or not shutil.which("chattr"):
            return "chattr +i needs root"
        probe = self.sx.tmp / "chattr-probe"
        probe.write_text("")
        ok = subprocess.run(["chattr", "+i", probe], capture_output=True).returncode == 0
        subprocess.run(["chattr", "-i", probe], capture_output=True)
        return None if ok else "this file system does not support chattr +i"

    def apply(self) -> None:
        if self.method == "permissions":
            subprocess.run(["chmod", "-R", "a-w", self.sx.home], check=True)
        else:
            subprocess.run(["chattr", "-R", "+i", self.sx.home], check=True)

    def undo(self) -> None:
        if self.method == "permissions":
            subprocess.run(["chmod", "-R", "u+w", self.sx.home], check=False)
        else:
            subprocess.run(["chattr", "-R", "-i", self.sx.home], check=False)

    def __call__(self, *args) -> subprocess.CompletedProcess:
        if not self.prefix:
            return self.sx(*args, cwd="/", HOME="/tmp")
        # a subprocess: only a new process can run without root's capabilities (setpriv)
        return subprocess.run([*self.prefix, *self.sx.argv(*args)], capture_output=True, text=True, timeout=60,
                              cwd="/", env=self.sx.env(HOME="/tmp"), stdin=subprocess.DEVNULL)


@pytest.fixture(params=["permissions", "immutable"])
def read_only(request):
    base = Path(tempfile.mkdtemp(prefix="studiox-ro-"))
    base.chmod(0o755)  # an unprivileged user must reach the state folder to read it
    sx = Sx(base)
    ro = ReadOnly(sx, request.param)
    try:
        why_not = ro.available()
        if why_not:
            pytest.skip(why_not)
        yield ro
    finally:
        ro.undo()
        with contextlib.suppress(OSError):
            shutil.rmtree(base)


@pytest.mark.parametrize("last_writer", ["exited", "was killed"])
def test_a_read_only_state_folder_can_be_read_and_writing_commands_say_it_is_read_only(read_only, last_writer):
    sx = read_only.sx
    finished = sx("run", PAYMENT, "--input", "amount=40", "-q")
    assert finished.returncode == 0, finished.stderr
    parked = sx("run", PAYMENT, "--input", "amount=400", "--no-input")
    assert parked.returncode == 3, parked.stderr
    waiting_run = parked.stdout.split()[1]
    decision = parked.stdout.split("waiting for a decision ")[1].split(":")[0]
    if last_writer == "was killed":  # its uncommitted WAL files stay beside the databases
        # SIGKILL: a real process
        killed = sx.process("run", PAYMENT, "--input", "amount=40", "-q", STUDIOX_TEST_KILL_AFTER_EVENT=3)
        assert killed.returncode == -signal.SIGKILL
        assert list(sx.home.glob("studiox.db-wal"))
    run_ids = sx.run_ids()
    read_only.apply()
    before = _tree_digest(sx.home)

    listed = read_only("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["id"] for r in json.loads(listed.stdout)) == sorted(run_ids)
    for args in (["runs"], ["status", waiting_run], ["status", waiting_run, "--json"], ["log", waiting_run],
                 ["log", waiting_run, "--json"], ["decisions"], ["decision", "show", decision]):
        result = read_only(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "corrupt" not in result.stderr
    assert "waiting" in read_only("status", waiting_run).stdout
    assert decision in read_only("decisions").stdout

    for args in (["run", PAYMENT, "--input", "amount=40"], ["approve", decision], ["resume", waiting_run],
                 ["reject", decision, "--reason", "no"], ["cancel", waiting_run]):
        result = read_only(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"the state folder {sx.home} is read-only (" in result.stderr, (args, result.stderr)
        assert "corrupt" not in result.stderr and "internal error" not in result.stderr
    assert _tree_digest(sx.home) == before


def test_creating_a_state_folder_never_removes_the_marker_another_live_process_is_writing(tmp_path):
    import subprocess as sp
    import sys as _sys

    from studiox.state.store import Store

    home = tmp_path / "home"
    home.mkdir()
    other = sp.Popen([_sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = home / f"studiox.tmp.{other.pid}.abc123"
        theirs.write_text("")  # a process creating the same folder at this moment
        dead = home / "studiox.tmp.999999999.zzz"
        dead.write_text("")  # a creation cut off by kill -9 long ago
        store = Store.open(home, create=True)
        assert store is not None
        store.close()
        assert theirs.exists() and not dead.exists()
    finally:
        other.kill()
        other.wait()
