"""The portal over HTTP (Starlette's test client, the real app, a real state folder): sessions,
CSRF, the login rate limit, static files, and decisions that cross faces with the CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import wait_for, write_mission
from starlette.testclient import TestClient

from studiox import users
from studiox.portal.app import create_app

PAGES = ["/", "/decisions", "/decisions/abc123", "/runs", "/runs/abc", "/runs/abc/events", "/runs/abc/export",
         "/runs/abc/verify", "/missions", "/missions/rec/start"]
ACTIONS = ["/decisions/abc123/approve", "/decisions/abc123/reject", "/decisions/abc123/claim",
           "/missions/rec/start", "/logout"]


def _recording(tmp_path: Path) -> tuple[Path, Path]:
    from test_integrations import SERVER

    log = tmp_path / "server-effects.jsonl"
    (tmp_path / "missions").mkdir()
    mission = write_mission(tmp_path / "missions" / "rec.yaml", (
        f"mission: rec\ninputs: {{label: {{type: string, default: x}}}}\nintegrations:\n  srv:\n    command: python\n"
        f"    args: [{json.dumps(str(SERVER))}, --log, {json.dumps(str(log))}]\n    env: {{RECORD_DELAY: '0'}}\n"
        "steps:\n  - {id: keep, tool: srv.record, arguments: {label: '${{ inputs.label }}'}, "
        "approval: {four_eyes: true}}\n"
        "verdict: {choices: [Kept], value: Kept, note: 'kept ${{ inputs.label }}'}\n"))
    return mission, log


@pytest.fixture
def portal(tmp_path):
    home = tmp_path / "home"
    mission, log = _recording(tmp_path)
    app = create_app(home, [mission])
    for name, role in (("vera", "viewer"), ("sam", "starter"), ("alice", "approver"), ("bob", "approver")):
        users.add(home, name, role, f"{name}-password")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, home, mission, log


def _login(client, name: str) -> str:
    """Log in; the page's CSRF token."""
    answer = client.post("/login", data={"name": name, "password": f"{name}-password", "next": "/decisions"})
    assert answer.status_code == 200, answer.text  # (followed the redirect)
    return _csrf(answer.text)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_without_a_session_every_page_redirects_to_the_login_and_every_action_is_refused(portal):
    client, *_ = portal
    for page in PAGES:
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), page
    for action in ACTIONS:
        assert client.post(action, data={"csrf": "x"}, follow_redirects=False).status_code == 401, action
    assert client.get("/healthz").json() == {"ok": True}  # for load balancers: no session needed


def test_a_form_without_its_csrf_token_is_refused_and_nothing_is_started(portal):
    client, home, *_ = portal
    _login(client, "sam")
    answer = client.post("/missions/rec/start", data={"label": "y"}, follow_redirects=False)
    assert answer.status_code == 403 and "CSRF" in answer.text
    answer = client.post("/missions/rec/start", data={"label": "y", "csrf": "forged"}, follow_redirects=False)
    assert answer.status_code == 403
    assert not (home / "studiox.db").exists() or client.get("/runs").text.count('href="/runs/') == 0


def test_a_wrong_password_gives_no_session_and_repeated_failures_slow_down_then_stop(portal):
    client, *_ = portal
    answer = client.post("/login", data={"name": "alice", "password": "wrong"}, follow_redirects=False)
    assert answer.status_code == 401 and "studiox_session" not in answer.headers.get("set-cookie", "")
    times = []
    for _ in range(4):
        started = time.perf_counter()
        client.post("/login", data={"name": "alice", "password": "wrong"})
        times.append(time.perf_counter() - started)
    assert times[-1] > times[0]  # each failure answers more slowly
    refused = client.post("/login", data={"name": "alice", "password": "alice-password"}, follow_redirects=False)
    assert refused.status_code == 429 and "too many failed logins" in refused.text  # even the right password
    assert "studiox_session" not in refused.headers.get("set-cookie", "")


def test_the_session_cookie_is_httponly_and_samesite_and_ends_when_the_password_changes(portal):
    client, home, *_ = portal
    answer = client.post("/login", data={"name": "bob", "password": "bob-password"}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/decisions", follow_redirects=False).status_code == 200
    users.set_password(home, "bob", "another-password")
    assert client.get("/decisions", follow_redirects=False).status_code == 303  # that session has ended


def _raw_get(app, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: straight to the ASGI app (an HTTP client folds '..' away before sending)."""
    import asyncio

    sent: list[dict] = []
    asked: list[bool] = []

    async def receive() -> dict:
        if not asked:
            asked.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # the client stays: no disconnect while the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_nothing_is_served_from_outside_the_static_folder(portal):
    client, *_ = portal
    assert client.get("/static/portal.css").status_code == 200
    assert _raw_get(client.app, "/static/portal.css")[0] == 200  # (the raw door reaches the static files)
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2f..%2fusers.py", "/static/../../etc/passwd"):
        answer = client.get(path)
        assert answer.status_code == 404 or "import" not in answer.text, path
        status, body = _raw_get(client.app, path)  # as sent, '..' and all
        assert status == 404 and b"import" not in body and b"root:" not in body, (path, status)


def test_a_viewer_sees_no_approve_button_and_a_forged_approval_is_refused(portal, studiox):
    client, home, mission, log = portal
    parked = studiox("run", mission, "--no-input", "--home", home)
    assert parked.returncode == 3, parked.stdout + parked.stderr
    decision = json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["id"]
    visitor = client.get("/login").text
    assert "<title>(1)" not in visitor and 'class="count"' not in visitor  # nothing of the queue before a login
    csrf = _login(client, "vera")
    assert "<title>(1)" in client.get("/runs").text  # a person logged in sees how many wait
    page = client.get(f"/decisions/{decision}").text
    assert "srv.record" in page and "Review and approve" not in page and "Reject" not in page
    forged = client.post(f"/decisions/{decision}/approve", data={"csrf": csrf, "confirm": "yes"},
                         follow_redirects=False)
    assert forged.status_code == 403
    assert json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["status"] == "pending"


def test_a_decision_made_in_the_portal_resumes_a_run_parked_by_the_cli_with_the_person_recorded(portal, studiox):
    client, home, mission, log = portal
    parked = studiox("run", mission, "--no-input", "--home", home, "--input", "label=portal")
    run_id = parked.stdout.split()[1]
    decision = json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["id"]
    csrf = _login(client, "alice")
    title = re.search(r"<title>(.*?)</title>", client.get("/decisions").text).group(1)
    assert title.startswith("(1) Decisions")  # the count, in the page title
    review = client.post(f"/decisions/{decision}/approve", data={"csrf": csrf, "note": "ok", "arg.label": "portal"})
    assert "You approve <code>srv.record</code>" in review.text  # the confirmation restates the action
    done = client.post(f"/decisions/{decision}/approve", data={"csrf": _csrf(review.text), "confirm": "yes",
                                                             "note": "ok", "arg.label": "portal"})
    assert done.status_code == 200 and f"Run {run_id}" in done.text
    assert wait_for(lambda: json.loads(studiox("status", run_id, "--json", "--home", home).stdout)["status"]
                     == "succeeded")
    assert [json.loads(line)["label"] for line in log.read_text().splitlines()] == ["portal"]
    shown = json.loads(studiox("decision", "show", decision, "--json", "--home", home).stdout)
    assert shown["outcome"]["by"] == "alice" and shown["outcome"]["note"] == "ok"


def test_an_edit_that_does_not_fit_is_refused_before_anything_is_recorded(tmp_path, studiox):
    from test_integrations import SERVER

    (tmp_path / "missions").mkdir()
    mission = write_mission(tmp_path / "missions" / "count.yaml", (
        f"mission: count\nintegrations:\n  srv:\n    command: python\n    args: [{json.dumps(str(SERVER))}, --log, "
        f"{json.dumps(str(tmp_path / 'log.jsonl'))}]\nsteps:\n  - {{id: n, tool: srv.unannotated, arguments: {{x: 1}}}}\n"))
    home = tmp_path / "home"
    app = create_app(home, [mission])
    users.add(home, "alice", "approver", "alice-password")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert studiox("run", mission, "--no-input", "--home", home).returncode == 3
        decision = json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["id"]
        csrf = _login(client, "alice")
        # x is a whole number in the tool's schema: "lots" never reaches the record, even when confirmed
        answer = client.post(f"/decisions/{decision}/approve", data={"csrf": csrf, "arg.x": "lots", "confirm": "yes"})
        assert answer.status_code == 400 and "--set x:" in answer.text
        assert json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["status"] == "pending"
        assert not (tmp_path / "log.jsonl").exists()


def test_a_decision_made_with_studiox_approve_shows_in_the_portal_and_a_rejection_needs_a_reason(portal, studiox):
    client, home, mission, log = portal
    studiox("run", mission, "--no-input", "--home", home, "--input", "label=one")
    first = json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["id"]
    csrf = _login(client, "bob")
    assert first in client.get("/decisions").text
    assert studiox("reject", first, "--reason", "not this one", "--home", home).returncode == 0
    assert first not in client.get("/decisions").text  # decided in the shell: gone from the inbox
    assert "rejected by" in client.get(f"/decisions/{first}").text
    studiox("run", mission, "--no-input", "--home", home, "--input", "label=two", "--allow-duplicate")
    second = json.loads(studiox("decisions", "--json", "--home", home).stdout)[0]["id"]
    missing = client.post(f"/decisions/{second}/reject", data={"csrf": csrf, "reason": "  "})
    assert missing.status_code == 400 and "a rejection needs a reason" in missing.text
    claimed = client.post(f"/decisions/{second}/claim", data={"csrf": csrf})
    assert "claimed by <strong>bob</strong>" in claimed.text


def test_sigterm_stops_the_server_cleanly_and_leaves_a_running_run_resumable(tmp_path, studiox):
    import os
    import signal
    import socket
    import subprocess
    import sys

    import httpx
    from test_integrations import SERVER

    (tmp_path / "missions").mkdir()
    write_mission(tmp_path / "missions" / "slow.yaml", (
        f"mission: slow\nintegrations:\n  srv:\n    command: python\n    args: [{json.dumps(str(SERVER))}, --log, "
        f"{json.dumps(str(tmp_path / 'log.jsonl'))}]\nsteps:\n  - {{id: wait, tool: srv.hang, arguments: {{seconds: 60}}}}\n"))
    home = tmp_path / "home"
    assert studiox("users", "add", "sam", "--role", "starter", "--password-stdin", "--home", home,
                   input="sam-password\n").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "studiox", "serve", str(tmp_path / "missions"), "--home", str(home),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "STUDIOX_HOME": str(home)})
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _healthy(base), 30), server.stderr.read() if server.poll() is not None else ""
        with httpx.Client(base_url=base) as client:
            client.post("/login", data={"name": "sam", "password": "sam-password"})
            form = client.get("/missions/slow/start").text
            started = client.post("/missions/slow/start", data={"csrf": _csrf(form)})
            assert started.status_code == 303, started.text
            run_id = started.headers["location"].rsplit("/", 1)[1]
        assert wait_for(lambda: "running" in studiox("status", run_id, "--home", home).stdout, 30)
        server.send_signal(signal.SIGTERM)
        _, said = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode in (0, -signal.SIGTERM), said  # (uvicorn ends by the signal it was sent, once it has shut down)
    status = json.loads(studiox("status", run_id, "--json", "--home", home).stdout)
    assert status["status"] == "interrupted"  # stopped cleanly by the shutdown, resumable
    last = json.loads(studiox("log", run_id, "--json", "--home", home).stdout.splitlines()[-1])
    assert last["type"] == "run_interrupted"
    logged = [json.loads(line) for line in said.splitlines() if line.startswith("{")]
    assert any(entry["path"] == "/missions/slow/start" and entry["status"] == 303 and entry["user"] == "sam"
               for entry in logged)  # one structured line per request


def _healthy(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_run_page_its_live_events_export_verification_and_a_cited_passage(tmp_path, studiox):
    (tmp_path / "missions").mkdir()
    (tmp_path / "missions" / "kb").mkdir()
    (tmp_path / "missions" / "kb" / "policy.md").write_text("# Hotels\n\nHotels up to 180 EUR a night.\n")
    mission = write_mission(tmp_path / "missions" / "kb.yaml", (
        "mission: kb\ninputs: {city: {type: string}, nights: {type: integer, default: 1}}\n"
        "knowledge: {kb: {path: kb}}\nsteps:\n  - {id: find, retrieve: {from: kb, query: hotel}}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ inputs.city }}'}\n"))
    home = tmp_path / "home"
    app = create_app(home, [mission])
    users.add(home, "sam", "starter", "sam-password")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        csrf = _login(client, "sam")
        form = client.get("/missions/kb/start").text
        assert 'name="city"' in form and 'name="file.city"' in form and 'name="nights"' in form
        bad = client.post("/missions/kb/start", data={"csrf": csrf, "nights": "two"})
        assert bad.status_code == 400 and "the input &#39;nights&#39; must be a whole number" in bad.text
        missing = client.post("/missions/kb/start", data={"csrf": csrf})
        assert missing.status_code == 400 and "the input &#39;city&#39; is required" in missing.text
        started = client.post("/missions/kb/start", data={"csrf": csrf}, files={"file.city": ("city.txt", b"Zurich")},
                              follow_redirects=False)
        assert started.status_code == 303, started.text
        run_id = started.headers["location"].rsplit("/", 1)[1]
        assert wait_for(lambda: "Done" in client.get(f"/runs/{run_id}").text)
        page = client.get(f"/runs/{run_id}").text
        assert "<svg class=\"timeline\"" in page and "find" in page and "Zurich" in page
        events = client.get(f"/runs/{run_id}/events?after=0").text  # the live rail, from the start
        assert "kb/policy.md#L3" in events and "event: end" in events
        exported = client.get(f"/runs/{run_id}/export?format=jsonl")
        assert exported.headers["content-disposition"] == f'attachment; filename="studiox-{run_id}.jsonl"'
        assert run_id in exported.text
        assert "intact" in client.get(f"/runs/{run_id}/verify").text
        passage = client.get(f"/runs/{run_id}/passage", params={"citation": "kb/policy.md#L3"}).text
        assert "Hotels up to 180 EUR a night." in passage
        assert client.get(f"/runs/{run_id}/passage", params={"citation": "kb/other.md#L1"}).status_code == 404
