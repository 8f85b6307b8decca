"""What scripts get from the CLI: --json outcomes with ISO 8601 times, -h, the crash log."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
from conftest import TESTS, write_mission

from studiox import __version__, api
from studiox.cli import main

PAYMENT = TESTS / "missions" / "payment.yaml"


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text)  # raises unless it is ISO 8601


def test_run_json_is_one_object_with_the_outcome_and_no_rail(sx):
    done = sx("run", PAYMENT, "--input", "amount=40", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert outcome["status"] == "succeeded" and outcome["verdict"] == "Paid" and outcome["exit_code"] == 0
    _iso(outcome["at"])
    parked = sx("run", PAYMENT, "--json")
    assert parked.returncode == 3
    waiting = json.loads(parked.stdout)
    assert waiting["status"] == "waiting" and waiting["exit_code"] == 3
    assert waiting["waiting"]["action"]["target"] == "fx.pay" and waiting["waiting"]["decision"]


def test_approve_resume_and_reject_json_say_what_was_decided_and_how_the_run_ended(sx):
    first = json.loads(sx("run", PAYMENT, "--json").stdout)
    approved = sx("approve", first["waiting"]["decision"], "--note", "ok", "--resume", "--json")
    assert approved.returncode == 0, approved.stderr
    outcome = json.loads(approved.stdout)
    assert outcome["status"] == "succeeded" and outcome["verdict"] == "Paid"
    second = json.loads(sx("run", PAYMENT, "--json").stdout)
    rejected = sx("reject", second["waiting"]["decision"], "--reason", "duplicate", "--json")
    assert rejected.returncode == 0, rejected.stderr
    decided = json.loads(rejected.stdout)
    assert decided["changed"] and decided["decision"]["status"] == "rejected"
    assert decided["decision"]["outcome"]["note"] == "duplicate"
    _iso(decided["decision"]["outcome"]["at"])
    _iso(decided["decision"]["requested_at"])
    resumed = sx("resume", second["run"], "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["verdict"] == "Rejected"


def test_cancel_json_and_runs_json_carry_iso_times(sx):
    parked = json.loads(sx("run", PAYMENT, "--json").stdout)
    cancelled = sx("cancel", parked["run"], "--reason", "wrong supplier", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"run": parked["run"], "status": "cancelled", "reason": "wrong supplier"}
    (row,) = json.loads(sx("runs", "--json").stdout)
    assert row["status"] == "cancelled"
    _iso(row["started"])
    _iso(sx.state(parked["run"])["started"])


def test_approving_a_run_another_process_drives_records_it_and_exits_0(sx, tmp_path):
    parked = json.loads(sx("run", PAYMENT, "--json").stdout)
    store = sx.store()
    with store.lock(parked["run"]):  # another process drives the run
        approved = sx("approve", parked["waiting"]["decision"], "--resume")
    store.close()
    assert approved.returncode == 0, approved.stderr
    assert "another process, which will apply this decision" in approved.stdout
    assert json.loads(sx("decision", "show", parked["waiting"]["decision"], "--json").stdout)["status"] == "approved"


@pytest.mark.parametrize("argv", [["-h"], ["run", "-h"], ["decision", "show", "-h"]])
def test_h_is_help(argv, capsys):
    assert main(argv) == 0
    assert "Usage:" in capsys.readouterr().out


def test_a_crash_is_exit_70_with_the_traceback_and_version_in_the_crash_log(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIOX_HOME", str(home))

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in studiox")

    monkeypatch.setattr(api, "list_runs", broken)
    assert main(["runs"]) == 70
    err = capsys.readouterr().err
    log = home / "logs" / "crash.log"
    assert "internal error (a bug): RuntimeError: a bug in studiox" in err and str(log) in err
    assert "Traceback" not in err
    text = log.read_text()
    assert f"studiox {__version__}" in text and "RuntimeError: a bug in studiox" in text
    assert re.search(r"Traceback \(most recent call last\)", text)


def test_home_below_a_regular_file_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    mission = write_mission(tmp_path / "m.yaml", "mission: t\nsteps:\n  - {id: a, set: {x: 1}}\n")
    assert main(["run", str(mission), "--home", str(blocker / "home")]) == 2
    assert str(blocker) in capsys.readouterr().err


def test_the_state_folder_is_found_above_the_current_folder_like_git(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "missions" / "deep").mkdir(parents=True)
    mission = write_mission(project / "missions" / "m.yaml", "mission: here\nsteps:\n  - {id: a, set: {x: 1}}\n")
    monkeypatch.delenv("STUDIOX_HOME", raising=False)
    monkeypatch.chdir(project)
    assert main(["run", str(mission), "-q"]) == 0
    assert (project / ".studiox" / "studiox.json").is_file()
    capsys.readouterr()
    monkeypatch.chdir(project / "missions" / "deep")
    assert main(["runs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["mission"] == "here"
    assert not (project / "missions" / "deep" / ".studiox").exists()  # nothing was created down here
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("STUDIOX_HOME", str(other))  # an explicit choice wins over the search
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_set_with_an_unknown_name_or_an_unfit_value_exits_2_and_records_nothing(sx):
    parked = json.loads(sx("run", PAYMENT, "--json").stdout)
    decision = parked["waiting"]["decision"]
    typo = sx("approve", decision, "--set", "amt=1700", "--resume")
    assert typo.returncode == 2
    assert "fx.pay has no argument 'amt' — did you mean 'amount'? (its arguments: amount, to)" in typo.stderr
    unfit = sx("approve", decision, "--set", "amount=twelve")
    assert unfit.returncode == 2 and "--set amount:" in unfit.stderr and "nothing was recorded" in unfit.stderr
    negative = sx("approve", decision, "--set", "amount=-5")
    assert negative.returncode == 2
    assert json.loads(sx("decision", "show", decision, "--json").stdout)["status"] == "pending"
    approved = sx("approve", decision, "--set", "amount=1,700.00", "--json")
    assert approved.returncode == 0, approved.stderr
    outcome = json.loads(approved.stdout)["decision"]["outcome"]
    assert outcome["action"]["arguments"]["amount"] == 1700 and outcome["edited"]


def test_a_mission_this_version_validated_before_is_not_checked_again(sx, tmp_path, monkeypatch):
    from studiox.mission import schema

    checked = []
    check = schema.check
    monkeypatch.setattr(schema, "check", lambda located: checked.append(located.file) or check(located))
    mission = write_mission(tmp_path / "m.yaml", "mission: t\nsteps:\n  - {id: a, set: {x: 1}}\n")
    assert sx("run", mission, "-q").returncode == 0
    assert sx("run", mission, "-q").returncode == 0
    assert len(checked) == 1  # the second run found its digest among the validated ones
    mission.write_text(mission.read_text().replace("x: 1", "x: 2"))
    assert sx("run", mission, "-q").returncode == 0
    assert len(checked) == 2  # another text is checked in full
    mission.write_text("mission: t\nsteps:\n  - {id: a, sett: {x: 1}}\n")
    assert sx("run", mission).returncode == 2  # and an invalid one is still refused


def test_runs_shows_the_newest_first_within_a_limit_and_filters_by_key_and_time(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: t\nkey: ${{ inputs.n }}\ninputs: {n: {type: string}}\n"
                                                 "steps:\n  - {id: a, set: {x: 1}}\n")
    made = []
    for n in ("A", "B", "C"):
        result = sx("run", mission, "--input", f"n={n}", "-q")
        assert result.returncode == 0, result.stderr
        made.append(result.stdout.split()[0])
    newest = json.loads(sx("runs", "--limit", "2", "--json").stdout)
    assert [r["id"] for r in newest] == made[:0:-1]  # C, then B
    shown = sx("runs", "--limit", "2")
    assert "the newest 2 of 3 runs; --limit N or --all for more" in shown.stdout
    assert len(json.loads(sx("runs", "--all", "--json").stdout)) == 3
    assert [r["key"] for r in json.loads(sx("runs", "--key", "B", "--json").stdout)] == ["B"]
    assert len(json.loads(sx("runs", "--since", "1h", "--json").stdout)) == 3
    assert json.loads(sx("runs", "--since", "2999-01-01", "--json").stdout) == []
    bad = sx("runs", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since yesterday-ish" in bad.stderr


def test_decisions_lists_the_oldest_first_within_a_limit_and_filters_by_key(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: t\nkey: ${{ inputs.n }}\ninputs: {n: {type: string}}\n"
                                                 "integrations: {fx: {command: x}}\n"
                                                 "steps:\n  - {id: p, tool: fx.pay, arguments: {amount: 1}}\n")
    waiting = [json.loads(sx("run", mission, "--input", f"n={n}", "--json").stdout)["waiting"]["decision"]
               for n in ("A", "B", "C")]
    assert [d["id"] for d in json.loads(sx("decisions", "--limit", "2", "--json").stdout)] == waiting[:2]
    assert "the oldest 2; there may be more: --limit N" in sx("decisions", "--limit", "2").stdout
    assert [d["key"] for d in json.loads(sx("decisions", "--key", "C", "--json").stdout)] == ["C"]


def test_shell_completion_can_be_installed(capsys):
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert "--install-completion" in shown and "--show-completion" in shown
