"""Who may decide: the mission keys, the one rule function (check_decider) and the Decision Queue's
quorum records, without a terminal. Real OS users at the shell are in test_approvers_cli.py."""

from __future__ import annotations

import pytest

from studiox.errors import DecisionError
from studiox.governance import (
    APPROVED,
    EXPIRED,
    PENDING,
    REJECTED,
    Action,
    DecisionQueue,
    approval_rules,
    check_decider,
    os_groups,
    os_user,
)
from studiox.mission import Approval, loads
from studiox.state import backends

pytestmark = pytest.mark.usefixtures("backend")  # each test on the local store and on PostgreSQL

MISSION = """
mission: who-may-decide
integrations:
  erp: {command: python, args: [-m, studiox.examples.erp_server]}
inputs:
  amount: {type: number, default: 120}
steps:
  - id: pay
    tool: erp.post_payment
    arguments: {invoice_number: INV-7, po_number: PO-1042, amount: "${{ inputs.amount }}"}
    approval:
      approvers: [finance, carol]
      four_eyes: true
      quorum: 2
      quorum_when: ${{ args.amount > 10000 }}
"""

PAY = Action("tool", "erp.post_payment", {"amount": 120})


def _rules(**overrides) -> dict:
    return {"approvers": [], "four_eyes": False, "quorum": 1, "started_by": "alice", **overrides}


# ---------------------------------------------------------------------------- the mission keys


def test_the_keys_of_who_may_decide_load_into_the_approval():
    approval = loads(MISSION, check_paths=False).steps[0].approval
    assert approval == Approval(approvers=("finance", "carol"), four_eyes=True, quorum=2,
                                quorum_when="${{ args.amount > 10000 }}")


def test_without_them_anyone_may_decide_alone():
    assert Approval() == Approval(approvers=(), four_eyes=False, quorum=1, quorum_when=None)
    assert approval_rules(Approval(required=True), {}, PAY) is None
    assert approval_rules(None, {}, PAY) is None


# ---------------------------------------------------------------------------- the rules when filed


def test_quorum_when_is_evaluated_once_over_the_arguments_when_the_decision_is_filed():
    approval = Approval(quorum=2, quorum_when="${{ args.amount > 10000 }}")
    small = approval_rules(approval, {}, PAY)
    big = approval_rules(approval, {}, PAY.with_arguments({"amount": 25000}))
    assert small is not None and big is not None
    assert small["quorum"] == 1 and small["quorum_rule"] == {"quorum": 2, "when": approval.quorum_when,
                                                             "result": False}
    assert big["quorum"] == 2 and big["quorum_rule"]["result"] is True


def test_a_quorum_rule_that_cannot_be_evaluated_keeps_the_quorum():
    rules = approval_rules(Approval(quorum=3, quorum_when="${{ args.amount > 'many' }}"), {}, PAY)
    assert rules is not None and rules["quorum"] == 3
    assert rules["quorum_rule"]["result"] is True and "the quorum applies" in rules["quorum_rule"]["error"]


def test_in_doubt_questions_and_budget_raises_are_answered_by_one_eligible_person():
    approval = Approval(approvers=("finance",), quorum=2)
    assert approval_rules(approval, {}, PAY, in_doubt=True) == {"approvers": ["finance"], "four_eyes": False,
                                                               "quorum": 1}
    budget = Action("budget", "pay", {"raise_by": 1.0})
    assert approval_rules(approval, {}, budget)["quorum"] == 1


# ---------------------------------------------------------------------------- check_decider


def test_approvers_admit_a_listed_user_or_a_member_of_a_listed_group():
    rules = _rules(approvers=["finance", "carol"])
    assert check_decider(rules, APPROVED, "carol", []) == "carol"
    assert check_decider(rules, APPROVED, "bob", ["staff", "finance"]) == "finance"
    with pytest.raises(DecisionError, match=r"^bob is not among the approvers \(finance, carol\)$"):
        check_decider(rules, APPROVED, "bob", ["staff"])
    with pytest.raises(DecisionError, match="bob is not among the approvers"):
        check_decider(rules, REJECTED, "bob", ["staff"])  # deciding at all, rejecting too


def test_a_claimed_name_never_admits_anyone():
    with pytest.raises(DecisionError, match=r"bob is not among the approvers \(carol\); '--as carol' is a label"):
        check_decider(_rules(approvers=["carol"]), APPROVED, "bob", [], claimed="carol")


def test_four_eyes_refuses_the_starter_approving_but_lets_them_reject():
    rules = _rules(four_eyes=True)
    with pytest.raises(DecisionError, match=r"^you \(alice\) started this run; four-eyes: someone else must approve$"):
        check_decider(rules, APPROVED, "alice", [])
    check_decider(rules, REJECTED, "alice", [])
    check_decider(rules, APPROVED, "bob", [])


def test_a_quorum_counts_each_person_once():
    rules = _rules(quorum=2)
    given = [{"by": "alice"}]
    with pytest.raises(DecisionError, match=r"^alice already approved; 1 more approver needed \(quorum 2\)$"):
        check_decider(rules, APPROVED, "alice", [], given)
    check_decider(rules, APPROVED, "bob", [], given)


def test_policy_may_approve_alone_but_never_toward_a_quorum():
    check_decider(_rules(approvers=["carol"], four_eyes=True), APPROVED, "policy", [])
    with pytest.raises(DecisionError, match="a quorum of 2 needs people: the auto-approval rule does not count"):
        check_decider(_rules(quorum=2), APPROVED, "policy", [])


def test_edited_arguments_need_the_full_quorum_that_quorum_when_had_waived():
    rules = _rules(quorum=1, quorum_rule={"quorum": 2, "when": "${{ args.amount > 10000 }}", "result": False})
    with pytest.raises(DecisionError, match=r"^alice already approved; 0 more approvers needed \(quorum 1\)$"):
        check_decider(rules, APPROVED, "alice", [], [{"by": "alice"}])  # as proposed, one is enough
    with pytest.raises(DecisionError, match=r"^alice already approved; 1 more approver needed \(quorum 2\)$"):
        check_decider(rules, APPROVED, "alice", [], [{"by": "alice"}], edited=True)


def test_no_rules_no_checks():
    assert check_decider(None, APPROVED, "anyone", []) is None


# ---------------------------------------------------------------------------- the queue's records


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def queue(tmp_path):
    store = backends.open_store(tmp_path / "home", create=True)
    assert store is not None
    store.append("run1", 1, {"type": "run_started", "seq": 1, "at": 1.0, "user": "alice"})
    return DecisionQueue(store, Clock())


def _file(queue, approval: Approval, action: Action = PAY, timeout: float | None = None):
    """A decision of the run's step 'pay' (each in a slot of its own), filed under ``approval``'s rules."""
    slot = f"pay#{len(queue.all())}"
    return queue.request(run_id="run1", mission="m", step="pay", slot=slot, action=action, evidence=[], explain=None,
                         timeout=timeout, rules=approval_rules(approval, {}, action))


def test_the_rules_and_the_starter_are_filed_with_the_decision(queue):
    decision = _file(queue, Approval(four_eyes=True))
    assert decision.request["rules"] == {"approvers": [], "four_eyes": True, "quorum": 1, "started_by": "alice"}
    assert _file(queue, Approval(required=True)).request.get("rules") is None


def test_a_refusal_records_nothing(queue):
    decision = _file(queue, Approval(four_eyes=True, approvers=("finance",)))
    with pytest.raises(DecisionError, match="four-eyes"):
        queue.decide(decision.id, APPROVED, by="alice", groups=["finance"])
    with pytest.raises(DecisionError, match="not among the approvers"):
        queue.decide(decision.id, APPROVED, by="bob", groups=[])
    assert queue.get(decision.id).status == PENDING
    assert queue.store.records(f"decision:{decision.id}:") == []


def test_one_approval_decides_when_there_is_no_quorum_and_is_listed(queue):
    decision = _file(queue, Approval(approvers=("finance",)))
    done = queue.decide(decision.id, APPROVED, by="bob", groups=["finance"], note="ok", claimed="Bob B.")
    assert done.status == APPROVED and done.outcome is not None
    assert done.outcome["approvals"] == [{"by": "bob", "claimed_by": "Bob B.", "at": done.outcome["approvals"][0]["at"],
                                          "note": "ok", "approver": "finance"}]


def test_a_quorum_executes_only_after_enough_distinct_people_approved(queue):
    decision = _file(queue, Approval(quorum=2))
    first = queue.decide(decision.id, APPROVED, by="bob", note="looks right")
    assert first.status == PENDING and [a["by"] for a in first.approvals] == ["bob"] and first.quorum == 2
    with pytest.raises(DecisionError, match="bob already approved; 1 more approver needed"):
        queue.decide(decision.id, APPROVED, by="bob", claimed="someone else")
    done = queue.decide(decision.id, APPROVED, by="carol")
    assert done.status == APPROVED and done.outcome is not None
    assert done.outcome["by"] == "bob, carol" and done.outcome["note"] == "bob: looks right"
    assert [(a["by"], a["note"]) for a in done.outcome["approvals"]] == [("bob", "looks right"), ("carol", None)]
    assert done.outcome["approvals"][0]["at"] < done.outcome["approvals"][1]["at"]
    assert queue.decide(decision.id, APPROVED, by="dave").outcome == done.outcome  # approving twice is harmless


def test_any_rejection_rejects_a_quorum_at_once(queue):
    decision = _file(queue, Approval(quorum=3))
    queue.decide(decision.id, APPROVED, by="bob")
    done = queue.decide(decision.id, REJECTED, by="carol", note="wrong supplier")
    assert done.status == REJECTED and done.outcome is not None and done.outcome["by"] == "carol"
    assert [a["by"] for a in done.outcome["approvals"]] == ["bob"]  # who had approved before
    with pytest.raises(DecisionError, match="already rejected by carol"):
        queue.decide(decision.id, APPROVED, by="dave")


def test_every_approver_of_a_quorum_approves_the_same_action(queue):
    decision = _file(queue, Approval(quorum=2))
    queue.decide(decision.id, APPROVED, by="bob", action=PAY.with_arguments({"amount": 118}))
    with pytest.raises(DecisionError, match=r"bob approved other arguments \(amount=118\)"):
        queue.decide(decision.id, APPROVED, by="carol")
    done = queue.decide(decision.id, APPROVED, by="carol", action=PAY.with_arguments({"amount": 118}))
    assert done.outcome is not None and done.outcome["edited"] and done.outcome["action"]["arguments"] == {
        "amount": 118}


def test_editing_under_a_waived_quorum_needs_the_full_quorum(queue):
    decision = _file(queue, Approval(quorum=2, quorum_when="${{ args.amount > 10000 }}"))
    assert decision.quorum == 1
    edited = queue.decide(decision.id, APPROVED, by="bob", action=PAY.with_arguments({"amount": 50000}))
    assert edited.status == PENDING and edited.quorum == 2
    assert queue.decide(decision.id, APPROVED, by="carol", action=PAY.with_arguments({"amount": 50000})).status \
        == APPROVED


def test_a_quorum_reached_by_an_approver_cut_short_is_completed_by_the_next_answer(queue):
    decision = _file(queue, Approval(quorum=2))
    for who in ("bob", "carol"):  # two approvals recorded, the outcome never written (a crash)
        queue.store.add_record(f"decision:{decision.id}:approval:{who}", {
            "by": who, "claimed_by": None, "at": queue.clock(), "note": None, "approver": None,
            "action": decision.request["action"]})
    assert queue.get(decision.id).status == PENDING
    with pytest.raises(DecisionError, match="was already approved by bob, carol"):
        queue.decide(decision.id, REJECTED, by="dave", note="too late")
    assert queue.get(decision.id).status == APPROVED


def test_policy_approves_alone_but_a_quorum_waits_for_people(queue):
    alone = _file(queue, Approval(approvers=("carol",), four_eyes=True))
    assert queue.decide(alone.id, APPROVED, by="policy", rule={"when": "x"}).status == APPROVED
    quorum = _file(queue, Approval(quorum=2))
    with pytest.raises(DecisionError, match="needs people"):
        queue.decide(quorum.id, APPROVED, by="policy", rule={"when": "x"})
    assert queue.get(quorum.id).status == PENDING


def test_the_time_limit_expires_a_quorum_still_pending(queue):
    decision = _file(queue, Approval(quorum=2), timeout=5)
    queue.decide(decision.id, APPROVED, by="bob")
    queue.clock.now += 10
    with pytest.raises(DecisionError, match="already expired"):
        queue.decide(decision.id, APPROVED, by="carol")
    assert queue.get(decision.id).status == EXPIRED


# ---------------------------------------------------------------------------- the OS doors


def test_the_os_user_is_the_real_uid_not_what_the_environment_says(monkeypatch):
    import os
    import pwd

    monkeypatch.setenv("USER", "somebody-else")
    monkeypatch.setenv("LOGNAME", "somebody-else")
    assert os_user() == pwd.getpwuid(os.getuid()).pw_name


def test_os_groups_are_the_primary_group_and_the_supplementary_ones():
    import grp
    import os
    import pwd

    me = pwd.getpwuid(os.getuid())
    assert grp.getgrgid(me.pw_gid).gr_name in os_groups(me.pw_name)
    assert os_groups("sxtest-no-such-user") == frozenset()


def test_approvals_of_different_actions_given_at_the_same_moment_never_add_up(queue):
    decision = _file(queue, Approval(quorum=2))
    for who, amount in (("bob", 118), ("carol", 120)):  # both filed before either saw the other
        queue.store.add_record(f"decision:{decision.id}:approval:{who}", {
            "by": who, "claimed_by": None, "at": queue.clock(), "note": None, "approver": None,
            "action": PAY.with_arguments({"amount": amount}).as_dict()})
    with pytest.raises(DecisionError, match=r"bob approved other arguments \(amount=118\)"):
        queue.decide(decision.id, APPROVED, by="dave")
    assert queue.get(decision.id).status == PENDING
    done = queue.decide(decision.id, APPROVED, by="dave", action=PAY.with_arguments({"amount": 118}))
    assert done.outcome is not None and [a["by"] for a in done.outcome["approvals"]] == ["bob", "dave"]


def test_a_person_named_like_the_auto_approval_rule_is_not_taken_for_it(monkeypatch):
    import pwd

    from studiox import governance

    class Entry:
        pw_name = "policy"

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: Entry())
    assert governance.os_user().startswith("policy (uid ")


def test_user_and_group_prefixes_say_which_an_approvers_entry_names():
    from studiox.governance import _admits

    assert _admits("user:alice", "alice", set()) and not _admits("user:alice", "bob", {"alice"})
    assert _admits("group:finance", "bob", {"finance"}) and not _admits("group:finance", "finance", set())
    assert _admits("alice", "bob", {"alice"}) and _admits("alice", "alice", set())  # bare: either
