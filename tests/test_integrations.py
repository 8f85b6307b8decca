"""Integrations over MCP with real server subprocesses: calls, validation, governance, crashes, HTTP."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT, TESTS, write_mission
from support.mcp_runs import assert_no_orphans

BOTH_BACKENDS = pytest.mark.backends("local", "postgres", reason="exactly once across a kill: the store's part")
pytestmark = pytest.mark.backends(
    "local", reason="the MCP transport is under test; the store is incidental (the kill tests below run on both)")

SERVER = TESTS / "support" / "mcp_test_server.py"


def mission_with(tmp_path, steps: str, *, marker: str = "", extra: str = "") -> tuple:
    marker = marker or uuid.uuid4().hex
    log = tmp_path / "server-effects.jsonl"
    text = (f"mission: mcp-test\nintegrations:\n  srv:\n    command: python\n"
            f"    args: [{json.dumps(str(SERVER))}, --log, {json.dumps(str(log))}, --marker, {marker}]\n"
            f"    env: {{RECORD_DELAY: {{from_env: RECORD_DELAY}}}}\n"
            f"{extra}steps:\n{steps}")
    return write_mission(tmp_path / "m.yaml", text), log, marker


def effects(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_tool_results_structured_text_and_json_text(studiox, tmp_path):
    mission, _, marker = mission_with(tmp_path, (
        "  - {id: a, tool: srv.echo, arguments: {text: hi}}\n"
        "  - {id: b, tool: srv.plain_text}\n"
        "  - {id: c, tool: srv.json_text}\n"), extra="")
    mission.write_text(mission.read_text() + "verdict: {choices: [Done], value: Done, note: "
                       "'${{ steps.a.output.echo }}|${{ steps.b.output }}|${{ steps.c.output.n }}'}\n")
    result = studiox("run", mission)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verdict: Done — hi|just words|3"
    assert_no_orphans(marker)


def test_arguments_are_checked_against_the_input_schema_before_the_call(studiox, tmp_path):
    mission, log, marker = mission_with(tmp_path, "  - {id: a, tool: srv.unannotated, arguments: {x: not-a-number}, "
                                                  "approval: {auto_approve_when: '${{ true }}'}}\n")
    result = studiox("run", mission)
    assert result.returncode == 1
    assert "the arguments for srv.unannotated do not fit the tool: x: 'not-a-number' is not of type 'integer'" \
        in result.stdout
    assert effects(log) == []


def test_is_error_is_a_step_error_that_retry_and_on_error_handle(studiox, tmp_path):
    mission, _, marker = mission_with(tmp_path, (
        "  - {id: a, tool: srv.fail, arguments: {reason: ledger closed}, retry: {attempts: 2, backoff: 10ms}, "
        "on_error: continue}\n"
        "  - {id: b, set: {saw: '${{ steps.a.error.message }}'}}\n"))
    result = studiox("run", mission)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("srv.fail reported an error") >= 2  # both attempts
    assert "ledger closed" in result.stdout


def test_a_server_that_crashes_mid_call_is_a_clear_step_error_and_the_run_stays_resumable(studiox, tmp_path):
    mission, _, marker = mission_with(tmp_path, "  - {id: a, tool: srv.crash}\n")
    result = studiox("run", mission)
    assert result.returncode == 1
    assert "srv.crash: the server failed during the call" in result.stdout
    assert "Traceback" not in result.stderr
    assert_no_orphans(marker)


def test_a_server_that_hangs_hits_the_step_time_limit(studiox, tmp_path):
    mission, _, marker = mission_with(tmp_path, "  - {id: a, tool: srv.hang, arguments: {seconds: 60}, timeout: 1s}\n")
    started = time.time()
    result = studiox("run", mission)
    assert result.returncode == 1 and time.time() - started < 30
    assert "took longer than its time limit of 1s" in result.stdout
    assert_no_orphans(marker)


def test_a_server_that_cannot_start_is_a_clear_error(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: x\nintegrations:\n  erp: {command: /no/such/program}\n"
                            "steps:\n  - {id: a, tool: erp.check_budget}\n")
    result = studiox("run", mission)
    assert result.returncode == 1
    assert "could not start the integration 'erp' (/no/such/program)" in result.stdout


def test_an_unknown_tool_names_the_ones_there_are(studiox, tmp_path):
    mission, _, _ = mission_with(tmp_path, "  - {id: a, tool: srv.ecko}\n")
    result = studiox("run", mission)
    assert "the integration 'srv' has no tool 'ecko' — did you mean 'echo'?" in result.stdout


@BOTH_BACKENDS
def test_a_tool_without_annotations_is_gated_and_runs_after_approval(studiox, tmp_path):
    mission, log, marker = mission_with(tmp_path, "  - {id: a, tool: srv.unannotated, arguments: {x: 7}}\n")
    parked = studiox("run", mission)
    assert parked.returncode == 3, parked.stdout
    assert effects(log) == []
    assert_no_orphans(marker)  # parked: the server is shut down too
    decision = parked.stdout.split("waiting for a decision ")[1].split(":")[0]
    done = studiox("approve", decision, "--resume")
    assert done.returncode == 0, done.stdout
    assert effects(log) == [{"tool": "unannotated", "x": 7}]
    assert_no_orphans(marker)


def test_trust_read_only_lets_a_tool_run_freely_and_is_recorded(studiox, tmp_path):
    mission, log, _ = mission_with(tmp_path, "  - {id: a, tool: srv.unannotated, arguments: {x: 1}, trust: read_only, "
                                             "trust_reason: 'counts only, changes nothing'}\n")
    result = studiox("run", mission)
    assert result.returncode == 0
    assert "runs without a decision: the mission trusts it as read-only: counts only, changes nothing" in result.stdout


def test_one_session_per_integration_is_reused_across_steps(studiox, tmp_path):
    mission, _, marker = mission_with(tmp_path, "".join(
        f"  - {{id: s{i}, tool: srv.echo, arguments: {{text: '{i}'}}}}\n" for i in range(5)))
    result = studiox("run", mission)
    assert result.returncode == 0
    logs = list((studiox.home / "logs").rglob("srv.log"))
    assert len(logs) == 1  # one run, one server start


# ---------------------------------------------------------------- exactly once through crashes


def _kill_after(studiox, mission, event_type: str, **env) -> str:
    """Run once to find the event's number, then run again and die right after it."""
    from studiox.state.store import Store

    probe_home = studiox.home.parent / "probe-home"  # (a local one: the numbers are the same on every backend)
    probe = studiox("run", mission, "-q", "--no-input", STUDIOX_HOME=probe_home, STUDIOX_BACKEND="local", **env)
    store = Store.open(probe_home, create=False)
    seq = next(e["seq"] for e in store.events(probe.stdout.split()[0]) if e["type"] == event_type)
    store.close()
    shutil.rmtree(probe_home)
    return seq


@BOTH_BACKENDS
def test_kill_between_action_started_and_finished_idempotent_tool_is_retried_with_the_same_key(studiox, tmp_path):
    mission, log, marker = mission_with(tmp_path, "  - {id: a, tool: srv.record_idempotent, arguments: {label: x}, "
                                                  "approval: {auto_approve_when: '${{ true }}'}}\n")
    seq = _kill_after(studiox, mission, "action_started")
    log.unlink()
    killed = studiox.process("run", mission, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=seq)  # SIGKILL: a real process
    assert killed.returncode == -signal.SIGKILL
    run_id = killed.stdout.split()[0]
    resumed = studiox("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout
    assert "calling again with the same idempotency key" in resumed.stdout
    assert [e["key"] for e in effects(log)] == [f"{run_id}/a"]
    assert_no_orphans(marker)


def _kill_mid_call(studiox, mission, log) -> str:
    """Start a run, SIGKILL it while the server is inside the call (its effect already made); the run id.
    (A real process: it is killed.)"""
    proc = studiox.popen("run", mission, "-q", RECORD_DELAY=30)
    deadline = time.time() + 30
    while not effects(log) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return proc.stdout.read().split()[0]


@BOTH_BACKENDS
def test_killed_during_an_idempotent_call_after_its_effect_the_retry_does_not_repeat_it(studiox, tmp_path):
    mission, log, marker = mission_with(tmp_path, "  - {id: a, tool: srv.record_idempotent, arguments: {label: x}, "
                                                  "approval: {auto_approve_when: '${{ true }}'}}\n")
    run_id = _kill_mid_call(studiox, mission, log)
    assert_no_orphans(marker)  # the server saw its input close and went away
    resumed = studiox("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout
    assert len(effects(log)) == 1


@BOTH_BACKENDS
def test_kill_during_a_non_idempotent_call_makes_it_in_doubt_and_it_is_never_called_twice(studiox, tmp_path):
    mission, log, marker = mission_with(tmp_path, "  - {id: a, tool: srv.record, arguments: {label: x}, "
                                                  "approval: {auto_approve_when: '${{ true }}'}}\n")
    run_id = _kill_mid_call(studiox, mission, log)
    resumed = studiox("resume", run_id)
    assert resumed.returncode == 3, resumed.stdout
    assert "in doubt" in resumed.stdout
    assert len(effects(log)) == 1  # not called again
    decision = resumed.stdout.split("waiting for a decision ")[1].split(":")[0]
    vague = studiox("approve", decision)
    assert vague.returncode == 2 and "--happened" in vague.stderr
    done = studiox("approve", decision, "--happened", "--result", '{"recorded": "x", "by": "hand"}', "--resume")
    assert done.returncode == 0, done.stdout
    assert len(effects(log)) == 1
    state = json.loads(studiox("status", run_id, "--json").stdout)
    assert state["steps"][0]["output"] == {"recorded": "x", "by": "hand"}


@BOTH_BACKENDS
def test_an_in_doubt_call_can_be_retried_by_a_person(studiox, tmp_path):
    mission, log, marker = mission_with(tmp_path, "  - {id: a, tool: srv.record, arguments: {label: x}, "
                                                  "approval: {auto_approve_when: '${{ true }}'}}\n")
    seq = _kill_after(studiox, mission, "action_started")
    log.unlink()
    # SIGKILL: a real process
    run_id = studiox.process("run", mission, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=seq).stdout.split()[0]
    parked = studiox("resume", run_id)
    assert parked.returncode == 3 and effects(log) == []
    decision = parked.stdout.split("waiting for a decision ")[1].split(":")[0]
    done = studiox("approve", decision, "--retry", "--resume")
    assert done.returncode == 0, done.stdout
    assert len(effects(log)) == 1


# ---------------------------------------------------------------- the example ERP server


@pytest.fixture
def invoice_copy(tmp_path):
    """missions/ copied to a temporary folder, so the ERP database is the test's own."""
    target = tmp_path / "missions"
    shutil.copytree(ROOT / "missions", target, ignore=shutil.ignore_patterns("erp.sqlite"))
    return target


def _payments(db) -> list:
    """The payments booked, less the one the example ERP starts with."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT invoice_number, amount, idempotency_key FROM payments "
                            "WHERE idempotency_key NOT LIKE 'erp-sample/%'").fetchall()


@BOTH_BACKENDS
def test_the_erp_server_books_one_payment_for_a_key_even_when_killed_after_action_started(studiox, tmp_path,
                                                                                          invoice_copy):
    mission = write_mission(invoice_copy / "pay.yaml", (
        "mission: pay\nintegrations:\n  erp: {command: python, args: [-m, studiox.examples.erp_server, --db, "
        "data/erp.sqlite]}\nsteps:\n"
        "  - {id: budget, tool: erp.check_budget, arguments: {cost_centre_code: CC-220, amount: 500}}\n"
        "  - {id: pay, tool: erp.post_payment, arguments: {invoice_number: INV-1, po_number: PO-2077, amount: 500},"
        " approval: {auto_approve_when: '${{ args.amount < 1000 }}', reason: small}}\n"
        "  - {id: check, tool: erp.list_payments, arguments: {invoice_number: INV-1}}\n"
        "verdict: {choices: [Paid], value: Paid, note: '${{ len(steps.check.output.payments) }} payment(s)'}\n"))
    seq = _kill_after(studiox, mission, "action_started")
    (invoice_copy / "data" / "erp.sqlite").unlink()
    # SIGKILL: a real process
    run_id = studiox.process("run", mission, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=seq).stdout.split()[0]
    resumed = studiox("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout
    assert "verdict: Paid — 1 payment(s)" in resumed.stdout
    assert _payments(invoice_copy / "data" / "erp.sqlite") == [("INV-1", 500.0, f"{run_id}/pay")]


def test_tools_lists_integrations_tools_annotations_and_treatment(studiox, invoice_copy):
    result = studiox("tools", invoice_copy / "invoice.yaml", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["tool"]: r for r in json.loads(result.stdout)}  # the ERP's: of the pay-supplier sub-mission
    assert rows["check_budget"]["mission"] == "pay-supplier"
    assert rows["check_budget"]["studiox"] == "runs freely (read-only)"
    assert rows["check_budget"]["used_by"] == ["budget"]
    assert rows["post_payment"]["annotations"] == "changes state, idempotent"
    assert rows["post_payment"]["studiox"].startswith("auto-approved when ${{ args.amount < inputs.approve_below }}")
    assert rows["list_payments"]["used_by"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_integration_over_streamable_http_with_a_secret_header_from_the_environment(studiox, tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "studiox.examples.erp_server", "--db", str(tmp_path / "erp.db"),
                               "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        mission = write_mission(tmp_path / "m.yaml", (
            f"mission: http\nintegrations:\n  erp:\n    url: http://127.0.0.1:{port}/mcp\n"
            "    headers: {Authorization: {from_env: ERP_TOKEN, prefix: 'Bearer '}}\n"
            "steps:\n  - {id: budget, tool: erp.check_budget, arguments: {cost_centre_code: CC-410, amount: 100}}\n"
            "verdict: {choices: [Ok], value: Ok, note: '${{ steps.budget.output.remaining }}'}\n"))
        missing = studiox("run", mission)
        assert missing.returncode == 1 and "needs the environment variable ERP_TOKEN" in missing.stdout
        result = studiox("run", mission, ERP_TOKEN="s3cret")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == "verdict: Ok — 2600.0"
        stored = b"".join(p.read_bytes() for p in studiox.home.rglob("*") if p.is_file())
        assert b"s3cret" not in stored
    finally:
        server.terminate()
        server.wait(10)


def test_a_server_that_speaks_nonsense_is_a_clear_error_with_no_traceback(studiox, tmp_path):
    garbage = TESTS / "support" / "garbage_mcp_server.py"
    mission = write_mission(tmp_path / "m.yaml", (
        f"mission: x\nintegrations:\n  bad: {{command: python, args: [{json.dumps(str(garbage))}], timeout: 3s}}\n"
        "steps:\n  - {id: a, tool: bad.echo, trust: read_only, trust_reason: test}\n"))
    result = studiox("run", mission)
    assert result.returncode == 1
    assert "could not start the integration 'bad'" in result.stdout and "mcp-client.log" in result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_tools_names_a_step_whose_tool_the_server_does_not_have(studiox, invoice_copy):
    mission = invoice_copy / "payments" / "pay-supplier.yaml"
    mission.write_text(mission.read_text().replace("tool: erp.post_payment", "tool: erp.post_paymnet"))
    result = studiox("tools", mission)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step pay calls erp.post_paymnet, but the server has no tool 'post_paymnet' — did you mean " \
           "'post_payment'?" in " ".join(result.stdout.split())
