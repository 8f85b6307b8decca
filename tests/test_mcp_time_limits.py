"""Every MCP tool call has a time limit: the integration's call_timeout (default 60s), or the step's own timeout.

Real server subprocesses: tests/support/mcp_test_server.py's ``hang`` sleeps; its ``record``
changes state and then waits $RECORD_DELAY seconds.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from support.mcp_runs import assert_clean, assert_no_orphans, call_once, effects, mission, server_spec

from studiox.adapters import mcp as integrations
from studiox.steps import StepError

BOTH_BACKENDS = pytest.mark.backends("local", "postgres", reason="a cut-off call left open in the journal: the store's part")
pytestmark = pytest.mark.backends(
    "local", reason="the MCP transport's time limits are under test; the store is incidental (the in-doubt test runs on both)")


def test_a_hung_tool_call_ends_at_the_integrations_call_timeout_and_the_run_fails_cleanly(studiox, tmp_path):
    path, marker = mission(tmp_path, "  - {id: a, tool: srv.hang, arguments: {seconds: 60}}\n",
                           srv="    call_timeout: 500ms\n")
    started = time.time()
    result = studiox("run", path, timeout=40)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.time() - started < 20
    assert "srv.hang did not answer within its time limit of 0.5s (the call_timeout of the integration 'srv')" \
        in result.stdout
    assert_clean(result)
    assert_no_orphans(marker)


def test_a_step_timeout_wins_over_the_integrations_call_timeout(studiox, tmp_path):
    path, marker = mission(tmp_path, "  - {id: a, tool: srv.hang, arguments: {seconds: 1.5}, timeout: 30s}\n",
                           srv="    call_timeout: 500ms\n")
    result = studiox("run", path, timeout=40)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_orphans(marker)


def test_after_a_call_times_out_the_next_call_gets_a_fresh_server(studiox, tmp_path):
    path, marker = mission(tmp_path, (
        "  - {id: a, tool: srv.hang, arguments: {seconds: 60}, on_error: continue}\n"
        "  - {id: b, tool: srv.echo, arguments: {text: still here}}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ steps.b.output.echo }}'}\n"),
        srv="    call_timeout: 500ms\n")
    result = studiox("run", path, timeout=40)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verdict: Done — still here"
    assert_no_orphans(marker)


@BOTH_BACKENDS
def test_a_state_changing_call_cut_off_by_its_time_limit_is_in_doubt_and_not_silently_repeated(studiox, tmp_path):
    path, marker = mission(tmp_path, (
        "  - {id: a, tool: srv.record, arguments: {label: x}, retry: {attempts: 2, backoff: 10ms, on: [timeout]},"
        " approval: {auto_approve_when: '${{ true }}'}}\n"), srv="    call_timeout: 1s\n")
    result = studiox("run", path, RECORD_DELAY=30, timeout=40)
    assert "srv.record did not answer within its time limit of 1s" in result.stdout
    assert "it may or may not have taken effect" in result.stdout
    assert result.returncode == 3, result.stdout  # the second attempt asks a person: it is in doubt
    assert "in doubt" in result.stdout
    assert len(effects(tmp_path)) == 1
    assert_clean(result)
    assert_no_orphans(marker)


def test_without_call_timeout_a_default_time_limit_applies(tmp_path, monkeypatch):
    monkeypatch.setattr(integrations, "DEFAULT_CALL_TIMEOUT", 0.5)
    marker = uuid.uuid4().hex
    started = time.time()
    error = call_once(tmp_path, server_spec(tmp_path, marker), "hang", {"seconds": 60})
    assert time.time() - started < 20
    assert isinstance(error, StepError) and error.kind == "timeout"
    assert error.message.startswith("srv.hang did not answer within its time limit of 0.5s (the default; set "
                                    "call_timeout on the integration 'srv' to change it)")
    assert not error.outcome_unknown  # the tool is read-only: nothing can have changed
    assert_no_orphans(marker)


def test_a_cut_off_state_changing_call_has_an_unknown_outcome(tmp_path):
    marker = uuid.uuid4().hex
    spec = server_spec(tmp_path, marker, call_timeout="500ms", env={"RECORD_DELAY": "30"})
    error = call_once(tmp_path, spec, "record", {"label": "x"})
    assert isinstance(error, StepError) and error.kind == "timeout" and error.outcome_unknown
    assert_no_orphans(marker)


def test_a_step_timeout_on_an_integration_already_used_fails_that_step_cleanly_and_on_time(studiox, tmp_path):
    path, marker = mission(tmp_path, (
        "  - {id: warm, tool: srv.echo, arguments: {text: hello}}\n"
        "  - {id: slow, tool: srv.hang, arguments: {seconds: 60}, timeout: 1s, on_error: continue}\n"
        "  - {id: after, tool: srv.echo, arguments: {text: still here}}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ steps.slow.status }} then ${{ steps.after.output.echo }}'}\n"))
    started = time.time()
    result = studiox("run", path, timeout=40)
    took = time.time() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verdict: Done — failed then still here"
    assert "the step took longer than its time limit of 1s" in result.stdout
    assert_clean(result)
    log = studiox("log", result.stdout.split()[1], "--json").stdout
    assert "run_interrupted" not in log and "interrupted (Ctrl-C)" not in log  # the journal tells the truth
    slow = [e for e in map(json.loads, log.splitlines()) if e.get("step") == "slow" and e["type"].startswith("step_")]
    assert slow[-1]["at"] - slow[0]["at"] < 2.5  # the 1 s limit is not stretched by a server slow to close
    assert took < 20
    assert_no_orphans(marker)
