"""The long-running side: inbox, schedule and webhook triggers, the trigger ledger across kill -9,
and approval deadlines that expire with nobody resuming the run."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import wait_for, write_mission
from starlette.testclient import TestClient

from studiox import api
from studiox.mission import load
from studiox.service.ledger import Ledger
from studiox.service.loop import Service

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

INBOX_MISSION = ("mission: intake\ninputs: {note: {type: string}}\n"
                 "triggers:\n  - inbox: {path: inbox, pattern: '*.txt', input: note, settle: 0.2s, "
                 "then: {move_to: processed}}\n"
                 "steps:\n  - {id: read, set: {first: '${{ split(inputs.note)[0] }}'}}\n"
                 "verdict: {choices: [Read], value: Read, note: '${{ steps.read.output.first }}'}\n")


def _runs(home: Path) -> list:
    store = api.open_store(home)
    if store is None:
        return []
    try:
        return list(api.list_runs(store))
    finally:
        store.close()


def _service(tmp_path: Path, home: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "studiox", "serve", "--no-web", str(tmp_path / "intake.yaml"),
                             "--home", str(home)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "STUDIOX_HOME": str(home)})


def test_six_files_start_six_runs_once_each_across_a_kill_and_a_file_dropped_again_starts_none(tmp_path):
    write_mission(tmp_path / "intake.yaml", INBOX_MISSION)
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    inbox.mkdir()
    for i in range(6):
        (inbox / f"invoice-{i}.txt").write_text(f"INV-{i} from supplier {i}\n")
    first = _service(tmp_path, home)
    try:  # kill -9 the service as soon as some runs have started, then start it again
        assert wait_for(lambda: len(_runs(home)) >= 2, 60), first.stdout
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = _service(tmp_path, home)
    try:
        assert wait_for(lambda: len(_runs(home)) == 6 and all(r.status == "succeeded" for r in _runs(home))
                         and len(list((tmp_path / "processed").glob("*.txt"))) == 6, 90)
        assert sorted(r.verdict for r in _runs(home)) == ["Read"] * 6
        ledger = Ledger(home)
        firings = ledger.all()
        ledger.close()
        assert len(firings) == 6 and {f.run for f in firings} == {r.id for r in _runs(home)}  # each file: one run
        assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == [f"invoice-{i}.txt" for i in range(6)]
        # the same invoice again, and renamed: known by its content, no new run
        shutil.copy(tmp_path / "processed" / "invoice-3.txt", inbox / "invoice-3.txt")
        shutil.copy(tmp_path / "processed" / "invoice-4.txt", inbox / "renamed.txt")
        assert wait_for(lambda: not list(inbox.iterdir()), 30)  # taken, moved aside
        time.sleep(1)
        assert len(_runs(home)) == 6
        said = studiox_triggers(tmp_path, home)
        assert "intake/inbox/1" in said and "invoice-" in said
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=60)
    assert "trigger intake/inbox/1: files *.txt in inbox → input note" in out


def studiox_triggers(tmp_path: Path, home: Path) -> str:
    from conftest import cli

    return cli("triggers", tmp_path / "intake.yaml", "--home", home, env={"COLUMNS": "200"}).stdout


class Clock:
    def __init__(self, at: datetime):
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def test_a_cron_trigger_fires_at_its_times_on_a_controllable_clock_and_catches_up_once(tmp_path):
    berlin = ZoneInfo("Europe/Berlin")
    text = ("mission: morning\ntriggers:\n  - schedule: {cron: '0 7 * * 1-5', timezone: Europe/Berlin, catch_up: true}\n"
            "steps:\n  - {id: hello, set: {ok: true}}\n")
    mission = load(write_mission(tmp_path / "morning.yaml", text))
    home = tmp_path / "home"
    api.open_store(home, create=True).close()
    driven: list[str] = []
    clock = Clock(datetime(2026, 11, 23, 6, 59, tzinfo=berlin))  # a Monday, a minute early
    service = Service(home, [mission], driven.append, clock=clock)
    service.tick()
    assert driven == []
    clock.now = datetime(2026, 11, 23, 7, 0, 30, tzinfo=berlin).timestamp()
    service.tick()
    service.tick()
    assert len(driven) == 1  # once, however often it ticks
    clock.now = datetime(2026, 11, 24, 7, 0, 1, tzinfo=berlin).timestamp()  # Tuesday
    service.tick()
    assert len(driven) == 2
    clock.now = datetime(2026, 11, 28, 9, 0, tzinfo=berlin).timestamp()  # Saturday (none at weekends)
    service.tick()
    assert len(driven) == 5  # the ticks came late while it ran: Wednesday, Thursday and Friday, once each
    service.close()
    # down from Friday 09:00 to Monday 12:00: the missed Monday 07:00 runs once at start
    clock.now = datetime(2026, 11, 30, 12, 0, tzinfo=berlin).timestamp()
    again = Service(home, [mission], driven.append, clock=clock)
    again.tick()
    ledger = Ledger(home)
    keys = [f.key for f in ledger.all()]
    ledger.close()
    assert keys[-1] == "2026-11-30T06:00:00+00:00" and len(keys) == len(set(keys)) == 6
    again.close()


def test_an_approval_with_a_two_second_deadline_expires_and_reaches_its_on_timeout_verdict(tmp_path, studiox):
    from studiox.portal.drives import Drives

    mission = write_mission(tmp_path / "deadline.yaml", (
        "mission: deadline\nsteps:\n  - id: ask\n    set: {x: 1}\n"
        "    approval: {required: true, timeout: 2s, on_timeout: {verdict: Expired, note: nobody answered}}\n"
        "verdict: {choices: [Done, Expired], value: Done}\n"))
    home = tmp_path / "home"
    parked = studiox("run", mission, "--no-input", "--home", home)
    assert parked.returncode == 3
    run_id = parked.stdout.split()[1]
    (home / "logs").mkdir(exist_ok=True)
    drives = Drives(home)
    service = Service(home, [load(mission)], drives.drive)
    try:
        def finished() -> bool:
            service.tick()
            return json.loads(studiox("status", run_id, "--json", "--home", home).stdout)["status"] == "succeeded"

        assert wait_for(finished, 60)  # nobody typed resume
    finally:
        service.close()
        drives.stop_all()
    state = json.loads(studiox("status", run_id, "--json", "--home", home).stdout)
    assert state["verdict"] == "Expired" and state["note"] == "nobody answered"


def test_a_webhook_with_a_bad_signature_starts_nothing_and_a_good_one_starts_one_run(tmp_path, monkeypatch):
    from studiox.portal.app import create_app

    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    (tmp_path / "missions").mkdir()
    write_mission(tmp_path / "missions" / "hooked.yaml", (
        "mission: hooked\ninputs: {invoice: {type: string}}\n"
        "triggers:\n  - webhook: {path: /hooks/invoices, secret_env: HOOK_SECRET}\n"
        "steps:\n  - {id: seen, set: {invoice: '${{ inputs.invoice }}'}}\n"))
    home = tmp_path / "home"
    body = json.dumps({"invoice": "INV-7"}).encode()
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    with TestClient(create_app(home, [tmp_path / "missions" / "hooked.yaml"], service=True)) as client:
        assert client.post("/hooks/invoices", content=body).status_code == 401
        assert client.post("/hooks/invoices", content=body, headers={"X-Studiox-Signature": "sha256=00"}).status_code \
            == 401
        assert _runs(home) == []
        started = client.post("/hooks/invoices", content=body, headers={"X-Studiox-Signature": good})
        assert started.status_code == 201, started.text
        again = client.post("/hooks/invoices", content=body, headers={"X-Studiox-Signature": good})
        assert again.status_code == 200 and again.json()["run"] == started.json()["run"]  # a retried delivery
        assert client.post("/hooks/nowhere", content=body, headers={"X-Studiox-Signature": good}).status_code == 404
        assert wait_for(lambda: [r.status for r in _runs(home)] == ["succeeded"], 60)


def test_a_run_cut_off_by_a_crash_is_resumed_when_the_service_starts(tmp_path, studiox):
    from studiox.portal.drives import Drives

    mission = write_mission(tmp_path / "steps.yaml", (
        "mission: steps\nsteps:\n  - {id: a, set: {x: 1}}\n  - {id: b, set: {y: 2}}\n  - {id: c, set: {z: 3}}\n"
        "verdict: {choices: [Done], value: Done}\n"))
    home = tmp_path / "home"
    killed = subprocess.run([sys.executable, "-m", "studiox", "run", str(mission), "--home", str(home), "-q"],
                            env={**os.environ, "STUDIOX_TEST_KILL_AFTER_EVENT": "3"}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    run_id = killed.stdout.split()[0]
    assert json.loads(studiox("status", run_id, "--json", "--home", home).stdout)["status"] == "interrupted"
    (home / "logs").mkdir(exist_ok=True)
    drives = Drives(home)
    service = Service(home, [load(mission)], drives.drive)
    try:
        service.recover()
        assert wait_for(lambda: json.loads(studiox("status", run_id, "--json", "--home", home).stdout)["status"]
                         == "succeeded", 60)
    finally:
        service.close()
        drives.stop_all()


def test_a_triggered_run_gets_the_defaults_of_its_inputs_and_inputs_that_do_not_fit_start_nothing(tmp_path):
    text = ("mission: defaults\ninputs: {note: {type: string}, limit: {type: number, default: 5}}\n"
            "triggers:\n  - webhook: {path: /hooks/d, secret_env: D_SECRET}\n"
            "steps:\n  - {id: s, set: {v: '${{ inputs.limit }}'}}\n")
    mission = load(write_mission(tmp_path / "defaults.yaml", text))
    home = tmp_path / "home"
    api.open_store(home, create=True).close()
    os.environ["D_SECRET"] = "k"
    try:
        service = Service(home, [mission], lambda run: None)
        body = json.dumps({"note": "hi"}).encode()
        signed = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
        status, answer = service.webhook("/hooks/d", body, signed)
        assert status == 201
        store = api.need_store(home)
        assert store.event(answer["run"], 1)["inputs"] == {"note": "hi", "limit": 5}
        store.close()
        bad = json.dumps({"note": 3}).encode()
        status, answer = service.webhook("/hooks/d", bad, "sha256=" + hmac.new(b"k", bad, hashlib.sha256).hexdigest())
        assert status == 409 and "not started" in answer["error"] and "note" in answer["error"]
        service.close()
    finally:
        del os.environ["D_SECRET"]
