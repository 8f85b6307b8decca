"""The postgres backend end to end: real PostgreSQL, real `studiox worker` processes (DBOS), the
invoice mission with its real ERP server, approvals from other OS users (four eyes), kill -9.

Each test has its own database on the session's throwaway server, its own copy of missions/ (and
so of the ERP's SQLite file, whose payments are what the tests count)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import wait_for
from test_approvers_cli import BOB, CAROL, _unmeasured, users  # noqa: F401 - the fixture that makes the test users

ROOT = Path(__file__).resolve().parent.parent
INVOICE = ["missions/invoice.yaml", "--input", "invoice=@missions/data/invoice-INV-2291.txt",
           "--replay", "missions/data/replies/invoice-INV-2291.yaml"]


class Cluster:
    """One database, a copy of missions/, the CLI, and the workers started on them."""

    def __init__(self, url: str, base: Path, shared: Path):
        import psycopg

        self.url, self.base, self.shared = url, base, shared
        self.db = psycopg.connect(url, autocommit=True)
        shutil.copytree(ROOT / "missions", base / "missions", ignore=shutil.ignore_patterns("erp.sqlite*"))
        self.workers: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "STUDIOX_BACKEND": "postgres", "STUDIOX_DATABASE_URL": url,
                    "STUDIOX_HOME": str(base / ".studiox"), "NO_COLOR": "1", "COLUMNS": "200"}

    def studiox(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "studiox", *args], cwd=self.base, env=self.env, text=True,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def as_user(self, user: str, *args: str) -> subprocess.Popen:
        """``studiox ARGS`` as another OS user (with a state folder of their own: the runs are in the database)."""
        setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                   "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
        env = _unmeasured({**self.env, "HOME": str(self.shared), "STUDIOX_HOME": str(self.shared / user)})
        return subprocess.Popen(setpriv + [sys.executable, "-m", "studiox", *args], cwd=self.base, env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def decide_as(self, user: str, *args: str) -> subprocess.CompletedProcess:
        process = self.as_user(user, *args)
        stdout, stderr = process.communicate(timeout=120)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    # ------------------------------------------------------------------ workers

    def worker(self, name: str, *options: str) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "a")  # noqa: SIM115 - the worker holds it
        process = subprocess.Popen([sys.executable, "-m", "studiox", "worker", "--id", name, "--json",
                                    "--takeover-after", "2", "--grace", "10", *options], cwd=self.base,
                                   env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.workers[name] = process
        assert wait_for(lambda: any(e.get("event") == "ready" and e.get("pid") == process.pid
                                    for e in self.log(name)), 60), (self.base / f"{name}.log").read_text()
        return process

    def log(self, name: str) -> list[dict]:
        lines = (self.base / f"{name}.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, name: str) -> None:
        process = self.workers.pop(name)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, (self.base / f"{name}.log").read_text()

    def close(self) -> None:
        for process in self.workers.values():
            process.kill()
            process.wait()
        self.db.close()

    # ------------------------------------------------------------------ what happened

    def payments(self) -> list[tuple]:
        import sqlite3

        with sqlite3.connect(self.base / "missions" / "data" / "erp.sqlite") as erp:
            return erp.execute("SELECT invoice_number, amount, idempotency_key FROM payments "
                               "WHERE invoice_number = 'INV-2291'").fetchall()

    def segments(self) -> list[tuple[str, str]]:
        """The segments asked for (workflow id, status), in id order."""
        return self.db.execute("SELECT workflow_uuid, status FROM dbos.workflow_status WHERE name = 'studiox.segment' "
                               "ORDER BY workflow_uuid").fetchall()

    def events(self, run_id: str, kind: str) -> list[dict]:
        rows = self.db.execute("SELECT body FROM events WHERE run = %s AND type = %s ORDER BY seq",
                               (run_id, kind)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def status(self, run_id: str) -> dict:
        shown = self.studiox("status", run_id, "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def start_invoice(self) -> tuple[str, str]:
        """Run the invoice mission (queued, followed with --wait) until it parks: (run, decision)."""
        started = self.studiox("run", *INVOICE, "--wait", "--json")
        assert started.returncode == 3, started.stdout + started.stderr  # parked for the payment's approval
        outcome = json.loads(started.stdout)
        return outcome["run"], outcome["waiting"]["decision"]

    def wait_until_ended(self, run_id: str, timeout: float = 120) -> dict:
        state: dict = {}

        def ended() -> bool:
            state.update(self.status(run_id))
            return state["status"] in ("succeeded", "failed", "cancelled", "waiting")

        assert wait_for(ended, timeout), f"run {run_id} did not finish or park: {json.dumps(state)[:2000]}"
        return state


@pytest.fixture
def cluster(postgres_url, tmp_path, users):  # noqa: F811 - users: the fixture imported above
    shared = Path(tempfile.mkdtemp(prefix="sxtest-approvers-"))
    shared.chmod(0o777)
    found = Cluster(postgres_url, tmp_path, shared)
    yield found
    found.close()
    shutil.rmtree(shared, ignore_errors=True)


def test_an_invoice_approved_while_no_worker_lives_is_paid_once_when_workers_start(cluster):
    cluster.worker("w1")
    cluster.worker("w2")
    run_id, decision = cluster.start_invoice()
    cluster.stop("w1")
    cluster.stop("w2")
    assert cluster.db.execute("SELECT count(*) FROM workers").fetchone() == (0,)  # gone, and said so

    approved = cluster.decide_as(BOB, "approve", decision, "--note", "matches PO-1042")
    assert approved.returncode == 0, approved.stderr
    assert f"run {run_id} is queued for a worker" in approved.stdout
    assert f"no worker is running; run {run_id} goes on when one starts" in approved.stderr
    time.sleep(1.5)
    assert cluster.payments() == []  # approved, not yet paid: no worker drives the run
    assert cluster.status(run_id)["status"] == "running"  # a segment waits in the queue for it
    assert "queued for a worker (studiox worker): none has taken it up yet" in cluster.studiox("status", run_id).stdout
    woken = f"{run_id}/decided/{decision}"
    assert (woken, "ENQUEUED") in cluster.segments()

    cluster.worker("w1")
    cluster.worker("w2")
    ended = cluster.wait_until_ended(run_id)
    assert (ended["status"], ended["verdict"]) == ("succeeded", "Approved with note"), ended
    assert len(cluster.payments()) == 1
    assert sorted(cluster.segments()) == sorted([(f"{run_id}/start", "SUCCESS"), (woken, "SUCCESS")])
    drivers = [e["worker"] for w in ("w1", "w2") for e in cluster.log(w)
               if e.get("event") == "start" and e["segment"] == woken]
    assert len(drivers) == 1  # the wake-up, driven by one of the two


def test_two_approvers_at_once_make_one_outcome_and_wake_the_run_once(cluster):
    cluster.worker("w1")
    cluster.worker("w2")
    run_id, decision = cluster.start_invoice()
    resumed_before = len(cluster.events(run_id, "run_resumed"))

    both = [cluster.as_user(user, "approve", decision, "--note", f"ok by {user}", "--json") for user in (BOB, CAROL)]
    answers = []
    for process in both:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        answers.append(json.loads(stdout))
    assert sorted(a["changed"] for a in answers) == [False, True]  # one outcome: the first writer's
    winner = next(a for a in answers if a["changed"])
    assert [a["decision"]["outcome"]["by"] for a in answers] == [winner["decision"]["outcome"]["by"]] * 2

    ended = cluster.wait_until_ended(run_id)
    assert (ended["status"], ended["verdict"]) == ("succeeded", "Approved with note"), ended
    assert len(cluster.payments()) == 1
    woken = [s for s, _ in cluster.segments() if "/decided/" in s]
    assert woken == [winner["run"]["segment"]]  # one wake-up
    assert len(cluster.events(run_id, "run_resumed")) == resumed_before + 1


def _killed_mid_payment(cluster, workers: tuple[str, ...]) -> tuple[str, str, float, int]:
    """An invoice approved and being paid by one of ``workers`` (the ERP books the payment, then takes
    8 s to answer): that worker is killed with SIGKILL. (run, the killed worker, when, run_resumed before)."""
    pay = cluster.base / "missions" / "payments" / "pay-supplier.yaml"
    pay.write_text(pay.read_text().replace('"--db", "../data/erp.sqlite"]', '"--db", "../data/erp.sqlite", '
                                                                            '"--pay-delay", "8"]'))
    for name in workers:
        cluster.worker(name)
    run_id, decision = cluster.start_invoice()
    approved = cluster.decide_as(BOB, "approve", decision, "--json")
    assert approved.returncode == 0, approved.stderr
    child = json.loads(approved.stdout)["decision"]["run"]
    segment = json.loads(approved.stdout)["run"]["segment"]

    # the payment is booked, and the ERP has not answered yet: now the driving worker dies
    assert wait_for(lambda: cluster.events(child, "action_started") and cluster.payments(), 120), "no payment call"
    driver = next(e["worker"] for w in workers for e in cluster.log(w)
                  if e.get("event") == "start" and e.get("segment") == segment)
    resumed_before = len(cluster.events(run_id, "run_resumed"))
    killed_at = time.monotonic()
    cluster.workers[driver].send_signal(signal.SIGKILL)
    cluster.workers.pop(driver).wait()
    return run_id, driver, killed_at, resumed_before


def _paid_once(cluster, run_id: str) -> dict:
    """The run ends paid, with one payment; an in-doubt call on the way is settled as a person would."""
    ended = cluster.wait_until_ended(run_id)
    if ended["status"] == "waiting":  # the cut-off call is in doubt: a person says what happened
        in_doubt = ended["waiting_for"]
        card = cluster.studiox("decision", "show", in_doubt, "--json")
        assert json.loads(card.stdout)["in_doubt"], card.stdout
        retried = cluster.decide_as(BOB, "approve", in_doubt, "--retry", "--json")  # the ERP's key makes it safe
        assert retried.returncode == 0, retried.stderr
        ended = cluster.wait_until_ended(run_id)
    assert (ended["status"], ended["verdict"]) == ("succeeded", "Approved with note"), ended
    assert len(cluster.payments()) == 1  # never two
    return ended


def test_a_worker_killed_during_the_payment_is_taken_over_and_the_invoice_is_paid_once(cluster, measured):
    run_id, driver, killed_at, resumed_before = _killed_mid_payment(cluster, ("w1", "w2"))
    survivor = "w2" if driver == "w1" else "w1"
    assert wait_for(lambda: len(cluster.events(run_id, "run_resumed")) > resumed_before, 60), \
        (cluster.base / f"{survivor}.log").read_text()  # the survivor took the run up
    taken_up = time.monotonic() - killed_at
    ended = _paid_once(cluster, run_id)
    settled = time.monotonic() - killed_at
    takeover = next((e for e in cluster.log(survivor) if e.get("event") == "takeover"), None)
    assert takeover is not None, (cluster.base / f"{survivor}.log").read_text()
    assert takeover["from"] == driver and takeover["segments"] >= 1
    measured(f"failover: worker {survivor} took the run up {taken_up:.1f} s after worker {driver} was killed "
             f"(takeover after 2 s of silence); the run {ended['status']} {settled:.1f} s after the kill")


def test_the_only_worker_killed_during_the_payment_and_restarted_with_its_id_pays_once(cluster, measured):
    run_id, driver, killed_at, resumed_before = _killed_mid_payment(cluster, ("w1",))
    time.sleep(1)
    assert cluster.status(run_id)["status"] == "running"  # its segment is still the dead worker's
    restarted = time.monotonic()
    cluster.worker("w1", "--takeover-after", "600")  # no takeover: DBOS's recovery at launch, by executor id
    assert wait_for(lambda: len(cluster.events(run_id, "run_resumed")) > resumed_before, 60), \
        (cluster.base / "w1.log").read_text()  # the restarted worker took its run up
    taken_up = time.monotonic() - restarted
    _paid_once(cluster, run_id)
    assert not any(e.get("event") == "takeover" for e in cluster.log("w1"))
    measured(f"restart: worker w1, killed mid-payment and started again with its id, took its run up "
             f"{taken_up:.1f} s after it was started (the whole outage: {time.monotonic() - killed_at:.1f} s)")


TIMERS = """mission: timers
inputs: {note: {type: string}}
triggers:
  - inbox: {path: inbox, pattern: '*.txt', input: note, settle: 0.2s, then: {move_to: processed}}
steps:
  - id: ask
    set: {first: '${{ split(inputs.note)[0] }}'}
    approval: {required: true, timeout: 3s, on_timeout: {verdict: Expired, note: nobody answered}}
verdict: {choices: [Done, Expired], value: Done, note: '${{ steps.ask.output.first }}'}
"""


def test_workers_watch_an_inbox_once_across_two_and_a_deadline_expires_with_nobody_resuming(cluster):
    mission = cluster.base / "timers.yaml"
    mission.write_text(TIMERS)
    (cluster.base / "inbox").mkdir()
    cluster.worker("w1", str(mission))
    cluster.worker("w2", str(mission))
    for n in range(3):
        (cluster.base / "inbox" / f"note-{n}.txt").write_text(f"note{n} from the inbox\n")

    def runs() -> list[dict]:
        listed = cluster.studiox("runs", "--json")
        assert listed.returncode == 0, listed.stderr
        return json.loads(listed.stdout)

    assert wait_for(lambda: len(runs()) == 3 and all(r["status"] == "succeeded" for r in runs()), 90), \
        json.dumps(runs())  # three runs, one per file, each expired
    assert sorted(cluster.status(r["id"])["note"] for r in runs()) == ["nobody answered"] * 3
    assert {r["verdict"] for r in runs()} == {"Expired"}
    assert sorted(p.name for p in (cluster.base / "processed").iterdir()) == [f"note-{n}.txt" for n in range(3)]
    firings = cluster.db.execute("SELECT count(*), count(DISTINCT run) FROM firings").fetchone()
    assert firings == (3, 3)  # each file fired once, though two workers watched the folder
    time.sleep(3)
    assert len(runs()) == 3  # and nothing more came of them


def test_the_portal_on_postgres_approves_a_payment_that_a_worker_then_makes_once(cluster, monkeypatch):
    from starlette.testclient import TestClient

    from studiox import users as accounts
    from studiox.portal.app import create_app

    cluster.worker("w1")
    run_id, decision = cluster.start_invoice()
    for name, value in cluster.env.items():
        if name.startswith("STUDIOX_"):
            monkeypatch.setenv(name, value)
    home = cluster.base / "portal"
    app = create_app(home, [cluster.base / "missions" / "invoice.yaml"])
    accounts.add(home, "alice", "approver", "alice-password")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.post("/login", data={"name": "alice", "password": "alice-password", "next": "/decisions"})
        assert page.status_code == 200 and decision in page.text  # the queue, read from the database
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        done = client.post(f"/decisions/{decision}/approve", data={"csrf": csrf, "confirm": "yes", "note": "ok"},
                           follow_redirects=False)
        assert done.status_code == 303, done.text
        ended = cluster.wait_until_ended(run_id)
        assert (ended["status"], ended["verdict"]) == ("succeeded", "Approved with note"), ended
        assert "succeeded" in client.get(f"/runs/{run_id}").text
    assert len(cluster.payments()) == 1
    assert [s for s, _ in cluster.segments() if "/decided/" in s] == [f"{run_id}/decided/{decision}"]


def test_reading_runs_and_decisions_on_postgres_never_imports_dbos(cluster):
    started = cluster.studiox("run", *INVOICE)  # no worker: queued (asking for a segment may import DBOS)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[1]
    for command in (["runs"], ["status", run_id], ["decisions"], ["log", run_id], ["show", run_id],
                    ["audit", "verify", "--all"], ["audit", "export", "--format", "jsonl"]):
        shown = subprocess.run([sys.executable, "-X", "importtime", "-m", "studiox", *command], cwd=cluster.base,
                               env=cluster.env, text=True, capture_output=True, timeout=60)
        assert shown.returncode == 0, (command, shown.stderr[-2000:])
        imported = {line.split("|")[-1].strip().split(".")[0] for line in shown.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "psycopg" in imported and "dbos" not in imported, command  # (it read the database, without DBOS)


def test_a_worker_without_a_usable_database_says_so_and_exits_2(tmp_path):
    env = {**os.environ, "STUDIOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    env.pop("STUDIOX_BACKEND", None)
    local = subprocess.run([sys.executable, "-m", "studiox", "worker"], env=env, text=True, capture_output=True,
                           timeout=60)
    assert local.returncode == 2 and "set STUDIOX_BACKEND=postgres" in local.stderr
    down = subprocess.run([sys.executable, "-m", "studiox", "--backend", "postgres", "worker"], text=True,
                          capture_output=True, timeout=60,
                          env={**env, "STUDIOX_DATABASE_URL": "postgresql://studiox:secret@127.0.0.1:1/none"})
    assert down.returncode == 2, down.stderr
    assert "cannot use the database postgresql://studiox:***@127.0.0.1:1/none" in down.stderr
    assert "secret" not in down.stderr + down.stdout


def test_resume_and_reject_on_postgres_go_through_the_workers(cluster):
    cluster.worker("w1")
    run_id, decision = cluster.start_invoice()
    again = cluster.studiox("resume", run_id, "--wait", "--json")  # a worker takes it up, and it parks again
    assert again.returncode == 3, again.stdout + again.stderr
    assert json.loads(again.stdout)["waiting"]["decision"] == decision
    resumes = [s for s, status in cluster.segments() if "/resume/" in s and status == "SUCCESS"]
    assert len(resumes) == 1 and resumes[0].startswith(f"{run_id}/resume/")

    rejected = cluster.decide_as(BOB, "reject", decision, "--reason", "not ours", "--resume")
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr  # followed until the run finished
    ended = cluster.status(run_id)
    assert ended["status"] == "succeeded" and ended["verdict"] == "Rejected", ended
    assert cluster.payments() == []
    assert (f"{run_id}/decided/{decision}", "SUCCESS") in cluster.segments()
