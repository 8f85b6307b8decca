"""A state folder written by studiox 0.1 (format 1: two diskcache stores) is migrated to SQLite
on first use, never misread: every run, event and decision reads as it did, and runs go on.

tests/data/format1-home.tar.gz was made by studiox 0.1 (commit 7f88862) running
tests/data/…/pay.yaml: one run paid, one waiting for a decision, one rejected, one cancelled
while it waited. Beside the folder are what that version printed for ``runs --json``,
``decisions --all --json`` and ``log RUN --json``.
"""

from __future__ import annotations

import json
import os
import signal
import tarfile
from pathlib import Path

import pytest
from conftest import TESTS, Sx
from test_state_folder import _tree_digest, read_only  # noqa: F401 - a fixture

ARCHIVE = TESTS / "data" / "format1-home.tar.gz"


@pytest.fixture
def old(tmp_path) -> Sx:
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(tmp_path, filter="data")
    return Sx(tmp_path)


def _printed_before(sx: Sx, name: str):
    path = sx.tmp / name
    return [json.loads(line) for line in path.read_text().splitlines()] if name.endswith("jsonl") else \
        json.loads(path.read_text())


def test_an_old_state_folder_is_migrated_on_first_use_and_reads_exactly_as_before(old):
    listed = old("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "migrated the state folder" in listed.stderr and "4 runs" in listed.stderr
    assert json.loads(listed.stdout) == _printed_before(old, "runs.json")
    decisions = old("decisions", "--all", "--json")
    assert json.loads(decisions.stdout) == _printed_before(old, "decisions.json")
    for row in _printed_before(old, "runs.json"):
        log = old("log", row["id"], "--json")
        assert [json.loads(line) for line in log.stdout.splitlines()] == _printed_before(old, f"log-{row['id']}.jsonl")
    assert json.loads((old.home / "studiox.json").read_text())["format"] == 2
    assert not (old.home / "journal").exists() and (old.home / "format-1" / "journal" / "cache.db").is_file()
    assert "migrated" not in old("runs").stderr  # once


def test_a_migrated_run_goes_on_where_it_stopped(old):
    (pending,) = [d for d in _printed_before(old, "decisions.json") if d["status"] == "pending"]
    result = old("approve", pending["id"], "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: Paid" in result.stdout
    assert old.state(pending["run"])["status"] == "succeeded"
    assert old("decisions").stdout.strip().startswith("no pending decisions")
    by_key = json.loads(old("runs", "--json", "--key", "INV-2").stdout)
    assert [r["status"] for r in by_key] == ["succeeded"]


def test_studiox_migrate_does_it_on_purpose_and_says_when_there_is_nothing_to_do(old):
    first = old("migrate")
    assert first.returncode == 0, first.stderr
    assert "to format 2 (SQLite): 4 runs" in first.stdout and "format-1" in first.stdout
    again = old("migrate")
    assert again.returncode == 0 and "already in this studiox's format" in again.stdout


def test_kill_during_the_migration_then_use_the_folder_again(old):
    killed = old.process("runs", STUDIOX_TEST_KILL_DURING_CREATE="migration")  # SIGKILL: a real process
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((old.home / "studiox.json").read_text())["format"] == 1  # not half-migrated
    listed = old("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == _printed_before(old, "runs.json")


def test_an_old_folder_that_may_not_be_written_is_refused_with_the_command_that_migrates_it(read_only):  # noqa: F811
    sx = read_only.sx
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(sx.tmp, filter="data")
    os.chmod(sx.tmp, 0o755)
    read_only.apply()
    before = _tree_digest(sx.home)
    result = read_only("runs")
    assert result.returncode == 2, result.stderr
    assert "written by an older studiox (format 1)" in result.stderr
    assert f"studiox migrate --home {sx.home}" in result.stderr
    assert _tree_digest(sx.home) == before


def test_a_pickle_planted_in_an_old_folder_is_never_loaded(old, tmp_path):
    from diskcache import Cache

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    planted = Cache(str(old.home / "index"))
    planted.set("run:evil", Exploit())  # diskcache's default disk pickles it
    planted.close()
    result = old("runs")
    assert result.returncode == 2
    assert "not JSON text (a pickle?)" in result.stderr
    assert not marker.exists()
    assert json.loads((old.home / "studiox.json").read_text())["format"] == 1


def test_the_archive_is_what_the_old_version_wrote(old):
    names = sorted(p.name for p in Path(old.home).iterdir())
    assert names == ["index", "journal", "studiox.json"]
    assert json.loads((old.home / "studiox.json").read_text())["format"] == 1
