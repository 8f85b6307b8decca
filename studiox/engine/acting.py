"""Exactly-once acting: a state-changing call is journaled before and after, and never silently repeated.

``action_started`` (with the idempotency key and the action's digest) is on disk before the
call; ``action_finished`` (its result, or the failure the tool reported) after it. On any later
walk over the same call:

- finished: the journaled result is taken, the call is not made again, provided the action is
  the one journaled (else the journal does not match: stop, never mix);
- started but never finished (a crash or a time-out cut it off): a read-only tool is called
  again; an idempotent one is called again with the same key; any other goes to a person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import StepError
from ..governance import Action
from ..mission import Step
from ..state import keys
from ..units import when
from .control import JournalMismatch, RunView


async def act_once(run: RunView, step: Step, address: str, action: Action, call: Callable[[], Awaitable[Any]], *,
                   key: str, emit: Callable[..., None]) -> Any:
    """Make ``call`` (the action at ``address``) at most once, as far as studiox can know."""
    previous = run.state.actions.get(address)
    if previous is not None:
        journaled = previous.get("digest") or (previous.get("action") or {}).get("digest")
        if journaled is not None and journaled != action.digest():
            raise JournalMismatch(
                f"the journal of run {run.run_id} does not match: at {address} it records a call of "
                f"{(previous.get('action') or {}).get('target', 'another action')} with other arguments than the "
                f"{action.target} call studiox would make now; the run was left as it was (resume it with the "
                f"studiox version that started it, {run.started_by})")
    if previous is not None and previous["type"] == "action_finished" and previous["ok"]:
        # the call was made and its result journaled, but the process died before the step's
        # outcome was: the result is taken from the journal, the call is not made again
        emit("this call was already made (its result is in the journal): it is not made again")
        return previous["result"]
    if previous is not None and previous["type"] == "action_started":
        if action.read_only:
            emit("the previous call was cut off; calling this read-only tool again")
        elif action.idempotent:
            emit("the previous call's outcome is unknown (it was cut off); calling again with the same "
                 "idempotency key, which this tool honours")
        else:
            resolution = run.gate.in_doubt(step, address, action, previous)
            if resolution["resolution"] == "happened":
                return settle(run, address, previous, resolution)["result"]
    if run.state.key and not action.read_only:
        not_again_elsewhere(run, step, address, action)
    digest = action.digest()
    run.state.note_action(run.journal.append(
        "action_started", step=address, key=key, action=action.as_dict()))
    try:
        result = await call()
    except StepError as e:
        if not e.outcome_unknown:  # the tool said it failed, or was never called: not in doubt
            run.state.note_action(run.journal.append(
                "action_finished", step=address, key=key, digest=digest, ok=False, error=e.as_dict()))
        raise
    run.state.note_action(run.journal.append(
        "action_finished", step=address, key=key, digest=digest, ok=True, result=result))
    return result


def not_again_elsewhere(run: RunView, step: Step, address: str, action: Action) -> None:
    """One business object, one outcome: before a call is made for the run's key, look for the same
    tool done (or under way) for the same key in another run. Found: a person is asked again,
    seeing when and by whom (or the step fails, with ``on_duplicate: fail``)."""
    store, mission, key = run.engine.store, run.mission.name, run.state.key
    assert key  # only called for a run with a business key
    keys.claim(store, mission, key, action.target, run.run_id, address, run.engine.clock())
    others = keys.done_elsewhere(store, mission, key, action.target, run_id=run.run_id)
    if not others:
        return
    seen = "; ".join(f"{o['status']} in run {o['run']} at {when(o['at'])}"
                     + (f", approved by {o['by']}" if o.get("by") else "") for o in others)
    message = f"{action.target} for {key} was already {seen}"
    if step.approval is not None and step.approval.on_duplicate == "fail":
        raise StepError("duplicate", f"{message}; it is not done again (on_duplicate: fail)")
    run.emitter(address)(f"{message}: asking again before doing it a second time")
    run.gate.decide_slot(step, address, action, f"duplicate:{address}", explain=(
        f"{message}. Approve only if it must really be done again for {key}; reject to leave it done once."))



def settle(run: RunView, address: str, started: dict, resolution: dict) -> dict:
    """Journal a person's answer about a cut-off call: it happened (with its result), or it did not."""
    common = {"step": address, "key": started["key"], "digest": started["action"]["digest"],
              "entered_by": resolution["by"]}
    if resolution["resolution"] == "happened":
        event = run.journal.append("action_finished", ok=True, result=resolution.get("result"), **common)
    else:
        event = run.journal.append("action_finished", ok=False, error={
            "kind": "not_happened", "message": f"{resolution['by']} said the cut-off call did not happen"}, **common)
    run.state.note_action(event)
    return event


def open_calls(run: RunView, address: str) -> list[tuple[str, dict]]:
    """The calls of the step at ``address`` (its own, its worker's, its items') that were cut off."""
    inside = (address + "/", address + "@", address + "[")
    return [(at, ev) for at, ev in run.state.actions.items()
            if ev["type"] == "action_started" and (at == address or at.startswith(inside))]


def settle_before_retry(run: RunView, step: Step, address: str) -> None:
    """Before another attempt of a step: every call an earlier attempt cut off is settled first.

    A read-only call needs nothing. A tool step's own idempotent call is made again by the
    retry with the same key. Anything else goes to a person: did it happen? Only then does the
    next attempt start, so a call whose outcome is unknown is never silently repeated.
    """
    for at, started in open_calls(run, address):
        action = Action.from_dict(started["action"])
        if action.read_only or (at == address and started["action"].get("idempotent")):
            continue
        resolution = run.gate.in_doubt(step, at, action, started)
        run.emitter(address)(f"the cut-off call of {action.target} at {at} was settled by {resolution['by']}: "
                             f"{'it happened' if resolution['resolution'] == 'happened' else 'it did not happen'}")
        settle(run, at, started, resolution)
