"""The Decision Queue: which actions need a human decision, and the decision records.

The gate is one rule for every kind of step: an action runs without a decision only when it
is known to be read-only (an integration says so, or the mission trusts it explicitly) and the
step does not require approval. A mission's auto-approval rule decides as ``policy``, and
that decision is recorded like any other. Decisions are immutable facts in the store: the
first answer written wins, so approving twice is harmless and approve-versus-reject races
have exactly one winner.

Who may decide (``approvers``, ``four_eyes``, ``quorum``) is checked here and only here, by
:func:`check_decider`, whatever face a person uses: the rules are snapshotted into the decision
when it is filed, and every answer passes through :meth:`DecisionQueue.decide`.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .errors import DecisionError, RunNotFound, StudioxError

__all__ = ["DecisionError"]  # re-exported: raised by the queue's callers too
from .state.store import Store
from .units import when

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PENDING, APPROVED, REJECTED, EXPIRED, VOID = "pending", "approved", "rejected", "expired", "void"
POLICY, STUDIOX = "policy", "studiox"  # deciders that are not people: the auto-approval rule, the time limit


@dataclass(frozen=True)
class Action:
    """What a step is about to do to the outside world; an approval binds to its digest."""

    kind: str  # "tool" (an integration's tool) or "step" (a step and its rendered inputs)
    target: str  # "erp.post_payment", or the step id
    arguments: dict
    read_only: bool = False  # the integration says so (annotation), or the mission trusts it
    read_only_why: str | None = None
    input_schema: dict | None = None
    idempotent: bool = False

    def digest(self) -> str:
        canonical = json.dumps([self.kind, self.target, self.arguments], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def misfit(self) -> str | None:
        """Why these arguments can never fit the tool's input schema, or None when they fit (or no schema is known).

        Checked before anyone is asked: a call that cannot succeed is not a decision to make."""
        if not self.input_schema or self.kind != "tool":
            return None
        import jsonschema

        try:
            errors = sorted(jsonschema.Draft202012Validator(self.input_schema).iter_errors(self.arguments),
                            key=lambda e: list(e.path))
        except Exception:  # noqa: BLE001 - a broken schema from the server is the tool call's own error, later
            return None
        if not errors:
            return None
        problems = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors[:5])
        return f"the arguments for {self.target} do not fit the tool: {problems}"

    def with_arguments(self, arguments: dict) -> Action:
        return replace(self, arguments=arguments)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target, "arguments": self.arguments, "read_only": self.read_only,
                "idempotent": self.idempotent, "digest": self.digest()}

    @classmethod
    def from_dict(cls, data: dict) -> Action:
        return cls(data["kind"], data["target"], data["arguments"], data.get("read_only", False),
                   idempotent=data.get("idempotent", False))


@dataclass
class Decision:
    """A decision record and, once made, its outcome."""

    id: str
    request: dict
    outcome: dict | None = None
    expired_now: bool = field(default=False)
    run_ended: str | None = None  # how the run ended, if it ended without this decision
    approvals: list[dict] = field(default_factory=list)  # so far, toward a quorum still pending

    @property
    def rules(self) -> dict | None:
        """Who may decide, as filed with the request (None: anyone who can reach the Decision Queue)."""
        return self.request.get("rules")

    @property
    def quorum(self) -> int:
        """How many distinct people must approve it (see :func:`approvals_needed`)."""
        if self.outcome is not None:
            edited = bool(self.outcome.get("edited"))
        else:
            edited = bool(self.approvals) and self.approvals[0]["action"]["digest"] != self.request["action"]["digest"]
        return approvals_needed(self.rules, edited)

    @property
    def progress(self) -> str | None:
        """Where a pending quorum stands, in words: 'approved by alice; 1 more approver needed (quorum 2)'."""
        if self.outcome is not None or not self.approvals:
            return None
        return f"approved by {', '.join(a['by'] for a in self.approvals)}; {_missing(self.quorum, len(self.approvals))}"

    @property
    def status(self) -> str:
        """pending · approved · rejected · expired · void (its run ended without it)."""
        if self.outcome:
            return self.outcome["status"]
        if self.run_ended:
            return VOID
        return EXPIRED if self.expired_now else PENDING

    @property
    def run_id(self) -> str:
        return self.request["run"]


def needs_decision(step, action: Action) -> bool:
    """The gate: True unless the action is known to be read-only and the step does not require approval."""
    if step.approval is not None and step.approval.required:
        return True
    return not action.read_only


def os_user() -> str:
    """The OS user of this process, by its real uid: who decides at a terminal or in a shell.

    Not ``getpass.getuser()``: it believes $USER and $LOGNAME, which anyone can set.
    """
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no name (a container without the user in /etc/passwd)
        return str(os.getuid())
    # a person is never taken for the auto-approval rule or the time limit, whatever their name
    return name if name not in (POLICY, STUDIOX) else f"{name} (uid {os.getuid()})"


def os_groups(user: str) -> frozenset[str]:
    """The Unix groups of an OS user: its primary group and every group that lists it (none if unknown)."""
    try:
        entry = pwd.getpwnam(user)
        gids = os.getgrouplist(user, entry.pw_gid)
    except (KeyError, OSError):
        return frozenset()
    names = set()
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.add(str(gid))
    return frozenset(names)


# ---------------------------------------------------------------------------- who may decide


def approval_rules(approval, data: dict, action: Action, *, in_doubt: bool = False) -> dict | None:
    """The rules of who may decide a step's decision, as filed with it; None when the step sets none.

    ``quorum_when`` is evaluated here, once, over the run's ``data`` and the action's arguments
    (``args``); a rule that cannot be evaluated keeps the quorum (a failing rule never lowers the
    bar). A quorum is about letting an action run: an in-doubt question (did a cut-off call
    happen?) and a budget raise are answered by one eligible person.
    """
    if approval is None or not (approval.approvers or approval.four_eyes or approval.quorum > 1):
        return None
    rules: dict = {"approvers": list(approval.approvers), "four_eyes": approval.four_eyes, "quorum": 1}
    if approval.quorum > 1 and not in_doubt and action.kind in ("tool", "step"):
        rules["quorum"] = approval.quorum
        if approval.quorum_when:
            from . import expressions

            rule: dict = {"quorum": approval.quorum, "when": approval.quorum_when}
            try:
                rule["result"] = bool(expressions.render(approval.quorum_when, {**data, "args": action.arguments},
                                                        "approval.quorum_when"))
            except expressions.ExpressionError as e:
                rule.update(result=True, error=f"{e.message}; the quorum applies")
            rules["quorum_rule"] = rule
            rules["quorum"] = approval.quorum if rule["result"] else 1
    return rules


def approvals_needed(rules: dict | None, edited: bool) -> int:
    """How many distinct people must approve. Approving edited arguments needs the full quorum when
    ``quorum_when`` had waived it: the rule was evaluated over the proposed arguments, not the edited ones."""
    if not rules:
        return 1
    rule = rules.get("quorum_rule")
    return rule["quorum"] if edited and rule else rules.get("quorum", 1)


def check_decider(rules: dict | None, status: str, who: str, groups: Iterable[str], approvals: list[dict] | None = None,
                  *, edited: bool = False, claimed: str | None = None) -> str | None:
    """May ``who`` (with ``groups``) answer ``status`` under ``rules``? Raises DecisionError saying why not;
    returns the entry of ``approvers`` that admits them (None when there is no list).

    The one place these rules live. ``approvals`` are those already given toward a quorum. A
    claimed name (``--as``) is only a label: it never admits anyone nor counts as a person.
    """
    if not rules or status not in (APPROVED, REJECTED) or who == STUDIOX:
        return None
    needed = approvals_needed(rules, edited)
    if who == POLICY:
        if status == APPROVED and needed > 1:
            raise DecisionError(f"a quorum of {needed} needs people: the auto-approval rule does not count toward it")
        return None  # the mission's own rule, recorded as such
    approvers = rules.get("approvers") or []
    admitted = None
    if approvers:
        admitted = next((name for name in approvers if _admits(name, who, set(groups))), None)
        if admitted is None:
            claim = f"; '--as {claimed}' is a label and admits no one" if claimed else ""
            raise DecisionError(f"{who} is not among the approvers ({', '.join(approvers)}){claim}")
    if status != APPROVED:
        return admitted  # anyone who may decide may stop an action, the run's starter included
    if rules.get("four_eyes") and who == rules.get("started_by"):
        raise DecisionError(f"you ({who}) started this run; four-eyes: someone else must approve")
    if any(a["by"] == who for a in approvals or ()):
        raise DecisionError(_already_approved(who, needed, len(approvals or ())))
    return admitted


def _admits(entry: str, who: str, groups: set[str]) -> bool:
    """Whether an ``approvers`` entry admits a person: ``user:NAME`` names a user, ``group:NAME`` a Unix
    group, and a bare NAME either (a personal group named like a user admits its members too: write
    ``user:`` to be exact)."""
    kind, _, name = entry.partition(":")
    if kind == "user" and name:
        return who == name
    if kind == "group" and name:
        return name in groups
    return entry == who or entry in groups


def _already_approved(who: str, needed: int, given: int) -> str:
    return f"{who} already approved; {_missing(needed, given)}"


def _missing(needed: int, given: int) -> str:
    missing = max(needed - given, 0)
    return f"{missing} more approver{'s' if missing != 1 else ''} needed (quorum {needed})"


class DecisionQueue:
    """Decision records in a store: ``decision:ID`` (the request) and ``decision:ID:outcome``."""

    def __init__(self, store: Store, clock):
        self.store = store
        self.clock = clock

    def request(self, *, run_id: str, mission: str, step: str, action: Action, evidence: list, explain: str | None,
                timeout: float | None, in_doubt: bool = False, slot: str | None = None, key: str | None = None,
                new_id=None, rules: dict | None = None, shown: list | None = None, title: str | None = None,
                description: str | None = None, parent: dict | None = None) -> Decision:
        """File a pending decision for ``slot`` of a run; returns it with its short id.

        The slot is claimed first (``slot:RUN:SLOT`` → id), then the decision is written: a crash
        between the two leaves a claim that :meth:`for_slot` completes, never a second decision.
        An ``in_doubt`` decision asks whether a cut-off call happened, rather than whether it may run.
        ``rules`` (from :func:`approval_rules`) say who may decide; they are filed with the run's
        starter, so the record shows which rules applied.
        """
        now = self.clock()
        slot = slot or step
        record = {"run": run_id, "mission": mission, "key": key, "step": step, "slot": slot, "action": action.as_dict(),
                  "in_doubt": in_doubt, "input_schema": action.input_schema, "evidence": evidence,
                  "explain": explain, "requested_at": now, "expires_at": now + timeout if timeout else None,
                  "shown": shown or [], "title": title, "description": description,
                  **({"parent": parent} if parent else {})}  # a sub-mission's run: the run (and step) it serves
        if rules:
            started = self.store.event(run_id, 1) or {}
            record["rules"] = {**rules, "started_by": started.get("user")}
        for _ in range(50):
            decision_id = (new_id or _new_id)()
            if self.store.record(f"decision:{decision_id}") is not None:
                continue
            if not self.store.add_record(f"slot:{run_id}:{slot}", {"id": decision_id, **record}):
                found = self.for_slot(run_id, slot)
                assert found is not None  # the claim exists
                return found
            if self.store.add_record(f"decision:{decision_id}", {"id": decision_id, **record}):
                return Decision(decision_id, {"id": decision_id, **record})
        raise StudioxError("could not find a free decision id")  # pragma: no cover

    def claim(self, decision_id: str, who: str) -> dict:
        """Assign a pending decision to ``who`` (visible to everyone who looks); the first claim stands.
        Returns the claim in force: ``{by, at}``."""
        self.get(decision_id)  # (an unknown id says so)
        self.store.add_record(f"assignee:{decision_id}", {"by": who, "at": self.clock()})
        found = self.store.record(f"assignee:{decision_id}")
        assert found is not None
        return found

    def assignee(self, decision_id: str) -> dict | None:
        """Who claimed a decision, if anyone: ``{by, at}``."""
        return self.store.record(f"assignee:{decision_id}")

    def for_slot(self, run_id: str, slot: str) -> Decision | None:
        """The decision filed for a slot of a run, if any (completing one a crash cut short)."""
        claim = self.store.record(f"slot:{run_id}:{slot}")
        if claim is None:
            return None
        if self.store.record(f"decision:{claim['id']}") is None:
            self.store.add_record(f"decision:{claim['id']}", claim)
        return self.get(claim["id"])

    def get(self, decision_id: str) -> Decision:
        request = self.store.record(f"decision:{decision_id}") if _is_id(decision_id) else None
        if request is None or "run" not in request:
            raise RunNotFound(f"no decision '{decision_id}' (see 'studiox decisions')")
        outcome = self.store.record(f"decision:{decision_id}:outcome")
        expires = request.get("expires_at")
        last = self.store.last_event(request["run"])  # (whether the run ended: its first event is not needed)
        ended = last["status"] if last is not None and last["type"] == "run_finished" else None
        approvals = self._approvals(decision_id) if outcome is None and _may_need_quorum(request) else []
        return Decision(decision_id, request, outcome, expired_now=bool(expires and self.clock() >= expires),
                        run_ended=ended, approvals=approvals)

    def _approvals(self, decision_id: str) -> list[dict]:
        """The approvals given so far toward a decision's quorum, in the order they were given."""
        found = [r for _, r in self.store.records(f"decision:{decision_id}:approval:")]
        return sorted(found, key=lambda a: a["at"])

    def all(self) -> list[Decision]:
        """Every decision, oldest first."""
        return [self.get(row["id"]) for row in self.store.decision_rows(limit=2**62)]

    def decide(self, decision_id: str, status: str, *, by: str, claimed: str | None = None, note: str | None = None,
               action: Action | None = None, rule: dict | None = None, resolution: str | None = None,
               result=None, groups: Iterable[str] | None = None) -> Decision:
        """Record an outcome. The first outcome written wins; a different later one is an error.

        ``by`` is who decides: a person identified by the face they use (at a terminal or in a
        shell, the OS user; ``groups`` default to its Unix groups), ``policy`` or ``studiox``. The
        decision's rules are checked first (:func:`check_decider`); a refusal records nothing.
        Under a quorum an approval is recorded on its own, and the outcome is written when enough
        distinct people have approved; a rejection decides at once. For an in-doubt decision, an
        approval says how: ``resolution`` 'happened' (with the ``result`` the person saw) or
        'retry' (call it again).
        """
        decision = self.get(decision_id)
        if status == APPROVED and decision.request.get("in_doubt") and resolution not in ("happened", "retry"):
            raise DecisionError(f"decision {decision_id} asks whether an interrupted call happened: approve it with "
                                "--happened (and --result JSON) if it did, or --retry to call it again")
        if status in (APPROVED, REJECTED) and decision.outcome is None and decision.expired_now:
            self._write(decision, EXPIRED, by=STUDIOX, note="the decision timed out before anyone decided")
            decision = self.get(decision_id)
        if decision.outcome is None and self._complete(decision):  # a quorum reached by someone cut short
            decision = self.get(decision_id)
        if decision.outcome is None:
            proposed = decision.request["action"]
            approving = action.as_dict() if action else proposed
            agreed = decision.approvals[0]["action"] if decision.approvals else approving
            edited = proposed["digest"] != approving["digest"] or proposed["digest"] != agreed["digest"]
            if decision.rules and decision.rules.get("approvers") and groups is None and by not in (POLICY, STUDIOX):
                groups = os_groups(by)
            admitted = check_decider(decision.rules, status, by, groups or (), decision.approvals, edited=edited,
                                     claimed=claimed)
            mine = {"by": by, "claimed_by": claimed, "at": self.clock(), "note": note, "approver": admitted}
            if status == APPROVED and approvals_needed(decision.rules, edited) > 1:
                return self._approve_toward_quorum(decision, mine, approving)
            people = by not in (POLICY, STUDIOX)
            approvals = [*map(_public, decision.approvals), *([mine] if status == APPROVED else [])] if people else None
            if self._write(decision, status, by=by, claimed=claimed, note=note, approved=approving, rule=rule,
                           resolution=resolution, result=result, approvals=approvals):
                return self.get(decision_id)
            decision = self.get(decision_id)  # someone else decided in the meantime
        existing = decision.outcome
        assert existing is not None  # written by us or by whoever was first
        agreed = existing.get("action", {}).get("digest") == (action.digest() if action is not None
                                                               else decision.request["action"]["digest"])
        if existing["status"] == status == APPROVED and agreed:
            return decision  # approving the same action twice is harmless
        if existing["status"] == status == REJECTED:
            return decision
        raise DecisionError(f"decision {decision_id} was already {existing['status']} by {existing['by']} at "
                            f"{when(existing['at'])}; a decision once made is never changed")

    def _approve_toward_quorum(self, decision: Decision, mine: dict, approving: dict) -> Decision:
        """Record one person's approval (``decision:ID:approval:USER``); when it completes the quorum,
        write the outcome. Every approver of a quorum approves the same action."""
        first = decision.approvals[0] if decision.approvals else None
        if first is not None and first["action"]["digest"] != approving["digest"]:
            raise DecisionError(f"{first['by']} approved {_arguments_of(first['action'], decision)}; every approver "
                                "of a quorum approves the same action: approve with the same --set values, or reject")
        if not self.store.add_record(f"decision:{decision.id}:approval:{mine['by']}", {**mine, "action": approving}):
            decision = self.get(decision.id)  # the same person, from two shells at once
            raise DecisionError(_already_approved(mine["by"], decision.quorum, len(decision.approvals)))
        decision = self.get(decision.id)
        self._complete(decision)  # also when another approval landed at the same moment
        return self.get(decision.id)

    def _complete(self, decision: Decision) -> bool:
        """Write the approved outcome of a pending decision whose quorum its recorded approvals reach."""
        if not decision.approvals:
            return False
        # only approvals of the first one's action count (two may approve different ones at the same moment)
        first = decision.approvals[0]["action"]["digest"]
        approvals = [a for a in decision.approvals if a["action"]["digest"] == first]
        if len(approvals) < decision.quorum:
            return False
        names = ", ".join(a["by"] for a in approvals)
        notes = "; ".join(f"{a['by']}: {a['note']}" for a in approvals if a.get("note")) or None
        self._write(decision, APPROVED, by=names, note=notes, approved=approvals[0]["action"],
                    approvals=[_public(a) for a in approvals])
        return True

    def _write(self, decision: Decision, status: str, *, by: str, claimed: str | None = None, note: str | None = None,
               approved: dict | None = None, rule: dict | None = None, resolution: str | None = None,
               result=None, approvals: list[dict] | None = None) -> bool:
        proposed = decision.request["action"]
        outcome = {"status": status, "by": by, "claimed_by": claimed, "at": self.clock(), "note": note, "rule": rule,
                   "resolution": resolution, "result": result}
        if approvals is not None:
            outcome["approvals"] = approvals  # every person who approved, with time and note
        if status == APPROVED:
            approved = approved or proposed
            outcome.update(action=approved, proposed_arguments=proposed["arguments"],
                           edited=approved["digest"] != proposed["digest"])
        return self.store.add_record(f"decision:{decision.id}:outcome", outcome)


def _may_need_quorum(request: dict) -> bool:
    rules = request.get("rules") or {}
    return rules.get("quorum", 1) > 1 or "quorum_rule" in rules


def _public(approval: dict) -> dict:
    """An approval as the outcome lists it (the approved action is the outcome's own)."""
    return {k: v for k, v in approval.items() if k != "action"}


def _arguments_of(action: dict, decision: Decision) -> str:
    proposed = decision.request["action"]["arguments"]
    changed = {k: v for k, v in action["arguments"].items() if proposed.get(k) != v}
    if not changed:
        return "the proposed arguments"
    return "other arguments (" + ", ".join(f"{k}={json.dumps(v)}" for k, v in changed.items()) + ")"


def _is_id(text: str) -> bool:
    """A decision id as studiox makes them: letters and digits only (never a record's ``ID:outcome``)."""
    return bool(text) and text.isalnum() and text.isascii()


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))

