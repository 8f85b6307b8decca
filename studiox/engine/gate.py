"""The gate: the one place that decides whether an action may run, and asks a person when it must.

An approval, an in-doubt question (did a cut-off call happen?) and a budget raise are all
decisions in one ``slot`` of the run. A slot's decision is found again by run and slot
(``DecisionQueue.for_slot``), so a crash between filing a decision and journaling ``waiting``
leaves nothing orphaned: resume finds the same decision, and an answer given to it counts.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal

from .. import expressions
from ..errors import StepError
from ..governance import APPROVED, EXPIRED, Action, Decision, DecisionError, approval_rules
from ..mission import Step
from . import evidence
from .control import Park, Rejected, RunView

# the time limits of the attempts this task is inside; paused while a person decides
DEADLINES: contextvars.ContextVar[tuple[asyncio.Timeout, ...]] = contextvars.ContextVar("deadlines", default=())


class Gate:
    """Decisions for one drive of one run."""

    def __init__(self, run: RunView):
        self.run = run

    def check(self, step: Step, address: str, action: Action, data: dict) -> Action:
        """Return the approved action (maybe with edited arguments), or raise Rejected / Park."""
        applied = self.run.state.decided.get(address)
        if applied is None:
            applied = self.decide(step, address, action, data, slot=address)
        if applied["status"] != APPROVED:
            raise Rejected(applied)
        if applied["proposed_digest"] != action.digest():
            # the approval binds to the exact action: a different one never runs on it
            raise StepError("rejected", "the action to run differs from the one that was approved; it was not run")
        # what the integration said of the tool stays; the arguments are the approved (maybe edited) ones
        return action.with_arguments(applied["action"]["arguments"])

    def in_doubt(self, step: Step, address: str, action: Action, previous: dict) -> dict:
        """Ask whether a cut-off call happened; returns the decision_applied event (approved) or raises.

        Each cut-off call is its own question (the slot names the call's action_started event),
        so an earlier answer never settles a later cut.
        """
        slot = f"in-doubt:{address}#{previous['seq']}"
        applied = self.run.state.decided.get(slot)
        if applied is None:
            explain = (f"studiox stopped while calling {action.target} (key {previous['key']}), so it may or may not "
                       "have happened, and the tool does not promise that calling it again is harmless. Check the "
                       "system, then say whether it happened (with its result) or must be called again.")
            applied = self.decide(step, address, action, {}, slot=slot, explain=explain, in_doubt=True)
        if applied["status"] != APPROVED:
            raise Rejected(applied)
        return applied

    def decide_slot(self, step: Step, address: str, action: Action, slot: str, *, explain: str) -> dict:
        """A decision that is not about running an action (e.g. a budget): approved, or Rejected."""
        applied = self.run.state.decided.get(slot)
        if applied is None:
            applied = self.decide(step, address, action, {}, slot=slot, explain=explain)
        if applied["status"] != APPROVED:
            raise Rejected(applied)
        return applied

    def decide(self, step: Step, address: str, action: Action, data: dict, *, slot: str,
               explain: str | None = None, in_doubt: bool = False) -> dict:
        """Get the decision for ``slot``: find it (journaled, or filed before a crash), or file it;
        then ask at the terminal, or park."""
        run = self.run
        queue = run.engine.decisions
        waiting = run.state.waiting_by_step.get(slot)
        if waiting is not None:
            decision = queue.get(waiting["decision"])
        else:
            found = queue.for_slot(run.run_id, slot)
            if found is not None:
                decision = found
            else:
                approval = step.approval
                decision = queue.request(
                    run_id=run.run_id, mission=run.mission.name, step=address, slot=slot, action=action,
                    key=run.state.key or None,
                    evidence=evidence.lineage(run, step, address.split("/", 1)[0].split("@")[0],
                                              worker_calls="/" in address),
                    shown=evidence.chosen(step, action, data), title=step.name, description=step.description,
                    explain=explain or (approval.explain if approval else None),
                    timeout=approval.timeout if approval else None, in_doubt=in_doubt,
                    rules=approval_rules(approval, data, action, in_doubt=in_doubt),
                    parent=(run.state.started or {}).get("parent"))
                if approval and approval.auto_approve_when and not in_doubt and action.kind == "tool":
                    self.auto_approve(decision, approval, action, data)
                    decision = queue.get(decision.id)
            if decision.outcome is None:
                waiting = run.journal.append("waiting", step=slot, decision=decision.id, in_doubt=bool(in_doubt),
                                             action=action.as_dict(), explain=decision.request["explain"])
                run.state.waiting_by_step[slot] = run.state.waiting = waiting
        if decision.outcome is None and decision.expired_now:
            decision = queue.decide(decision.id, EXPIRED, by="studiox", note="no decision before its time limit")
        if decision.outcome is None and run.engine.prompt is not None:
            self._ask(decision)
            decision = queue.get(decision.id)
        if decision.outcome is None:
            raise Park(decision, {"step": address, "action": action.as_dict(), "in_doubt": bool(in_doubt)})
        outcome = decision.outcome
        applied = run.journal.append(
            "decision_applied", step=slot, decision=decision.id, status=outcome["status"], by=outcome["by"],
            claimed_by=outcome.get("claimed_by"), note=outcome.get("note"), rule=outcome.get("rule"),
            action=outcome.get("action"), proposed_digest=decision.request["action"]["digest"],
            edited=outcome.get("edited", False), resolution=outcome.get("resolution"), result=outcome.get("result"),
            **({"approvals": outcome["approvals"]} if outcome.get("approvals") else {}))
        run.state.decided[slot] = applied
        return applied

    def _ask(self, decision: Decision) -> None:
        """Ask the person at the terminal. The time a person takes is not the step's: its time limits pause."""
        loop = asyncio.get_running_loop()
        paused = [(cm, when - loop.time()) for cm in DEADLINES.get() if (when := cm.when()) is not None]
        # while a person reads the prompt, Ctrl-C must stop at once: the event loop's own
        # SIGINT handler could only act after the prompt returns
        prompt = self.run.engine.prompt
        assert prompt is not None  # only called when there is a terminal to ask at
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            prompt(decision, self.run.engine.decisions)
        finally:
            signal.signal(signal.SIGINT, previous)
            for cm, remaining in paused:
                cm.reschedule(loop.time() + max(remaining, 0.0))

    def auto_approve(self, decision: Decision, approval, action: Action, data: dict) -> None:
        """Evaluate the mission's auto-approval rule; when it holds, 'policy' approves (and it is recorded)."""
        emit = self.run.emitter(decision.request["step"])
        try:
            result = expressions.render(approval.auto_approve_when, {**data, "args": action.arguments},
                                        "approval.auto_approve_when")
        except expressions.ExpressionError as e:
            emit(f"the auto-approval rule could not be evaluated: {e.message}")
            return
        rule = {"when": approval.auto_approve_when, "args": action.arguments, "result": bool(result),
                "reason": approval.reason}
        if result:
            try:
                self.run.engine.decisions.decide(decision.id, APPROVED, by="policy", note=approval.reason, rule=rule)
            except DecisionError as e:  # e.g. a quorum: it needs people
                emit(f"the auto-approval rule holds, but {e}")
        else:
            emit("the auto-approval rule does not hold: a person decides")

    def rejection(self, step: Step, address: str, applied: dict, data: dict) -> dict:
        """What a rejected (or expired) action makes of the step: the fields of its step_finished event."""
        approval = step.approval
        expired = applied["status"] == EXPIRED
        spec = (approval.on_timeout if expired and approval and approval.on_timeout else
                approval.on_reject if approval else None) or {}
        who = "the time limit" if expired else applied["by"]
        reason = f"{step.title} was {applied['status']} by {who}" + (f": {applied['note']}" if applied.get("note")
                                                                       else "")
        error = {"step": address, "kind": "rejected", "message": reason}
        if spec.get("goto"):
            return {"status": "rejected", "output": None, "error": error, "goto": spec["goto"]}
        choices = self.run.mission.verdict.choices if self.run.mission.verdict else ()
        if spec.get("verdict"):
            try:
                outcome = "on_timeout" if expired and approval and approval.on_timeout else "on_reject"
                note = text_of(expressions.render(spec.get("note"), data, f"approval.{outcome}.note")) or reason
            except expressions.ExpressionError as e:
                note = f"{reason} (the on_reject note could not be made: {e.message})"
            end: dict | None = {"verdict": spec["verdict"], "note": note}
        elif "Rejected" in choices:
            end = {"verdict": "Rejected", "note": reason}
        else:
            end = None
        return {"status": "rejected", "output": None, "error": error, "end": end}


def text_of(value) -> str | None:
    """A note is text: a note that an expression made into a list or number is shown as JSON."""
    import json

    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)
