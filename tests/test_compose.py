"""Missions that compose: parallel branches and mission: steps (child runs), durable like any step."""

from __future__ import annotations

import collections
import json
import signal

from conftest import write_mission

CHILD = ("mission: child\ninputs: {amount: {type: number}}\nintegrations: {fx: {command: x}}\n"
         "steps:\n  - {id: pay, tool: fx.pay, arguments: {amount: '${{ inputs.amount }}'}}\n"
         "outputs: {paid: '${{ steps.pay.output.ok }}'}\n"
         "verdict: {choices: [Paid], value: Paid, note: 'paid ${{ inputs.amount }}'}\n")
PARENT = ("mission: parent\nintegrations: {fx: {command: x}}\nsteps:\n"
          "  - id: both\n    parallel:\n      branches:\n"
          "        gated:\n          - {id: payit, mission: child.yaml, inputs: {amount: 5}}\n"
          "        free:\n          - {id: note, tool: fx.append, arguments: {amount: 1}}\n"
          "          - {id: more, tool: fx.append, arguments: {amount: 2}}\n"
          "  - id: after\n    set: {v: '${{ steps.both.output.gated.payit.outputs.paid }}'}\n"
          "verdict: {choices: [Done], value: Done, note: '${{ steps.both.output.gated.payit.note }}'}\n")


def _write(tmp_path):
    write_mission(tmp_path / "child.yaml", CHILD)
    return write_mission(tmp_path / "parent.yaml", PARENT)


def _calls(sx) -> collections.Counter:
    return collections.Counter(e["tool"] for e in sx.effects_log())


def test_a_gated_branch_waits_while_the_free_one_finishes_and_deciding_the_child_resumes_the_parent(sx, tmp_path):
    parent = _write(tmp_path)
    parked = sx("run", parent, "--no-input")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    run_id = parked.stdout.split()[1]
    assert _calls(sx) == {"append": 2}  # the free branch ran to its end while the other waits
    assert "↳ both.gated.payit runs mission child as run" in parked.stdout
    (decision,) = json.loads(sx("decisions", "--json").stdout)
    card = sx("decision", "show", decision["id"]).stdout
    assert f"for run {run_id} at its step both.gated.payit" in card
    done = sx("approve", decision["id"], "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "verdict: Done — paid 5"
    assert _calls(sx) == {"append": 2, "pay": 1}
    shown = sx.state(run_id)
    assert shown["status"] == "succeeded"
    child = json.loads(sx("runs", "--json").stdout)
    assert sorted(r["mission"] for r in child) == ["child", "parent"]  # one child run, linked


def _resume_to_the_end(sx, run_id: str):
    """Resume a killed run; a payment cut off comes back in doubt: answered from the effects log, as a
    person checking the other system would."""
    result = sx("resume", run_id)
    while result.returncode == 3:
        (decision,) = json.loads(sx("decisions", "--json").stdout)
        paid = _calls(sx)["pay"] == 1
        answer = ["--happened", "--result", '{"ok": true}'] if paid else ["--retry"]
        result = sx("approve", decision["id"], *answer, "--resume")
    return result


def test_kill_at_every_event_of_a_parent_and_its_child_pays_once_with_one_child_run(sx, tmp_path):
    write_mission(tmp_path / "child.yaml", CHILD.replace(  # a payment that policy approves: no person needed
        "arguments: {amount: '${{ inputs.amount }}'}}", "arguments: {amount: '${{ inputs.amount }}'}, approval: "
        "{auto_approve_when: '${{ args.amount < 100 }}', reason: petty cash}}"))
    parent = write_mission(tmp_path / "parent.yaml", PARENT)
    clean = sx("run", parent, "-q")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    events = len(sx("log", clean.stdout.split()[0], "--json").stdout.splitlines())
    kinds = ["step_started", "action_started", "action_finished", "step_finished", "run_started"]
    for kind in kinds:  # the first event of each kind (parent and child share the process)
        sx.effects.unlink(missing_ok=True)
        killed = sx.process("run", parent, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=kind)
        assert killed.returncode == -signal.SIGKILL, (kind, killed.stderr)
        resumed = _resume_to_the_end(sx, killed.stdout.split()[0])
        assert resumed.returncode == 0, (kind, resumed.stdout, resumed.stderr)
        assert "verdict: Done" in resumed.stdout
        calls = _calls(sx)  # the child's payment exactly once (read-only calls cut off may be made again)
        assert calls["pay"] == 1 and calls["append"] >= 2, (kind, calls)
    child_events = 9  # run_started … run_finished of the child: step, decision and action events
    cut = collections.Counter()
    for number in [*range(1, events), *(f"both.gated.payit:{k}" for k in range(1, child_events + 1))]:
        sx.effects.unlink(missing_ok=True)
        killed = sx.process("run", parent, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=number)
        if killed.returncode == -signal.SIGKILL:
            cut["child" if isinstance(number, str) else "parent"] += 1
            resumed = _resume_to_the_end(sx, killed.stdout.split()[0])
            assert "verdict: Done" in resumed.stdout, (number, resumed.stdout, resumed.stderr)
        calls = _calls(sx)
        assert calls["pay"] == 1 and calls["append"] >= 2, (number, calls)
    assert cut["parent"] == events - 1 and cut["child"] >= child_events - 1, cut  # each kill point was reached
    runs = json.loads(sx("runs", "--json").stdout)
    parents = [r for r in runs if r["mission"] == "parent"]
    children = [r for r in runs if r["mission"] == "child"]
    assert len(children) == len(parents)  # never a second child for one parent


def test_validation_locates_a_cycle_a_missing_input_an_unknown_input_and_an_unknown_output(studiox, tmp_path):
    write_mission(tmp_path / "a.yaml", "mission: a\nsteps:\n  - {id: to_b, mission: b.yaml}\n")
    write_mission(tmp_path / "b.yaml", "mission: b\nsteps:\n  - {id: to_a, mission: a.yaml}\n")
    cycle = studiox("validate", str(tmp_path / "a.yaml"))
    assert cycle.returncode == 2
    assert "missions may not run themselves, through others or not: a.yaml → b.yaml → a.yaml" in cycle.stderr
    _write(tmp_path)
    parent = write_mission(tmp_path / "bad.yaml", (
        "mission: bad\nsteps:\n  - id: pay\n    mission: child.yaml\n    inputs: {amont: 5}\n"
        "  - {id: after, set: {v: '${{ steps.pay.output.outputs.payd }}', w: '${{ steps.pay.output.verdikt }}'}}\n"
        "  - {id: gone, mission: nowhere.yaml}\n"))
    result = studiox("validate", str(parent))
    assert result.returncode == 2, result.stdout
    said = result.stderr
    assert f"{parent}:5:14: steps[0] (id: pay).inputs.amont: the mission child has no input 'amont' — did you mean " \
           "'amount'? (its inputs: amount)" in said
    assert f"{parent}:4:14: steps[0] (id: pay).mission: the mission child needs the input 'amount': give it under " \
           "'inputs:'" in said
    assert "the mission child declares no output 'payd' — did you mean 'paid'? (its outputs: paid)" in said
    assert "a mission step's output has run, mission, verdict, note, outputs, not 'verdikt' — did you mean " \
           "'verdict'?" in said
    assert "the mission file 'nowhere.yaml' does not exist" in said
    assert "Traceback" not in said


def test_validate_shows_the_whole_plan_children_included(studiox, tmp_path):
    parent = _write(tmp_path)
    result = studiox("validate", str(parent), COLUMNS="200")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["1a.1", "payit", "mission"] for line in lines)
    assert any(line.split()[:4] == ["1a.1.1", "pay", "tool", "tool"] and "needs a decision" in line for line in lines)
    assert any(line.split()[:2] == ["1b.2", "more"] for line in lines)


def test_under_crash_injection_a_parallel_step_with_a_gated_branch_runs_nothing_twice(studiox, tmp_path):
    from test_integrations import SERVER

    log = tmp_path / "server-effects.jsonl"
    write_mission(tmp_path / "par.yaml", (
        f"mission: par\nintegrations:\n  srv:\n    command: python\n"
        f"    args: [{json.dumps(str(SERVER))}, --log, {json.dumps(str(log))}]\n    env: {{RECORD_DELAY: '0'}}\n"
        "steps:\n  - id: both\n    parallel:\n      branches:\n"
        "        gated:\n          - {id: keep, tool: srv.record, arguments: {label: a}}\n"
        "        free:\n          - {id: look, tool: srv.echo, arguments: {text: b}}\n"
        "          - {id: again, tool: srv.echo, arguments: {text: c}}\n"
        "verdict: {choices: [Kept], value: Kept}\n"))
    (tmp_path / "par.test.yaml").write_text(
        "cases:\n  - name: kept once\n    tools: {srv.record: {recorded: a}, srv.echo: {echo: x}}\n"
        "    decisions: {keep: approve}\n    crash: every_event\n"
        "    expect:\n      verdict: Kept\n      steps: {both: succeeded}\n"
        "      decisions: {keep: {action: srv.record, arguments: {label: a}}}\n"
        "      calls: {srv.record: 1}\n"
        "  - name: the free branch finishes while the gated one waits\n"
        "    tools: {srv.record: {recorded: a}, srv.echo: {echo: x}}\n"
        "    expect:\n      status: waiting\n      steps: {both.free.look: succeeded, both.free.again: succeeded}\n"
        "      calls: {srv.echo: 2, srv.record: 0}\n")
    result = studiox("test", str(tmp_path / "par.test.yaml"), "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    kept, waiting = json.loads(result.stdout)["cases"]
    assert kept["passed"] and kept["crash_variants"] > 10 and "srv.record 1× in each" in kept["note"]
    assert waiting["passed"]


def test_show_and_the_audit_export_follow_the_link_between_parent_and_child(sx, tmp_path):
    write_mission(tmp_path / "child.yaml", CHILD.replace("fx.pay", "fx.append"))
    parent = write_mission(tmp_path / "parent.yaml", PARENT)
    run_id = sx("run", parent, "-q").stdout.split()[0]
    shown = json.loads(sx("show", run_id, "--json").stdout)["run"]
    (child,) = shown["children"]
    assert child["step"] == "both.gated.payit"
    assert json.loads(sx("show", child["run"], "--json").stdout)["run"]["parent"] == {"run": run_id,
                                                                                    "step": "both.gated.payit"}
    assert f"{child['run']} (step both.gated.payit; studiox show" in sx("show", run_id, COLUMNS="200").stdout
    exported = sx("audit", "export", "--run", run_id, "--format", "jsonl")
    runs = {json.loads(line)["run"] for line in exported.stdout.splitlines() if '"run"' in line}
    assert {run_id, child["run"]} <= runs
