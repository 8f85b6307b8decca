"""The run commands: exit codes, inputs, locks (real competing processes), corrupt state, cancel, Ctrl-C (a real SIGINT)."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import time

import pytest
from conftest import write_mission

SLOW = (
    "mission: slow\nintegrations: {fx: {command: x}}\nsteps:\n"
    "  - {id: before, tool: fx.append}\n"
    "  - {id: slow, tool: fx.sleep, arguments: {seconds: 3}}\n"
    "  - {id: after, tool: fx.append}\n"
)


def _interrupted_run(sx, tmp_path, text=SLOW, kill_after=3) -> str:
    mission = write_mission(tmp_path / "m.yaml", text)
    killed = sx.process("run", mission, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=kill_after)  # SIGKILL: a real process
    assert killed.returncode == -signal.SIGKILL
    return killed.stdout.split()[0]


def test_run_prints_the_run_id_first_then_steps_then_the_verdict(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: hello\ninputs: {name: {type: string}}\nsteps:\n"
                            "  - {id: greet, set: {text: 'Hello, ${{ inputs.name }}'}}\n"
                            "verdict: {choices: [Greeted], value: Greeted, note: '${{ steps.greet.output.text }}'}\n")
    result = sx("run", mission, "--input", "name=Ada")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and "mission hello" in lines[0]
    assert any("greet" in line for line in lines[1:-1])
    assert lines[-1] == "verdict: Greeted — Hello, Ada"


def test_inputs_from_files_and_json_values_are_checked_before_anything_runs(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: inputs\ninputs:\n  doc: {type: string}\n"
                            "  order: {type: object, required: [total], properties: {total: {type: number}}}\n"
                            "  count: {type: integer}\n"
                            "steps:\n  - {id: a, set: {v: '${{ inputs.order.total * inputs.count }}'}}\n"
                            "verdict: {choices: [Ok], value: Ok, note: '${{ steps.a.output.v }} ${{ inputs.doc }}'}\n")
    (tmp_path / "doc.txt").write_text("invoice text")
    (tmp_path / "order.yaml").write_text("total: 2.5\n")
    (tmp_path / "all.json").write_text(json.dumps({"count": 4}))
    ok = sx("run", mission, "-q", "--input", f"doc=@{tmp_path / 'doc.txt'}", "--input",
            f"order=@{tmp_path / 'order.yaml'}", "--inputs", tmp_path / "all.json")
    assert ok.returncode == 0, ok.stderr
    assert "verdict: Ok — 10.0 invoice text" in ok.stdout
    bad = sx("run", mission, "--input", "doc=x", "--input", "order={}", "--input", "count=two", "--input", "cuont=1")
    assert bad.returncode == 2
    assert "the input 'order' is not valid: 'total' is a required property" in bad.stderr
    assert "the input 'count' is not valid: 'two' is not of type 'integer'" in bad.stderr
    assert "unknown input 'cuont' — did you mean 'count'?" in bad.stderr
    assert len(sx.run_ids()) == 1, "nothing may start with bad inputs"
    assert "Traceback" not in bad.stderr


def test_an_invalid_mission_exits_2_and_a_failed_run_exits_1(sx, tmp_path):
    broken = write_mission(tmp_path / "bad.yaml", "mission: x\nsteps: []\n")
    assert sx("run", broken).returncode == 2
    failing = write_mission(tmp_path / "fail.yaml", "mission: x\nsteps:\n  - {id: no, fail: 'broken on purpose'}\n")
    result = sx("run", failing)
    assert result.returncode == 1
    assert "failed at no: broken on purpose" in result.stdout


def test_two_processes_resuming_one_run_only_one_drives_it(sx, tmp_path):
    run_id = _interrupted_run(sx, tmp_path)
    first = sx.popen("resume", run_id)
    deadline = time.time() + 20
    while time.time() < deadline and (sx.holder(run_id) or {}).get("pid") != first.pid:
        time.sleep(0.05)  # until the first holds the lock (it then spends 3 s in the slow step)
    second = sx("resume", run_id)
    assert second.returncode == 2
    assert f"run {run_id} is being driven by process {first.pid} on {socket.gethostname()}" in second.stderr
    assert sx.state(run_id)["driven_by"]["pid"] == first.pid
    assert first.wait(30) == 0
    keys = [e["key"].split("/")[1] for e in sx.effects_log()]
    assert keys == ["before", "slow", "after"]


def test_a_lock_left_by_a_killed_process_is_taken_over(sx, tmp_path):
    run_id = _interrupted_run(sx, tmp_path, kill_after=5)
    if not sx.on_postgres:  # the killed process's lock file is still there, but no process holds it
        assert (sx.home / "locks" / f"{run_id}.lock").exists()
    assert sx.holder(run_id) is None and sx.state(run_id)["driven_by"] is None
    resumed = sx("resume", run_id, SX_SLEEP_FAST=1)
    assert resumed.returncode == 0, resumed.stderr


def test_ctrl_c_stops_cleanly_with_130_and_the_run_resumes(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", SLOW)
    proc = sx.popen("run", mission)
    deadline = time.time() + 20
    while not sx.effects_log() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 130
    run_id = proc.stdout.read().split()[1]
    assert f"studiox resume {run_id}" in proc.stderr.read()
    assert sx.state(run_id)["status"] == "interrupted"
    assert sx("resume", run_id, SX_SLEEP_FAST=1).returncode == 0
    assert sx.state(run_id)["status"] == "succeeded"


def test_resume_uses_the_snapshot_when_the_mission_file_changed(sx, tmp_path):
    text = SLOW.replace("steps:\n", "steps:\n  - {id: v, set: {which: original}}\n") + \
        "verdict: {choices: [Done], value: Done, note: '${{ steps.v.output.which }}'}\n"
    run_id = _interrupted_run(sx, tmp_path, text, kill_after=6)
    (tmp_path / "m.yaml").write_text(text.replace("original", "edited"))
    resumed = sx("resume", run_id, SX_SLEEP_FAST=1)
    assert resumed.returncode == 0
    assert "the mission file has changed since this run started" in resumed.stderr
    assert "verdict: Done — original" in resumed.stdout


def test_cancel_then_resume_is_refused(sx, tmp_path):
    run_id = _interrupted_run(sx, tmp_path)
    cancelled = sx("cancel", run_id, "--reason", "duplicate invoice")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    resumed = sx("resume", run_id)
    assert resumed.returncode == 2
    assert "has already cancelled" in resumed.stderr
    assert sx.state(run_id)["status"] == "cancelled"


def test_unknown_run_ids_are_clear_errors(sx, tmp_path):
    assert "there are no runs here yet" in sx("resume", "nope").stderr
    run_id = _interrupted_run(sx, tmp_path)
    result = sx("status", "zzzzzzzz")
    assert result.returncode == 2 and "no run 'zzzzzzzz'" in result.stderr
    assert sx.state(run_id[:4])["id"] == run_id  # a unique prefix is enough


def test_runs_lists_and_filters(sx, tmp_path):
    ok = write_mission(tmp_path / "ok.yaml", "mission: ok\nsteps:\n  - {id: a, set: {x: 1}}\n")
    bad = write_mission(tmp_path / "bad.yaml", "mission: bad\nsteps:\n  - {id: a, fail: no}\n")
    sx("run", ok), sx("run", bad), sx("run", ok)
    rows = json.loads(sx("runs", "--json").stdout)
    assert sorted((r["mission"], r["status"], r["verdict"]) for r in rows) == [
        ("bad", "failed", None), ("ok", "succeeded", "Completed"), ("ok", "succeeded", "Completed")]
    assert len(json.loads(sx("runs", "--json", "--status", "failed").stdout)) == 1
    assert len(json.loads(sx("runs", "--json", "--mission", "ok").stdout)) == 2
    table = sx("runs").stdout
    assert "succeeded" in table and "Completed" in table and "mission" in table


def _tree_digest(path):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.backends("local", reason="a corrupt studiox.db: the local folder's database file")
def test_a_corrupt_state_folder_is_a_clear_error_and_is_left_untouched(sx, tmp_path):
    run_id = _interrupted_run(sx, tmp_path)
    db = sx.home / "studiox.db"
    for extra in sx.home.glob("studiox.db-*"):
        extra.unlink()
    db.write_bytes(b"this is not a database" * 100)
    before = _tree_digest(sx.home)
    for args in (["runs"], ["status", run_id], ["resume", run_id], ["run", tmp_path / "m.yaml"]):
        result = sx(*args)
        assert result.returncode == 2, args
        assert "is corrupt" in result.stderr and "Traceback" not in result.stderr
    assert _tree_digest(sx.home) == before


@pytest.mark.backends("local", reason="the local folder's marker file and its format")
def test_a_state_folder_from_a_newer_version_or_not_ours_is_refused(sx, tmp_path):
    sx.home.mkdir()
    (sx.home / "studiox.json").write_text('{"format": 99}')
    result = sx("runs")
    assert result.returncode == 2 and "written by a newer studiox (format 99" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    result = sx("runs", "--home", other)
    assert result.returncode == 2 and "not a studiox state folder" in result.stderr
    assert sorted(p.name for p in other.iterdir()) == ["precious.txt"]


def test_a_failed_run_can_be_tried_again_from_its_failed_step_once_the_cause_is_fixed(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: m\nintegrations: {fx: {command: x}}\nsteps:\n"
                            "  - {id: first, tool: fx.append}\n"
                            "  - {id: shaky, tool: fx.flaky, arguments: {times: 1}}\n"
                            "  - {id: last, tool: fx.append}\n")
    failed = sx("run", mission)
    assert failed.returncode == 1 and "flaky failure 1" in failed.stdout
    run_id = failed.stdout.split()[1]
    plain = sx("resume", run_id)
    assert plain.returncode == 2 and f"studiox resume {run_id} --retry" in plain.stderr
    again = sx("resume", run_id, "--retry")  # the flaky tool works now
    assert again.returncode == 0, again.stdout
    assert "taken up again" in again.stdout
    assert [e["key"].split("/")[1] for e in sx.effects_log()] == ["first", "shaky", "last"]  # 'first' ran once
    assert sx.state(run_id)["status"] == "succeeded"


def test_log_shows_the_whole_rail_and_json_gives_the_raw_audit_trail(sx, tmp_path):
    run_id = _interrupted_run(sx, tmp_path, kill_after=5)
    sx("resume", run_id, SX_SLEEP_FAST=1)
    text = sx("log", run_id).stdout
    assert f"run {run_id}" in text and "resumed by" in text and text.rstrip().endswith("verdict: Completed")
    events = [json.loads(line) for line in sx("log", run_id, "--json").stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    assert {"run_resumed", "step_started", "step_finished", "observation"} <= {e["type"] for e in events}


def test_several_runs_in_one_state_folder_at_the_same_time(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: busy\nintegrations: {fx: {command: x}}\nsteps:\n" + "".join(
        f"  - {{id: s{i}, tool: fx.append, arguments: {{n: {i}}}}}\n" for i in range(30)))
    procs = [sx.popen("run", mission, "-q") for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    runs = sx.run_ids()
    assert len(runs) == 4
    effects = sx.effects_log()
    for run_id in runs:
        assert sorted(int(e["arguments"]["n"]) for e in effects if e["key"].startswith(run_id)) == list(range(30))


def test_an_altered_event_is_reported_as_a_corrupt_journal(sx, tmp_path):
    run_id = _interrupted_run(sx, tmp_path)
    with sx.tamper() as db:  # valid JSON, but not an event we write
        db.execute("UPDATE events SET body = ? WHERE run = ? AND seq = 2",
                   (json.dumps({"seq": 2, "type": "step_finished"}), run_id))
    result = sx("status", run_id)
    assert result.returncode == 2
    assert f"the journal of run {run_id} in {sx.where} is damaged: event 2 was edited" in result.stderr
    assert "Traceback" not in result.stderr
