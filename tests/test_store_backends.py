"""The store's contract, held by both backends: the state folder's SQLite database and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket

import pytest
from conftest import cli

from studiox.errors import RunLocked, StoreError
from studiox.state import backends
from studiox.state.journal import Journal


@pytest.fixture(params=["local", "postgres"])
def store(request, tmp_path, monkeypatch):
    if request.param == "postgres":
        monkeypatch.setenv("STUDIOX_DATABASE_URL", request.getfixturevalue("postgres_url"))
    opened = backends.open_store(tmp_path / "home", create=True, backend=request.param)
    assert opened is not None
    yield opened
    opened.close()


def started(seq: int = 1, at: float = 1000.0, mission: str = "m", **fields) -> dict:
    return {"seq": seq, "type": "run_started", "at": at, "mission": mission, **fields}


def test_events_come_back_in_order_with_full_precision_times(store):
    store.append_all("r1", [(1, started(at=1723456789.123456)), (2, {"seq": 2, "type": "step_started",
                                                                     "at": 1723456790.5, "step": "a"})])
    assert [e["seq"] for e in store.events("r1")] == [1, 2]
    assert store.last_seq("r1") == 2 and store.last_event("r1")["step"] == "a"
    assert store.event("r1", 1)["at"] == 1723456789.123456
    assert store.run_heads() == [("r1", 2, 1723456790.5)]
    assert store.run_rows()[0]["started"] == 1723456789.123456


def test_a_second_writer_of_a_slot_is_refused_and_nothing_of_its_commit_is_kept(store):
    store.append("r1", 1, started())
    with pytest.raises(StoreError, match="already written by another process"):
        store.append_all("r1", [(2, {"seq": 2, "type": "x", "at": 1001.0}), (1, started(at=5.0))])
    assert store.last_seq("r1") == 1
    assert store.event("r1", 1)["at"] == 1000.0


def test_records_first_writer_wins_and_prefixes_list_in_code_point_order(store):
    assert store.add_record("claim:a", {"by": "first"})
    assert not store.add_record("claim:a", {"by": "second"})
    assert store.record("claim:a") == {"by": "first"}
    for key in ("claim:B", "claim:b", "claim:é", "claim:Z", "claim;x", "clai"):
        store.add_record(key, {"k": key})
    assert [k for k, _ in store.records("claim:")] == ["claim:B", "claim:Z", "claim:a", "claim:b", "claim:é"]


def test_the_index_pages_runs_and_decisions(store):
    for n in range(5):
        store.append(f"r{n}", 1, started(at=1000.0 + n // 2, mission="m" if n % 2 else "other"))
    first = store.run_rows(limit=2)
    assert [r["id"] for r in first] == ["r4", "r3"]
    after = store.run_rows(limit=2, before=(first[-1]["started"], first[-1]["id"]))
    assert [r["id"] for r in after] == ["r2", "r1"]
    assert [r["id"] for r in store.run_rows(mission="m")] == ["r3", "r1"]
    assert store.count_runs() == 5 and store.run_ids() == [f"r{n}" for n in range(5)]
    store.add_record("decision:d1", {"run": "r1", "step": "s", "requested_at": 1000.0, "expires_at": 2000.0})
    store.add_record("decision:d1:outcome", {"status": "approved", "at": 1500.0})
    store.add_record("decision:d2", {"run": "r1", "step": "t", "requested_at": 1001.0})
    assert [(d["id"], d["state"]) for d in store.decision_rows()] == [("d1", "approved"), ("d2", "pending")]
    assert [d["id"] for d in store.decision_rows(states=("pending",))] == ["d2"]
    store.append("r1", 2, {"seq": 2, "type": "run_finished", "at": 1600.0, "status": "failed"})
    assert [d["state"] for d in store.decision_rows()] == ["approved", "void"]
    assert store.run_rows(states=("failed",))[0]["id"] == "r1"


def test_a_chained_journal_reads_back_and_an_edited_event_is_found(store):
    journal = Journal(store, "r1", clock=lambda: 1000.0)
    journal.append("run_started", mission="m")
    journal.append("step_started", step="a", note="naïve ✓")
    assert [e["type"] for e in store.events("r1")] == ["run_started", "step_started"]
    assert store.run_head("r1") == (2, journal.head)
    assert [seq for seq, _ in store.event_rows("r1")] == [1, 2]
    if hasattr(store, "_pg"):
        store._pg.execute("UPDATE events SET body = replace(body, 'naïve', 'naive') WHERE seq = 2")
    else:
        store._con.execute("UPDATE events SET body = replace(body, 'naïve', 'naive') WHERE seq = 2")
    with pytest.raises(StoreError, match="damaged"):
        store.events("r1")


@pytest.mark.parametrize("run_id", ["r1", "k3mz8qpa", "a-run-whose-key-is-negative"])
def test_one_process_drives_a_run_and_the_lock_is_free_once_released(store, run_id):
    assert not store.driven(run_id) and store.holder(run_id) is None
    with store.lock(run_id):
        assert store.driven(run_id)
        holder = store.holder(run_id)
        assert holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunLocked, match=f"run {run_id} is being driven by process {os.getpid()} on "):
            store.lock(run_id).acquire()
    assert not store.driven(run_id) and store.holder(run_id) is None  # at once: release does not lag
    with store.lock(run_id):
        pass


def test_a_lock_held_by_a_killed_process_is_taken_over(store, tmp_path):
    import subprocess
    import sys

    code = ("import os, sys, time\n"
            "from studiox.state import backends\n"
            "store = backends.open_store(sys.argv[1], create=True)\n"
            "lock = store.lock('r1').acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n")
    env = {**os.environ, "STUDIOX_BACKEND": "postgres" if hasattr(store, "url") else "local"}
    if hasattr(store, "url"):
        env["STUDIOX_DATABASE_URL"] = store.url
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "home")], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert store.holder("r1")["pid"] == holder.pid
        holder.kill()
        holder.wait()  # dead: its lock is free at once (the server may take a moment to notice; studiox waits)
        with store.lock("r1"):
            assert store.holder("r1")["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_the_response_cache_stays_in_the_local_folder(store, tmp_path):
    store.cache("k", {"text": "hi"})
    assert store.cached("k") == {"text": "hi"}
    assert (tmp_path / "home" / "cache").is_dir()
    assert store.journal_size() > 0


def test_an_unknown_backend_or_a_missing_url_is_a_plain_error(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIOX_DATABASE_URL", raising=False)
    with pytest.raises(StoreError, match="unknown backend 'mysql'"):
        backends.open_store(tmp_path, create=True, backend="mysql")
    with pytest.raises(StoreError, match="needs STUDIOX_DATABASE_URL"):
        backends.open_store(tmp_path, create=True, backend="postgres")


def test_the_backend_option_chooses_the_store_for_the_command_and_overrides_the_environment(tmp_path, postgres_url):
    mission = tmp_path / "m.yaml"
    mission.write_text("mission: m\nsteps:\n  - {id: a, set: {x: 1}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOX_")}
    env.update(STUDIOX_HOME=str(tmp_path / "home"), STUDIOX_DATABASE_URL=postgres_url,
               STUDIOX_TEST_DRIVE_HERE="1")  # (driven by the command, not queued for workers)
    on_postgres = cli("--backend", "postgres", "run", mission, "-q", env=env)
    assert on_postgres.returncode == 0, on_postgres.stderr
    run_id = on_postgres.stdout.split()[0]
    assert [r["id"] for r in json.loads(cli("--backend", "postgres", "runs", "--json", env=env).stdout)] == [run_id]
    assert json.loads(cli("runs", "--json", env={**env, "STUDIOX_BACKEND": "postgres"}).stdout)[0]["id"] == run_id
    # the local folder was made a state folder (for this machine's cache and logs), but holds no run
    assert json.loads(cli("--backend", "local", "runs", "--json", env={**env, "STUDIOX_BACKEND": "postgres"}).stdout) == []
    assert "the database postgresql://" in cli("--backend", "postgres", "migrate", env=env).stdout


@pytest.mark.parametrize("value", ["mysql", "lokal"])
def test_an_unknown_backend_option_is_a_usage_error(tmp_path, value):
    result = cli("--backend", value, "runs", env={"STUDIOX_HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"]})
    assert result.returncode == 2
    assert f"unknown backend '{value}' for --backend: choose 'local'" in result.stderr, result.stderr
    assert ("did you mean 'local'?" in result.stderr) == (value == "lokal")
    assert not (tmp_path / "home").exists()
