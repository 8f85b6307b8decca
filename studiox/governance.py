"""The Decision Queue: which actions need a human decision, and the decision records.

The gate is one rule for every kind of step: an action runs without a decision only when it
is known to be read-only (an integration says so, or the mission trusts it explicitly) and the
step does not require approval. A mission's auto-approval rule decides as ``policy``, and
that decision is recorded like any other. Decisions are immutable facts in the store: the
first answer written wins, so approving twice is harmless and approve-versus-reject races
have exactly one winner.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field, replace

from .errors import DecisionError, RunNotFound, StudioxError

__all__ = ["DecisionError"]  # re-exported: raised by the queue's callers too
from .state.journal import summary
from .state.store import Store

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PENDING, APPROVED, REJECTED, EXPIRED, VOID = "pending", "approved", "rejected", "expired", "void"


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
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class DecisionQueue:
    """Decision records in a store: ``decision:ID`` (the request) and ``decision:ID:outcome``."""

    def __init__(self, store: Store, clock):
        self.store = store
        self.clock = clock

    def request(self, *, run_id: str, mission: str, step: str, action: Action, evidence: list, explain: str | None,
                timeout: float | None, in_doubt: bool = False, slot: str | None = None, key: str | None = None,
                new_id=None) -> Decision:
        """File a pending decision for ``slot`` of a run; returns it with its short id.

        The slot is claimed first (``slot:RUN:SLOT`` → id), then the decision is written: a crash
        between the two leaves a claim that :meth:`for_slot` completes, never a second decision.
        An ``in_doubt`` decision asks whether a cut-off call happened, rather than whether it may run.
        """
        now = self.clock()
        slot = slot or step
        record = {"run": run_id, "mission": mission, "key": key, "step": step, "slot": slot, "action": action.as_dict(),
                  "in_doubt": in_doubt, "input_schema": action.input_schema, "evidence": evidence,
                  "explain": explain, "requested_at": now, "expires_at": now + timeout if timeout else None}
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

    def for_slot(self, run_id: str, slot: str) -> Decision | None:
        """The decision filed for a slot of a run, if any (completing one a crash cut short)."""
        claim = self.store.record(f"slot:{run_id}:{slot}")
        if claim is None:
            return None
        if self.store.record(f"decision:{claim['id']}") is None:
            self.store.add_record(f"decision:{claim['id']}", claim)
        return self.get(claim["id"])

    def get(self, decision_id: str) -> Decision:
        request = self.store.record(f"decision:{decision_id}")
        if request is None:
            raise RunNotFound(f"no decision '{decision_id}' (see 'studiox decisions')")
        outcome = self.store.record(f"decision:{decision_id}:outcome")
        expires = request.get("expires_at")
        _, last = summary(self.store, request["run"])
        ended = last["status"] if last is not None and last["type"] == "run_finished" else None
        return Decision(decision_id, request, outcome, expired_now=bool(expires and self.clock() >= expires),
                        run_ended=ended)

    def all(self) -> list[Decision]:
        """Every decision, oldest first."""
        ids = [k.split(":")[1] for k, _ in self.store.records("decision:") if k.count(":") == 1]
        decisions = [self.get(i) for i in ids]
        return sorted(decisions, key=lambda d: d.request["requested_at"])

    def decide(self, decision_id: str, status: str, *, by: str, claimed: str | None = None, note: str | None = None,
               action: Action | None = None, rule: dict | None = None, resolution: str | None = None,
               result=None) -> Decision:
        """Record an outcome. The first outcome written wins; a different later one is an error.

        For an in-doubt decision, an approval says how: ``resolution`` 'happened' (with the
        ``result`` the person saw) or 'retry' (call it again).
        """
        decision = self.get(decision_id)
        if status == APPROVED and decision.request.get("in_doubt") and resolution not in ("happened", "retry"):
            raise DecisionError(f"decision {decision_id} asks whether an interrupted call happened: approve it with "
                                "--happened (and --result JSON) if it did, or --retry to call it again")
        if status in (APPROVED, REJECTED) and decision.outcome is None and decision.expired_now:
            self._write(decision, EXPIRED, by="studiox", note="the decision timed out before anyone decided")
            decision = self.get(decision_id)
        if decision.outcome is None:
            if self._write(decision, status, by=by, claimed=claimed, note=note, action=action, rule=rule,
                           resolution=resolution, result=result):
                return self.get(decision_id)
            decision = self.get(decision_id)  # someone else decided in the meantime
        existing = decision.outcome
        assert existing is not None  # written by us or by whoever was first
        if existing["status"] == status == APPROVED and (action is None or
                                                          existing["action"]["digest"] == action.digest()):
            return decision  # approving twice is harmless
        if existing["status"] == status == REJECTED:
            return decision
        raise DecisionError(f"decision {decision_id} was already {existing['status']} by {existing['by']} at "
                            f"{_when(existing['at'])}; a decision once made is never changed")

    def _write(self, decision: Decision, status: str, *, by: str, claimed: str | None = None, note: str | None = None,
               action: Action | None = None, rule: dict | None = None, resolution: str | None = None,
               result=None) -> bool:
        proposed = decision.request["action"]
        outcome = {"status": status, "by": by, "claimed_by": claimed, "at": self.clock(), "note": note, "rule": rule,
                   "resolution": resolution, "result": result}
        if status == APPROVED:
            approved = action.as_dict() if action else proposed
            outcome.update(action=approved, proposed_arguments=proposed["arguments"],
                           edited=approved["digest"] != proposed["digest"])
        return self.store.add_record(f"decision:{decision.id}:outcome", outcome)


def parse_edits(pairs: list[str]) -> dict:
    """``--set NAME=VALUE`` pairs as new argument values (JSON values are parsed, else text)."""
    edits = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise DecisionError(f"--set '{pair}' must be written NAME=VALUE")
        try:
            edits[name.strip()] = json.loads(raw)
        except ValueError:
            edits[name.strip()] = raw
    return edits


def edited_action(decision: Decision, edits: dict) -> Action:
    """The proposed action with corrected arguments, checked again against the tool's input schema."""
    proposed = Action.from_dict(decision.request["action"])
    if proposed.kind == "step":
        raise DecisionError(f"decision {decision.id} approves a step ({proposed.target}), which has no arguments "
                            "to correct; approve or reject it as it is")
    if proposed.kind == "budget":
        raise_by = edits.get("raise_by")
        if set(edits) != {"raise_by"} or isinstance(raise_by, bool) or not isinstance(raise_by, (int, float)) \
                or raise_by <= 0:
            raise DecisionError("a budget decision can only change how much more to allow: --set raise_by=N "
                                "(a positive number)")
    arguments = {**proposed.arguments, **edits}
    schema = decision.request.get("input_schema")
    if schema:
        import jsonschema

        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(arguments), key=lambda e: e.path)
        if errors:
            raise DecisionError("the edited arguments do not fit the tool: " + "; ".join(
                f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors))
    return proposed.with_arguments(arguments)


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


def _when(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
