"""Notifications: derived from the journal by a Notifier, delivered to a real local HTTP receiver, a real
command and a real SMTP server (aiosmtpd), retried with backoff, recorded in notifications.db, never twice."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import write_mission

from studiox.errors import MissionInvalid
from studiox.mission import load
from studiox.notify import RETRY_IN, Notifier, deliveries, read_settings


class Clock:
    """The notifier's time, moved by the test (so no test waits out a backoff)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Receiver:
    """A local HTTP server that keeps every JSON body POSTed to it, answering ``codes`` in turn, then 200."""

    def __init__(self, codes: list[int] | None = None):
        self.bodies: list[dict] = []
        self.codes = list(codes or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.bodies.append(json.loads(body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"try later")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def start(codes: list[int] | None = None) -> Receiver:
        started.append(Receiver(codes))
        return started[-1]

    yield start
    for r in started:
        r.close()


def approval_mission(path: Path, notify: str) -> Path:
    """A mission whose one step waits for an approval (time limit 1h), with ``notify`` as its notify: list."""
    return write_mission(path, (
        "mission: approve-me\n"
        f"notify:\n{notify}"
        "steps:\n"
        "  - id: ok\n"
        "    set: {amount: 120}\n"
        "    approval: {required: true, timeout: 1h}\n"
        "verdict: {choices: [Done], value: Done, note: 'amount ${{ steps.ok.output.amount }}'}\n"))


def park(studiox, mission: Path) -> tuple[str, str]:
    """Run the mission without a terminal, so it parks; (run id, decision id)."""
    parked = studiox("run", mission, "--no-input")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    decision = json.loads(studiox("decisions", "--json").stdout)[0]
    return decision["run"], decision["id"]


def approve(studiox, decision_id: str) -> None:
    done = studiox("approve", decision_id, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- webhooks


def test_a_webhook_hears_of_a_decision_waiting_then_of_the_run_finished(studiox, tmp_path, receiver):
    hook = receiver()
    mission = approval_mission(tmp_path / "m.yaml", f"  - on: [decision_waiting, run_finished]\n"
                                                    f"    webhook: {hook.url}\n")
    notifier = Notifier(studiox.home, {"approve-me": load(mission)})
    assert notifier.tick() == []  # no state folder yet: what it will hold is news

    run_id, decision_id = park(studiox, mission)
    told = notifier.tick()
    assert [(d.kind, d.status, d.attempts, d.channel) for d in told] == [("decision_waiting", "delivered", 1,
                                                                           "webhook")]
    assert told[0].address == f"http://{hook.url.split('/')[2]}/…"  # the webhook's path (its secret) left out
    [waiting] = hook.bodies
    assert waiting["event"] == "decision_waiting" and waiting["decision"] == decision_id
    assert (waiting["mission"], waiting["run"], waiting["step"]) == ("approve-me", run_id, "ok")
    assert waiting["action"] == {"kind": "step", "target": "ok", "arguments": {"kind": "set", "inputs": {"amount": 120}}}
    assert waiting["link"] == f"/decisions/{decision_id}" and waiting["expires_at"]
    assert waiting["text"] == (f'approve-me: a decision is waiting on ok — {{"amount": 120}} (run {run_id}, decision '
                               f'{decision_id}, expires {waiting["expires_at"]}) /decisions/{decision_id}')

    approve(studiox, decision_id)
    told = notifier.tick()
    assert [(d.kind, d.status, d.run) for d in told] == [("run_finished", "delivered", run_id)]
    finished = hook.bodies[1]
    assert finished["event"] == "run_finished" and finished["status"] == "succeeded"
    assert finished["text"] == f"approve-me: run {run_id} succeeded — verdict: Done — amount 120 /runs/{run_id}"
    assert notifier.tick() == [] and len(hook.bodies) == 2  # nothing twice
    notifier.close()


def test_a_failing_webhook_is_tried_again_with_backoff_until_it_takes_the_message(studiox, tmp_path, receiver):
    hook = receiver([500, 500])
    mission = approval_mission(tmp_path / "m.yaml", f"  - {{on: [decision_waiting], webhook: '{hook.url}'}}\n")
    clock = Clock()
    notifier = Notifier(studiox.home, {}, clock=clock)  # the mission as its run started with it
    notifier.tick()
    park(studiox, mission)

    [first] = notifier.tick()
    assert (first.status, first.attempts, first.error) == ("pending", 1, "HTTP 500: try later")
    assert first.next_at == clock.now + RETRY_IN[0]
    clock.now += RETRY_IN[0] - 1
    assert notifier.tick() == []  # not due yet
    clock.now += 1
    [second] = notifier.tick()
    assert (second.status, second.attempts) == ("pending", 2)
    clock.now += RETRY_IN[1]
    [third] = notifier.tick()
    assert (third.status, third.attempts, third.error) == ("delivered", 3, None)
    assert len(hook.bodies) == 3 and all(b["event"] == "decision_waiting" for b in hook.bodies)
    [recorded] = deliveries(studiox.home)
    assert (recorded["status"], recorded["attempts"], recorded["kind"]) == ("delivered", 3, "decision_waiting")
    clock.now += 3600
    assert notifier.tick() == []


def test_nothing_is_sent_twice_across_a_restart_of_the_notifier(studiox, tmp_path, receiver):
    hook = receiver()
    mission = approval_mission(tmp_path / "m.yaml", f"  - {{on: [decision_waiting, run_finished], "
                                                    f"webhook: '{hook.url}'}}\n")
    first = Notifier(studiox.home, {})
    first.tick()
    _, decision_id = park(studiox, mission)
    assert [d.kind for d in first.tick()] == ["decision_waiting"]
    first.close()

    again = Notifier(studiox.home, {})
    assert again.tick() == [] and len(hook.bodies) == 1
    approve(studiox, decision_id)
    assert [d.kind for d in again.tick()] == ["run_finished"]
    assert [d.kind for d in Notifier(studiox.home, {}).tick()] == []
    assert [b["event"] for b in hook.bodies] == ["decision_waiting", "run_finished"]
    assert [(d["kind"], d["status"]) for d in deliveries(studiox.home)] == [("run_finished", "delivered"),
                                                                            ("decision_waiting", "delivered")]


def test_a_fresh_notifier_skips_history_but_tells_of_decisions_still_pending(studiox, tmp_path, receiver):
    hook = receiver()
    mission = approval_mission(tmp_path / "m.yaml", f"  - {{on: [decision_waiting, run_finished], "
                                                    f"webhook: '{hook.url}'}}\n")
    _, done = park(studiox, mission)
    approve(studiox, done)  # a run that finished before anyone listened
    _, pending = park(studiox, mission)

    told = Notifier(studiox.home, {}).tick()
    assert [(d.kind, d.decision) for d in told] == [("decision_waiting", pending)]


def test_decision_expiring_is_told_once_when_the_clock_passes_its_deadline_less_before(studiox, tmp_path,
                                                                                     receiver):
    hook = receiver()
    mission = approval_mission(tmp_path / "m.yaml", f"  - {{on: [decision_expiring], before: 10m, "
                                                    f"webhook: '{hook.url}'}}\n")
    clock = Clock()
    notifier = Notifier(studiox.home, {}, clock=clock)
    notifier.tick()
    _, decision_id = park(studiox, mission)
    expires = json.loads(studiox("decision", "show", decision_id, "--json").stdout)["expires_at"]
    deadline = __import__("datetime").datetime.fromisoformat(expires).timestamp()

    assert notifier.tick() == []  # waiting is not what this target asked about
    clock.now = deadline - 600 - 1
    assert notifier.tick() == []
    clock.now = deadline - 600 + 30
    [told] = notifier.tick()
    assert (told.kind, told.decision, told.status) == ("decision_expiring", decision_id, "delivered")
    assert hook.bodies[0]["text"].startswith(f"approve-me: decision {decision_id} on ok expires in 9 minutes")
    clock.now = deadline - 60
    assert notifier.tick() == [] and len(hook.bodies) == 1


def test_a_sub_missions_decision_is_told_to_the_parents_targets_once(studiox, tmp_path, receiver):
    hook = receiver()
    write_mission(tmp_path / "child.yaml", "mission: child\nsteps:\n  - id: ok\n    set: {amount: 7}\n"
                                           "    approval: {required: true}\n")
    parent = write_mission(tmp_path / "parent.yaml", (
        f"mission: parent\nnotify:\n  - {{on: [decision_waiting, run_finished], webhook: '{hook.url}'}}\n"
        "steps:\n  - {id: sub, mission: child.yaml}\n"))
    notifier = Notifier(studiox.home, {})
    notifier.tick()
    parked = studiox("run", parent, "--no-input")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    [decision] = json.loads(studiox("decisions", "--json").stdout)

    [told] = notifier.tick()  # the child's waiting and the parent's: one decision, told once
    assert (told.kind, told.decision, told.mission) == ("decision_waiting", decision["id"], "child")
    approve(studiox, decision["id"])
    told = notifier.tick()
    assert [(d.kind, d.mission) for d in told] == [("run_finished", "parent")]  # the child has no notify:


# ---------------------------------------------------------------- commands and mail


def test_a_command_gets_the_event_as_json_on_stdin(studiox, tmp_path):
    script = tmp_path / "tell.py"
    script.write_text("import sys\nwith open(sys.argv[1], 'a') as f:\n    f.write(sys.stdin.read() + '\\n')\n")
    told_file = tmp_path / "told.jsonl"
    mission = write_mission(tmp_path / "m.yaml", (
        "mission: quick\n"
        f"notify:\n  - on: [run_finished]\n    command: [{sys.executable}, {script}, {told_file}]\n"
        "steps:\n  - {id: a, set: {x: 1}}\n"))
    notifier = Notifier(studiox.home, {})
    notifier.tick()
    done = studiox("run", mission)
    assert done.returncode == 0, done.stdout + done.stderr

    [told] = notifier.tick()
    assert (told.kind, told.status, told.channel, told.address) == ("run_finished", "delivered", "command",
                                                                    sys.executable)
    [event] = [json.loads(line) for line in told_file.read_text().splitlines()]
    assert event["event"] == "run_finished" and event["status"] == "succeeded" and event["mission"] == "quick"
    assert event["text"].startswith(f"quick: run {event['run']} succeeded")


def test_a_command_that_keeps_failing_is_given_up_with_its_error_in_the_ledger(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", (
        "mission: quick\n"
        f"notify:\n  - on: [run_finished]\n    command: [{sys.executable}, -c, 'import sys; "
        "sys.stderr.write(\"no route\"); sys.exit(3)']\n"
        "steps:\n  - {id: a, set: {x: 1}}\n"))
    clock = Clock()
    notifier = Notifier(studiox.home, {}, clock=clock)
    notifier.tick()
    assert studiox("run", mission).returncode == 0
    attempts = [notifier.tick()]
    for wait in RETRY_IN:
        clock.now += wait
        attempts.append(notifier.tick())
    assert [[(d.status, d.attempts) for d in tick] for tick in attempts] == [
        [("pending", 1)], [("pending", 2)], [("pending", 3)], [("pending", 4)], [("failed", 5)]]
    [recorded] = deliveries(studiox.home)
    assert recorded["status"] == "failed" and recorded["attempts"] == 5
    assert recorded["error"] == f"{sys.executable} ended with exit 3: no route"
    clock.now += 3600
    assert notifier.tick() == []  # given up: never tried again


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mail_reaches_an_smtp_server(studiox, tmp_path):
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.mails: list = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            self.mails.append(envelope)
            return "250 OK"

    inbox = Inbox()
    port = _free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        mission = write_mission(tmp_path / "m.yaml", (
            "mission: doomed\n"
            "notify:\n  - on: [run_failed]\n"
            f"    email: {{to: [ops@example.com], host: 127.0.0.1, port: {port}}}\n"
            "steps:\n  - {id: stop, fail: 'no budget left'}\n"))
        notifier = Notifier(studiox.home, {})
        notifier.tick()
        assert studiox("run", mission).returncode == 1
        [told] = notifier.tick()
        assert (told.kind, told.status, told.address) == ("run_failed", "delivered", "ops@example.com")
    finally:
        smtp.stop()
    [mail] = inbox.mails
    assert mail.rcpt_tos == ["ops@example.com"] and mail.mail_from == f"studiox@{socket.gethostname()}"
    text = mail.content.decode()
    assert "Subject: [studiox] doomed: run" in text and "failed" in text
    assert "no budget left" in text and "event: run_failed" in text


# ---------------------------------------------------------------- what messages say


def test_each_message_has_one_readable_line_of_text():
    from studiox.governance import Decision
    from studiox.notify.messages import about_decision, about_run_end, mail_subject

    request = {"run": "r1", "mission": "pay", "step": "post", "in_doubt": True, "requested_at": 0.0,
               "expires_at": None, "action": {"kind": "tool", "target": "erp.post_payment",
                                              "arguments": {"memo": "x" * 500}}}
    text = about_decision("decision_waiting", Decision("d1", request), 10.0)["text"]
    assert text.startswith('pay: a call was cut off: did it happen? A person is asked on post — erp.post_payment '
                           '{"memo": "xxx')
    assert "…" in text and len(text) < 350 and text.endswith("(run r1, decision d1) /decisions/d1")
    ended = about_run_end("run_finished", "r2", "pay", "INV-7", {"status": "cancelled", "reason": "duplicate"})
    assert ended["text"] == "pay: run r2 cancelled — duplicate /runs/r2" and ended["key"] == "INV-7"
    assert mail_subject({"text": "a\nb " + "y" * 300}).startswith("[studiox] a b yyy")
    assert len(mail_subject({"text": "y" * 300})) == len("[studiox] ") + 151


# ---------------------------------------------------------------- the settings file


def test_settings_yaml_adds_targets_for_every_mission(studiox, tmp_path, receiver):
    hook = receiver()
    mission = write_mission(tmp_path / "m.yaml", "mission: plain\nsteps:\n  - {id: a, set: {x: 1}}\n")
    notifier = Notifier(studiox.home, {})
    notifier.tick()
    assert studiox("run", mission).returncode == 0  # (makes the state folder)
    assert notifier.tick() == []  # nobody to tell yet
    (studiox.home / "settings.yaml").write_text(f"notify:\n  - on: [run_finished]\n    webhook: {hook.url}\n")
    assert studiox("run", mission).returncode == 0
    assert [d.kind for d in notifier.tick()] == ["run_finished"]
    assert hook.bodies[0]["mission"] == "plain"


def test_a_broken_settings_file_is_reported_where_it_is_wrong(tmp_path):
    (tmp_path / "settings.yaml").write_text("notify:\n  - on: [run_done]\n    webhook: http://x\n")
    with pytest.raises(MissionInvalid) as caught:
        read_settings(tmp_path)
    rendered = caught.value.render()
    assert "settings.yaml:2:" in rendered and "'run_done' is not allowed here" in rendered
    with pytest.raises(MissionInvalid):
        Notifier(tmp_path, {})
    (tmp_path / "settings.yaml").write_text("# nothing yet\n")
    assert read_settings(tmp_path) == {}


def test_run_ticks_until_it_is_told_to_stop(tmp_path):
    slept: list[float] = []
    Notifier(tmp_path / "home", {}, sleep=slept.append).run(lambda: len(slept) >= 3, every=0.5)
    assert slept == [0.5, 0.5, 0.5]
