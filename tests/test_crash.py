"""Crash tests: SIGKILL at every event boundary, then resume; every finished step ran exactly once."""

from __future__ import annotations

import collections
import signal
import time

from conftest import TESTS

MISSION = TESTS / "missions" / "effects.yaml"
EXPECTED_KEYS = {"first", "each[0].touch", "each[1].touch", "each[2].touch", "last"}


def _keys(sx, run_id):
    return collections.Counter(e["key"].split("/", 1)[1] for e in sx.effects_log() if e["key"].startswith(run_id))


def test_a_clean_run_has_each_effect_once(sx):
    result = sx("run", MISSION, "-q")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[0]
    assert _keys(sx, run_id) == collections.Counter(EXPECTED_KEYS)
    assert "verdict: Done" in result.stdout


def test_kill_at_every_event_then_resume_runs_each_finished_step_exactly_once(sx):
    clean = sx("run", MISSION, "-q")
    n_events = _event_count(sx, clean.stdout.split()[0])
    assert n_events > 20  # step boundaries, mid-step points (after 'started'), foreach items
    # kill a fresh run right after each event in turn: every boundary and every mid-step point
    for k in range(1, n_events):
        sx.effects.unlink(missing_ok=True)
        killed = sx.process("run", MISSION, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=k)  # SIGKILL: a real process
        assert killed.returncode == -signal.SIGKILL, (k, killed.stderr)
        run_id = killed.stdout.split()[0]
        assert sx.state(run_id)["status"] == "interrupted", k
        resumed = sx("resume", run_id)
        assert resumed.returncode == 0, (k, resumed.stdout, resumed.stderr)
        assert "verdict: Done" in resumed.stdout
        assert _keys(sx, run_id) == collections.Counter(EXPECTED_KEYS), k
        assert sx.state(run_id)["note"] == "3 items"


def _event_count(sx, run_id) -> int:

    store = sx.store()
    try:
        return store.last_seq(run_id)
    finally:
        store.close()


def test_kill_during_a_slow_step_then_resume(sx, tmp_path):
    mission = tmp_path / "slow.yaml"
    mission.write_text(
        "mission: slow\nintegrations: {fx: {command: x}}\nsteps:\n"
        "  - {id: before, tool: fx.append}\n"
        "  - {id: slow, tool: fx.sleep, arguments: {seconds: 30}}\n"
        "  - {id: after, tool: fx.append}\n"
    )
    proc = sx.popen("run", mission, "-q")
    deadline = time.time() + 20
    while time.time() < deadline and len(sx.effects_log()) < 1:
        time.sleep(0.05)
    time.sleep(0.3)  # now inside the slow step
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    run_id = proc.stdout.read().split()[0]
    assert sx.state(run_id)["status"] == "interrupted"
    resumed = sx("resume", run_id, timeout=90, SX_SLEEP_FAST=1)
    assert resumed.returncode == 0, resumed.stderr
    assert [e["key"].split("/")[1] for e in sx.effects_log()] == ["before", "slow", "after"]


PAYMENT = TESTS / "missions" / "payment.yaml"


def test_kill_at_every_event_of_a_governed_payment_pays_exactly_once(sx):
    """The payment mission (auto-approved by its rule) killed after each of its events in turn.

    A kill right after 'action_started' leaves the payment in doubt: it must not be repeated
    silently, so resume asks; the person (this test) knows the kill came before the call and
    answers --retry. Every other kill point resumes by itself. Either way: one payment.
    """

    clean = sx("run", PAYMENT, "--input", "amount=40", "-q")
    store = sx.store()
    n_events = store.last_seq(clean.stdout.split()[0])
    store.close()
    for k in range(1, n_events):
        sx.effects.unlink(missing_ok=True)
        # SIGKILL: a real process
        killed = sx.process("run", PAYMENT, "--input", "amount=40", "-q", STUDIOX_TEST_KILL_AFTER_EVENT=k)
        assert killed.returncode == -signal.SIGKILL, (k, killed.stderr)
        run_id = killed.stdout.split()[0]
        resumed = sx("resume", run_id)
        if resumed.returncode == 3:  # in doubt: the payment call was cut off
            assert "in doubt" in resumed.stdout, (k, resumed.stdout)
            assert not [e for e in sx.effects_log() if e["tool"] == "pay"], k
            decision = resumed.stdout.split("waiting for a decision ")[1].split(":")[0]
            resumed = sx("approve", decision, "--retry", "--resume")
        assert resumed.returncode == 0, (k, resumed.stdout, resumed.stderr)
        assert "verdict: Paid" in resumed.stdout, k
        assert len([e for e in sx.effects_log() if e["tool"] == "pay"]) == 1, k
