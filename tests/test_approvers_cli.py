"""Who may decide, at the shell, with real distinct OS users: four-eyes, quorum, approvers by group.

The tests run as root (as CI does): root starts each run, and OS users made for the tests
(``sxtest-*``, created once, idempotently) approve with ``studiox approve`` under their own
uid and groups. Nothing here fakes an identity: studiox reads the process's real uid.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import write_mission
from support.terminal import Terminal

GROUP = "sxtest-finance"
USERS = {"sxtest-alice": [GROUP], "sxtest-bob": [GROUP], "sxtest-carol": [], "sxtest-dave": []}
ALICE, BOB, CAROL, DAVE = USERS

MISSION = """
mission: approvers
inputs:
  amount: {type: number, default: 120}
integrations:
  fx: {command: unused-in-tests}
steps:
  - id: pay
    tool: fx.pay
    arguments: {amount: "${{ inputs.amount }}", to: ACME GmbH}
    approval:
%s
verdict:
  choices: [Paid, Rejected]
  value: Paid
"""


def _ensure_users() -> None:
    """The test users and their group; kept between runs (creating them again changes nothing)."""
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    for user, groups in USERS.items():
        try:
            pwd.getpwnam(user)
        except KeyError:
            created = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                      "--user-group", user], capture_output=True, text=True)
            assert created.returncode in (0, 9), created.stderr  # 9: made meanwhile by another test process
        for group in groups:
            if user not in grp.getgrnam(group).gr_mem:
                subprocess.run(["usermod", "-a", "-G", group, user], check=True)


@pytest.fixture(scope="module")
def users():
    if os.geteuid() != 0:
        pytest.skip("needs root, to create the OS users who approve (CI runs as root)")
    if not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.fail("setpriv (util-linux) and useradd (passwd) are needed to approve as other OS users")
    _ensure_users()


class Shell:
    """The state folder shared by the run's starter (root) and the approvers."""

    def __init__(self, sx, tmp_path, shared: Path, approval: str):
        self.sx = sx
        sx.home = shared / "home"
        self.mission = write_mission(tmp_path / "approvers.yaml", MISSION % approval)

    def park(self, *args) -> str:
        """Root starts the run without a terminal: it parks; the decision's id."""
        result = self.sx("run", self.mission, *args)
        assert result.returncode == 3, result.stdout + result.stderr
        # the approvers write to the same folder (a team's shared state folder, here open to all)
        subprocess.run(["chmod", "-R", "a+rwX", self.sx.home], check=True)
        return result.stdout.split("waiting for a decision ")[1].split(":")[0]

    def as_user(self, user: str, *args) -> subprocess.CompletedProcess:
        """``studiox ARGS`` as ``user``: its own uid, its primary group and its supplementary groups.

        The interpreter under test may live where other users cannot read (under /root here, in a
        mode-700 folder in CI), so the command keeps one capability: reading and searching any
        file. It writes only what the user may write, and studiox sees the user's uid and groups.
        """
        setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                   "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
        return subprocess.run(setpriv + self.sx.argv(*args), capture_output=True, text=True, timeout=60,
                              env=_unmeasured(self.sx.env(HOME=str(self.sx.home.parent))), stdin=subprocess.DEVNULL, umask=0)

    def show(self, decision_id: str) -> dict:
        return json.loads(self.sx("decision", "show", decision_id, "--json").stdout)

    def paid(self) -> list[dict]:
        return [e["arguments"] for e in self.sx.effects_log() if e["tool"] == "pay"]


@pytest.fixture
def shell(sx, tmp_path, users):
    # the state folder lives where the approvers can reach it (pytest's own temporary folder is
    # root's alone, and studiox asks the system whether the user may write, as it should)
    shared = Path(tempfile.mkdtemp(prefix="sxtest-state-"))
    shared.chmod(0o777)
    yield lambda approval: Shell(sx, tmp_path, shared, approval)
    shutil.rmtree(shared)


def test_the_test_users_are_real_and_distinct(shell):
    who = shell("      required: true").as_user(BOB, "--version")  # the CLI runs as bob
    assert who.returncode == 0, who.stderr
    probe = subprocess.run(["setpriv", f"--reuid={BOB}", f"--regid={BOB}", "--init-groups", "--", "id", "-un"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == BOB and GROUP in subprocess.run(["id", "-Gn", BOB], capture_output=True,
                                                                    text=True).stdout.split()


def test_four_eyes_refuses_the_runs_starter_and_records_nothing(shell):
    s = shell("      four_eyes: true")
    decision_id = s.park()
    refused = s.sx("approve", decision_id, "--note", "my own")  # root started the run
    assert refused.returncode == 2
    assert refused.stderr.strip() == "you (root) started this run; four-eyes: someone else must approve"
    shown = s.show(decision_id)
    assert shown["status"] == "pending" and shown["approvals"] == [] and shown["rules"]["started_by"] == "root"
    approved = s.as_user(ALICE, "approve", decision_id, "--note", "checked the invoice")
    assert approved.returncode == 0, approved.stderr
    outcome = s.show(decision_id)["outcome"]
    assert outcome["by"] == ALICE and [(a["by"], a["note"]) for a in outcome["approvals"]] == [
        (ALICE, "checked the invoice")]
    resumed = s.sx("resume", shown["run"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert s.paid() == [{"amount": 120, "to": "ACME GmbH"}]


def test_a_quorum_needs_distinct_people_and_as_never_counts(shell):
    s = shell("      quorum: 2\n      quorum_when: ${{ args.amount > 10000 }}")
    decision_id = s.park("--input", "amount=25000")
    first = s.as_user(ALICE, "approve", decision_id, "--note", "fine by me", "--resume")
    assert first.returncode == 0, first.stderr  # recorded; with one approval of two there is nothing to resume
    assert f"approved by {ALICE}; 1 more approver needed (quorum 2)" in first.stdout
    again = s.as_user(ALICE, "approve", decision_id, "--as", "Bob (CFO)")
    assert again.returncode == 2
    assert again.stderr.strip() == f"{ALICE} already approved; 1 more approver needed (quorum 2)"
    shown = s.show(decision_id)
    assert shown["status"] == "pending" and shown["quorum"] == 2 and [a["by"] for a in shown["approvals"]] == [ALICE]
    parked = s.sx("resume", shown["run"])
    assert parked.returncode == 3 and s.paid() == []  # one approval of two runs nothing
    second = s.as_user(BOB, "approve", decision_id)
    assert second.returncode == 0, second.stderr
    outcome = s.show(decision_id)["outcome"]
    assert outcome["status"] == "approved" and outcome["by"] == f"{ALICE}, {BOB}"
    assert [(a["by"], a["note"]) for a in outcome["approvals"]] == [(ALICE, "fine by me"), (BOB, None)]
    assert all(a["at"] for a in outcome["approvals"])
    assert s.sx("resume", shown["run"]).returncode == 0
    assert s.paid() == [{"amount": 25000, "to": "ACME GmbH"}]


def test_below_quorum_when_one_approval_is_enough(shell):
    s = shell("      quorum: 2\n      quorum_when: ${{ args.amount > 10000 }}")
    decision_id = s.park()  # 120
    assert s.show(decision_id)["quorum"] == 1
    assert s.as_user(CAROL, "approve", decision_id).returncode == 0
    assert s.sx("resume", s.show(decision_id)["run"]).returncode == 0
    assert s.paid() == [{"amount": 120, "to": "ACME GmbH"}]


def test_any_rejection_rejects_a_quorum(shell):
    s = shell("      quorum: 3")
    decision_id = s.park()
    assert s.as_user(ALICE, "approve", decision_id).returncode == 0
    assert s.as_user(BOB, "approve", decision_id).returncode == 0
    rejected = s.as_user(CAROL, "reject", decision_id, "--reason", "wrong supplier")
    assert rejected.returncode == 0, rejected.stderr
    outcome = s.show(decision_id)["outcome"]
    assert (outcome["status"], outcome["by"], outcome["note"]) == ("rejected", CAROL, "wrong supplier")
    assert [a["by"] for a in outcome["approvals"]] == [ALICE, BOB]
    late = s.as_user(DAVE, "approve", decision_id)
    assert late.returncode == 2 and f"already rejected by {CAROL}" in late.stderr
    ended = s.sx("resume", s.show(decision_id)["run"])
    assert ended.returncode == 0 and "Rejected" in ended.stdout and s.paid() == []


def test_approvers_by_group_and_a_claimed_name_admits_no_one(shell):
    s = shell(f"      approvers: [{GROUP}, {CAROL}]")
    decision_id = s.park()
    outsider = s.as_user(DAVE, "approve", decision_id, "--as", CAROL)
    assert outsider.returncode == 2
    assert outsider.stderr.strip() == (f"{DAVE} is not among the approvers ({GROUP}, {CAROL}); "
                                       f"'--as {CAROL}' is a label and admits no one")
    assert s.as_user(DAVE, "reject", decision_id, "--reason", "no").returncode == 2  # deciding at all
    assert s.sx("approve", decision_id).returncode == 2  # root is no approver either
    assert s.show(decision_id)["status"] == "pending"
    member = s.as_user(BOB, "approve", decision_id, "--as", "Bob B.")
    assert member.returncode == 0, member.stderr
    outcome = s.show(decision_id)["outcome"]
    assert outcome["by"] == BOB and outcome["claimed_by"] == "Bob B."
    assert outcome["approvals"][0]["approver"] == GROUP  # admitted as a member of the group


def test_policy_never_counts_toward_a_quorum(shell):
    s = shell("      auto_approve_when: ${{ args.amount < 1000 }}\n      reason: small\n      quorum: 2")
    result = s.sx("run", s.mission)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the auto-approval rule holds, but a quorum of 2 needs people" in result.stdout
    assert s.paid() == []


def test_at_the_terminal_the_starter_is_refused_under_four_eyes_and_the_run_parks(sx, tmp_path):
    mission = write_mission(tmp_path / "approvers.yaml", MISSION % "      four_eyes: true")
    term = Terminal([sys.executable, "-m", "support.sx", "run", str(mission)], sx.env(COLUMNS="120"))
    term.expect("defer (d)? [defer]")
    term.type("a\n")
    term.expect("note (optional):")
    term.type("\n")
    term.expect("type approve to confirm")
    term.type("approve\n")
    screen = term.expect("waiting for a decision")
    assert f"you ({pwd.getpwuid(os.getuid()).pw_name}) started this run; four-eyes: someone else must approve" in screen
    assert term.wait() == 3
    assert [e for e in sx.effects_log() if e["tool"] == "pay"] == []


def _unmeasured(env: dict) -> dict:
    """The environment without coverage's subprocess measuring: another OS user cannot write its data file."""
    return {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
