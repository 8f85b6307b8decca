"""The durable engine: runs a mission's steps in order, journaling each before it moves on.

Resume is the same code as a first run: the journal is read, and the mission is walked again
from the first step; a step whose outcome is already journaled is not executed but its
journaled outcome is taken (outputs, jumps, verdicts), so the walk reaches the first unfinished
step in exactly the state the run had. The write order is the contract: a step's "started"
event is on disk before it acts, and its outcome is on disk before the next step starts.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import random
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__, expressions
from . import mission as missions
from .errors import RunNotFound, RunNotResumable, StudioxError
from .governance import APPROVED, EXPIRED, Action, Decision, DecisionQueue, needs_decision
from .integrations import STEP_TIME_LIMIT
from .journal import Journal, RunState, derive
from .locks import RunLock
from .mission import Mission, Step
from .ports import Ports
from .steps import StepContext, StepError, executor_for, proposer_for
from .store import Store

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


@dataclass
class Outcome:
    """How a drive of a run ended."""

    run_id: str
    status: str  # succeeded · failed · cancelled · waiting
    verdict: str | None = None
    note: str | None = None
    error: dict | None = None
    waiting: dict | None = None
    mission_changed: bool = False


class _Finish(Exception):
    def __init__(self, verdict: str, note: str | None):
        self.verdict, self.note = verdict, note


class _Fail(Exception):
    def __init__(self, error: dict):
        self.error = error


class _Cancelled(Exception):
    pass


class _Rejected(Exception):
    def __init__(self, applied: dict):
        self.applied = applied


class _Park(Exception):
    """The run waits for a decision; the process stops driving it."""

    def __init__(self, decision: Decision, waiting: dict):
        self.decision, self.waiting = decision, waiting


@dataclass
class _Scope:
    """What expressions see at one place: the steps so far, and loop variables."""

    steps: dict = field(default_factory=dict)
    vars: dict = field(default_factory=dict)


class Engine:
    """Starts and drives runs in one state folder. Time, randomness and ids come in as doors."""

    def __init__(
        self,
        store: Store,
        *,
        ports: Callable[[Mission, str, dict], Ports] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        new_id: Callable[[], str] | None = None,
        listener: Callable[[dict], None] | None = None,
        kill_after_event: int | str | None = None,
        prompt: Callable[[Decision, DecisionQueue], None] | None = None,
    ):
        self.store = store
        self.ports = ports or self._default_ports
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.new_id = new_id or (lambda: "".join(secrets.choice(_ID_ALPHABET) for _ in range(8)))
        self.listener = listener
        self.kill_after_event = kill_after_event
        self.prompt = prompt  # asks a person at a terminal; None parks the run instead
        self.decisions = DecisionQueue(store, clock)

    # ------------------------------------------------------------------ starting and driving

    def start(self, mission: Mission, inputs: dict, options: dict | None = None) -> str:
        """Create a run: register it and journal its start (with the mission snapshot).

        ``options`` are the run's settings from the command line (``model``, ``cache``,
        ``replay``); they are journaled so that a resumed run keeps them.
        """
        for _ in range(20):
            run_id = self.new_id()
            if self.store.add_record(f"run:{run_id}", {"mission": mission.name, "created": self.clock()}):
                break
        else:  # pragma: no cover - 31^8 ids
            raise StudioxError("could not find a free run id")
        journal = self._journal(run_id)
        journal.append(
            "run_started", run=run_id, mission=mission.name, version=mission.version, file=mission.file,
            path=str(Path(mission.file).resolve()),
            digest=mission.digest, source=mission.source, inputs=inputs, studiox=__version__,
            pid=os.getpid(), host=socket.gethostname(), user=_user(), options=options or {},
        )
        return run_id

    def drive(self, run_id: str, *, resume: bool = False, retry_failed: bool = False) -> Outcome:
        """Run (or resume) a run until it finishes, fails, parks or is cancelled; holds its lock.

        ``retry_failed`` takes up a failed run again from the step that failed (after, say, the
        system it called was repaired); steps that finished are still never run again.
        """
        with RunLock(self.store.home, run_id):
            state = derive(run_id, self.store.events(run_id))
            if state.started is None:
                raise RunNotFound(f"no run '{run_id}' in {self.store.home}")
            if state.finished and state.finished["status"] == "failed":
                error = state.finished.get("error") or {}
                if not retry_failed:
                    raise RunNotResumable(
                        f"run {run_id} has failed at {error.get('step', '?')}: {error.get('message', '')}; once the "
                        f"cause is fixed, try again from that step with: studiox resume {run_id} --retry")
                self._journal(run_id).append("run_reopened", user=_user(), failed_at=error.get("step"))
                state = derive(run_id, self.store.events(run_id))
            if state.finished:
                raise RunNotResumable(f"run {run_id} has already {state.finished['status']}"
                                      f"{' (' + state.verdict + ')' if state.verdict else ''}; there is nothing to resume")
            started = state.started
            assert started is not None  # checked above; derive() again kept it
            snapshot_file = started.get("path") or started["file"]
            mission = missions.from_snapshot(started["source"], snapshot_file, started["digest"])
            changed = _file_changed(started)
            journal = self._journal(run_id)
            if resume:
                journal.append("run_resumed", pid=os.getpid(), host=socket.gethostname(), user=_user(),
                               mission_changed=changed)
            run = _Run(self, mission, state, journal)
            outcome = asyncio.run(run.main())
            outcome.mission_changed = changed
            return outcome

    def cancel(self, run_id: str, reason: str) -> str:
        """Cancel a run: at once if no process drives it, else at that process's next step."""
        state = derive(run_id, self.store.events(run_id))
        if state.started is None:
            raise RunNotFound(f"no run '{run_id}' in {self.store.home}")
        if state.finished:
            raise RunNotResumable(f"run {run_id} has already {state.finished['status']}; it cannot be cancelled")
        from .errors import RunLocked

        try:
            with RunLock(self.store.home, run_id):
                self._journal(run_id).append("run_finished", status="cancelled", reason=reason, user=_user())
                return "cancelled"
        except RunLocked:
            self.store.add_record(f"cancel:{run_id}", {"reason": reason, "user": _user(), "at": self.clock()})
            return "requested"

    def _default_ports(self, mission: Mission, run_id: str, options: dict) -> Ports:
        from .integrations import MCPTools
        from .knowledge import Knowledge
        from .models import LiteLLMModels, Replay

        log_dir = self.store.home / "logs" / run_id
        replay = Replay.load(options["replay"]) if options.get("replay") else None
        return Ports(tools=MCPTools(mission.integrations, mission.base_dir, log_dir),
                     models=LiteLLMModels(replay, sleep=self.sleep),
                     knowledge=Knowledge(mission.knowledge, mission.base_dir))

    def _journal(self, run_id: str) -> Journal:
        return Journal(self.store, run_id, clock=self.clock, after_append=self._after_append)

    def _after_append(self, event: dict) -> None:
        if self.listener:
            self.listener(event)
        if self.kill_after_event in (event["seq"], event["type"]):
            os.kill(os.getpid(), signal.SIGKILL)  # test door: die right after this event is on disk


class _Run:
    """One drive of one run: walks the steps, taking journaled outcomes where there are some."""

    def __init__(self, engine: Engine, mission: Mission, state: RunState, journal: Journal):
        self.engine = engine
        self.mission = mission
        self.state = state
        self.journal = journal
        self.run_id = state.run_id
        started = state.started or {}
        self.base = {
            "inputs": started.get("inputs", {}),
            "mission": {"name": mission.name, "version": mission.version, "description": mission.description},
            "run": {"id": self.run_id, "started_at": started.get("at")},
        }
        self.options: dict = started.get("options") or {}
        self.ports: Ports = engine.ports(mission, self.run_id, self.options)
        self.observations = list(state.observations)

    async def main(self) -> Outcome:
        try:
            root = _Scope()
            await self.sequence(self.mission.steps, "", root)
            verdict, note = self.verdict(root)
            self.journal.append("run_finished", status="succeeded", verdict=verdict, note=note)
            return Outcome(self.run_id, "succeeded", verdict, note)
        except _Finish as f:
            self.journal.append("run_finished", status="succeeded", verdict=f.verdict, note=f.note)
            return Outcome(self.run_id, "succeeded", f.verdict, f.note)
        except _Fail as f:
            self.journal.append("run_finished", status="failed", error=f.error)
            return Outcome(self.run_id, "failed", error=f.error)
        except _Park as p:
            return Outcome(self.run_id, "waiting", waiting={"decision": p.decision.id, **p.waiting})
        except _Cancelled:
            request = self.engine.store.record(f"cancel:{self.run_id}") or {}
            self.journal.append("run_finished", status="cancelled", reason=request.get("reason"),
                                user=request.get("user"))
            return Outcome(self.run_id, "cancelled")
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.journal.append("run_interrupted", reason="interrupted (Ctrl-C)")
            raise
        finally:
            await self.ports.close()

    # ------------------------------------------------------------------ walking

    async def sequence(self, steps: tuple[Step, ...], prefix: str, scope: _Scope) -> None:
        index = {s.id: i for i, s in enumerate(steps)}
        visits: Counter[str] = Counter()
        i = 0
        while i < len(steps):
            step = steps[i]
            visits[step.id] += 1
            limit = step.spec.get("max_iterations") if step.kind == "branch" else None
            if limit and visits[step.id] > limit:
                raise _Fail({"step": step.id, "kind": "loop", "message": f"the branch '{step.id}' ran {limit} times, "
                             "its max_iterations; the loop was stopped"})
            address = prefix + step.id + (f"#{visits[step.id]}" if visits[step.id] > 1 else "")
            target = await self.step(step, address, scope)
            i = index[target] if target else i + 1

    async def step(self, step: Step, address: str, scope: _Scope) -> str | None:
        """Run one step (or take its journaled outcome); return the id to jump to, if any."""
        done = self.state.done.get(address)
        if done is None:
            if self.engine.store.record(f"cancel:{self.run_id}") is not None:
                raise _Cancelled()
            done = await self.execute(step, address, scope)
        scope.steps[step.id] = {"output": done.get("output"), "status": done["status"], "error": done.get("error")}
        if done["status"] == "rejected" and not done.get("goto"):
            if done.get("end"):
                raise _Finish(done["end"]["verdict"], done["end"].get("note"))
            raise _Fail(done["error"])
        if done["status"] != "succeeded":
            return done.get("goto")
        output = done.get("output") or {}
        if step.kind == "finish":
            raise _Finish(output["verdict"], output.get("note"))
        if step.kind == "fail":
            raise _Fail({"step": address, "kind": "fail", "message": output["message"]})
        return output.get("goto") if step.kind == "branch" else None

    async def execute(self, step: Step, address: str, scope: _Scope) -> dict:
        """Attempts of one step, each journaled; returns its step_finished event."""
        data = self.data(scope)
        if step.when is not None:
            try:
                holds = expressions.render(step.when, data)
            except expressions.ExpressionError as e:
                return self.failed(step, address, StepError("expression", e.message), 0)
            if not holds:
                return self.finished(address, status="skipped", output=None, reason="its condition was false")
        attempt = self.state.attempts.get(address, 0) + 1
        while True:
            self.journal.append("step_started", step=address, kind=step.kind, attempt=attempt)
            started = time.perf_counter()
            try:
                output = await self.attempt(step, address, scope, data, attempt)
            except _Rejected as r:
                return self.rejected(step, address, r.applied, data)
            except StepError as e:
                retry = attempt < step.retry.attempts and e.retryable_under(step.retry.on)
                delay = self.backoff(step, attempt) if retry else None
                self.journal.append("step_failed", step=address, attempt=attempt, error=e.as_dict(),
                                    retry_in=delay)
                if delay is not None:
                    await self.engine.sleep(delay)
                    attempt += 1
                    continue
                return self.failed(step, address, e, attempt)
            return self.finished(address, status="succeeded", output=output, attempts=attempt,
                                 duration=round(time.perf_counter() - started, 6))

    async def attempt(self, step: Step, address: str, scope: _Scope, data: dict, attempt: int):
        if step.kind == "foreach":
            return await self.limited(step, self.foreach(step, address, scope, data))
        ctx = StepContext(step=step, address=address, attempt=attempt, run_id=self.run_id, mission=self.mission,
                          data=data, ports=self.ports, emit=self.emitter(address))
        if step.kind == "worker":
            from .doors import WorkerDoors

            doors = WorkerDoors(self, step, address, attempt, data)
            ctx = replace(ctx, model=doors.model, act=doors.act, resolve_model=doors.resolve_model)
        action = await self.limited(step, self.propose(step, ctx))
        if action is not None and needs_decision(step, action):
            action = self.gate(step, address, action, data)
        elif action is not None and action.read_only_why:
            ctx.emit(f"runs without a decision: {action.read_only_why}")
        ctx = replace(ctx, action=action)
        execute = executor_for(step.kind)
        if action is None or action.read_only or action.kind != "tool":
            return await self.limited(step, execute(step, ctx))
        return await self.acting(step, address, action, lambda: execute(step, ctx), key=ctx.idempotency_key,
                                 emit=ctx.emit)

    async def limited(self, step: Step, work):
        """Await ``work`` within the step's time limit."""
        # tool calls made within the step see its limit: when it has one, it replaces their call_timeout
        token = STEP_TIME_LIMIT.set(step.timeout)
        try:
            if step.timeout is None:
                return await work
            try:
                return await asyncio.wait_for(work, step.timeout)
            except TimeoutError:
                raise StepError("timeout", f"the step took longer than its time limit of {step.timeout:g}s",
                                outcome_unknown=True) from None
        finally:
            STEP_TIME_LIMIT.reset(token)

    async def acting(self, step: Step, address: str, action: Action, call, *, key: str, emit):
        """A state-changing call: journaled before and after, never silently made twice.

        If an earlier call of this step started but its end was never journaled (a crash or a
        time-out during the call), nobody knows whether it took effect: an idempotent tool is
        called again with the same idempotency key; any other goes to a human as 'in doubt'.
        """
        previous = self.state.actions.get(address)
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
                resolution = self.in_doubt(step, address, action, previous)
                if resolution["resolution"] == "happened":
                    result = resolution.get("result")
                    self.state.actions[address] = self.journal.append(
                        "action_finished", step=address, ok=True, result=result, entered_by=resolution["by"])
                    return result
        self.state.actions[address] = self.journal.append(
            "action_started", step=address, key=key, action=action.as_dict())
        try:
            result = await self.limited(step, call())
        except StepError as e:
            if not e.outcome_unknown:  # the tool said it failed, or was never called: not in doubt
                self.state.actions[address] = self.journal.append(
                    "action_finished", step=address, ok=False, error=e.as_dict())
            raise
        self.state.actions[address] = self.journal.append("action_finished", step=address, ok=True, result=result)
        return result

    # ------------------------------------------------------------------ the gate

    async def propose(self, step: Step, ctx: StepContext) -> Action | None:
        """What the step is about to do to the outside world, if anything, or if approval is required."""
        proposer = proposer_for(step.kind)
        if proposer is not None:
            return await proposer(step, ctx)
        if step.approval is not None and step.approval.required:
            return Action("step", step.id, {"kind": step.kind, "inputs": ctx.render(step.spec)})
        return None

    def gate(self, step: Step, address: str, action: Action, data: dict) -> Action:
        """The one place that decides whether an action may run: returns the approved action or stops."""
        applied = self.state.decided.get(address)
        if applied is None:
            applied = self.decide(step, address, action, data, slot=address)
        if applied["status"] != APPROVED:
            raise _Rejected(applied)
        if applied["proposed_digest"] != action.digest():
            # the approval binds to the exact action: a different one never runs on it
            raise StepError("rejected", "the action to run differs from the one that was approved; it was not run")
        # what the integration said of the tool stays; the arguments are the approved (maybe edited) ones
        return action.with_arguments(applied["action"]["arguments"])

    def in_doubt(self, step: Step, address: str, action: Action, previous: dict) -> dict:
        """Ask a human whether a cut-off call happened; returns the decision_applied event (approved)."""
        slot = f"in-doubt:{address}"
        applied = self.state.decided.get(slot)
        if applied is None:
            explain = (f"studiox stopped while calling {action.target} (key {previous['key']}), so it may or may not "
                       "have happened, and the tool does not promise that calling it again is harmless. Check the "
                       "system, then say whether it happened (with its result) or must be called again.")
            applied = self.decide(step, address, action, {}, slot=slot, explain=explain, in_doubt=True)
        if applied["status"] != APPROVED:
            raise _Rejected(applied)
        return applied

    def decide_slot(self, step: Step, address: str, action: Action, slot: str, *, explain: str) -> dict:
        """A decision that is not about running an action (e.g. a budget): approved, or _Rejected."""
        applied = self.state.decided.get(slot)
        if applied is None:
            applied = self.decide(step, address, action, {}, slot=slot, explain=explain)
        if applied["status"] != APPROVED:
            raise _Rejected(applied)
        return applied

    def decide(self, step: Step, address: str, action: Action, data: dict, *, slot: str,
               explain: str | None = None, in_doubt: bool = False) -> dict:
        """Get the decision for ``slot`` (an approval, or an in-doubt question): ask, or park."""
        queue = self.engine.decisions
        waiting = self.state.waiting_by_step.get(slot)
        if waiting is not None:
            decision = queue.get(waiting["decision"])
        else:
            approval = step.approval
            decision = queue.request(
                run_id=self.run_id, mission=self.mission.name, step=address, action=action,
                evidence=[{"step": o["step"], "message": o["message"]} for o in self.observations[-20:]],
                explain=explain or (approval.explain if approval else None) or step.description,
                timeout=approval.timeout if approval else None, in_doubt=in_doubt)
            if approval and approval.auto_approve_when and not in_doubt and action.kind == "tool":
                self.auto_approve(decision, approval, action, data)
                decision = queue.get(decision.id)
            if decision.outcome is None:
                waiting = self.journal.append("waiting", step=slot, decision=decision.id, in_doubt=bool(in_doubt),
                                              action=action.as_dict(), explain=decision.request["explain"])
                self.state.waiting_by_step[slot] = waiting
        if decision.outcome is None and decision.expired_now:
            decision = queue.decide(decision.id, EXPIRED, by="studiox", note="no decision before its time limit")
        if decision.outcome is None and self.engine.prompt is not None:
            # while a person reads the prompt, Ctrl-C must stop at once: the event loop's own
            # SIGINT handler could only act after the prompt returns
            previous = signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                self.engine.prompt(decision, queue)
            finally:
                signal.signal(signal.SIGINT, previous)
            decision = queue.get(decision.id)
        if decision.outcome is None:
            raise _Park(decision, {"step": address, "action": action.as_dict(), "in_doubt": bool(in_doubt)})
        outcome = decision.outcome
        applied = self.journal.append(
            "decision_applied", step=slot, decision=decision.id, status=outcome["status"], by=outcome["by"],
            claimed_by=outcome.get("claimed_by"), note=outcome.get("note"), rule=outcome.get("rule"),
            action=outcome.get("action"), proposed_digest=decision.request["action"]["digest"],
            edited=outcome.get("edited", False), resolution=outcome.get("resolution"), result=outcome.get("result"))
        self.state.decided[slot] = applied
        return applied

    def auto_approve(self, decision: Decision, approval, action: Action, data: dict) -> None:
        """Evaluate the mission's auto-approval rule; when it holds, 'policy' approves (and it is recorded)."""
        try:
            result = expressions.render(approval.auto_approve_when, {**data, "args": action.arguments})
        except expressions.ExpressionError as e:
            self.emitter(decision.request["step"])(f"the auto-approval rule could not be evaluated: {e.message}")
            return
        rule = {"when": approval.auto_approve_when, "args": action.arguments, "result": bool(result),
                "reason": approval.reason}
        if result:
            self.engine.decisions.decide(decision.id, APPROVED, by="policy", note=approval.reason, rule=rule)
        else:
            self.emitter(decision.request["step"])("the auto-approval rule does not hold: a person decides")

    def rejected(self, step: Step, address: str, applied: dict, data: dict) -> dict:
        """Journal a rejected (or expired) action and what the mission does about it."""
        approval = step.approval
        expired = applied["status"] == EXPIRED
        spec = (approval.on_timeout if expired and approval and approval.on_timeout else
                approval.on_reject if approval else None) or {}
        who = "the time limit" if expired else applied["by"]
        reason = f"{step.title} was {applied['status']} by {who}" + (f": {applied['note']}" if applied.get("note")
                                                                       else "")
        error = {"step": address, "kind": "rejected", "message": reason}
        if spec.get("goto"):
            return self.finished(address, status="rejected", output=None, error=error, goto=spec["goto"])
        choices = self.mission.verdict.choices if self.mission.verdict else ()
        if spec.get("verdict"):
            try:
                note = _text(expressions.render(spec.get("note"), data)) or reason
            except expressions.ExpressionError as e:
                note = f"{reason} (the on_reject note could not be made: {e.message})"
            end = {"verdict": spec["verdict"], "note": note}
        elif "Rejected" in choices:
            end = {"verdict": "Rejected", "note": reason}
        else:
            end = None
        return self.finished(address, status="rejected", output=None, error=error, end=end)

    async def foreach(self, step: Step, address: str, scope: _Scope, data: dict) -> list:
        try:
            items = expressions.render(step.spec, data)
        except expressions.ExpressionError as e:
            raise StepError("expression", e.message) from None
        if not isinstance(items, list):
            raise StepError("expression", f"foreach needs a list, but got {expressions.type_name(items)}")
        results: list = [None] * len(items)
        gate = asyncio.Semaphore(step.concurrency)

        async def one(i: int, item) -> None:
            done = self.state.items.get((address, i))
            if done is not None:
                results[i] = done["output"]
                return
            async with gate:
                loop = {"index": i, "first": i == 0, "last": i == len(items) - 1}
                inner = _Scope(dict(scope.steps), {**scope.vars, step.item_name: item, "loop": loop})
                try:
                    await self.sequence(step.steps, f"{address}[{i}].", inner)
                except _Fail as f:
                    raise StepError(f.error.get("kind", "error"), f"item {i}: {f.error['message']}") from None
                output = {s.id: inner.steps[s.id]["output"] for s in step.steps if s.id in inner.steps}
                self.state.items[(address, i)] = self.journal.append("item_finished", step=address, index=i,
                                                                     output=output)
                results[i] = output

        try:
            async with asyncio.TaskGroup() as group:
                for i, item in enumerate(items):
                    group.create_task(one(i, item))
        except BaseExceptionGroup as eg:
            raise _first_of(eg) from None
        return results

    # ------------------------------------------------------------------ outcomes

    def finished(self, address: str, **fields) -> dict:
        event = self.journal.append("step_finished", step=address, **fields)
        self.state.done[address] = event
        return event

    def failed(self, step: Step, address: str, error: StepError, attempts: int) -> dict:
        if step.on_error.action == "fail":
            raise _Fail({"step": address, **error.as_dict()})
        return self.finished(address, status="failed", output=None, error=error.as_dict(), attempts=attempts,
                             goto=step.on_error.goto)

    def backoff(self, step: Step, attempt: int) -> float:
        policy = step.retry
        delay = min(policy.max_delay, policy.backoff * policy.factor ** (attempt - 1))
        if policy.jitter:
            delay *= 0.5 + 0.5 * self.engine.rng()
        return round(delay, 3)

    def verdict(self, root: _Scope) -> tuple[str, str | None]:
        spec = self.mission.verdict
        if spec is None:
            return missions.DEFAULT_VERDICT, None
        data = self.data(root)
        try:
            chosen: dict = {"value": spec.value, "note": spec.note}
            if spec.value is None:
                chosen = next((c for c in spec.cases if expressions.render(c["when"], data)), spec.otherwise or {})
            value = expressions.render(chosen["value"], data)
            note = _text(expressions.render(chosen.get("note"), data))
        except expressions.ExpressionError as e:
            raise _Fail({"step": "verdict", "kind": "expression", "message": e.message}) from None
        if value not in spec.choices:
            raise _Fail({"step": "verdict", "kind": "invalid_output",
                         "message": f"the verdict '{value}' is not one of {', '.join(spec.choices)}"})
        return value, note

    # ------------------------------------------------------------------ helpers

    def data(self, scope: _Scope) -> dict:
        return {**self.base, "steps": scope.steps, **scope.vars}

    def emitter(self, address: str):
        def emit(message: str, **data) -> None:
            event = self.journal.append("observation", step=address, message=message, **({"data": data} if data else {}))
            self.observations.append(event)
        return emit


def _first_of(group: BaseExceptionGroup) -> BaseException:
    """The exception a foreach should raise: a run-level signal first, else the first step error."""
    flat: list[BaseException] = []

    def walk(g):
        for e in g.exceptions:
            walk(e) if isinstance(e, BaseExceptionGroup) else flat.append(e)

    walk(group)
    for kind in (_Cancelled, _Park, _Finish, _Fail, asyncio.CancelledError, StepError):
        for e in flat:
            if isinstance(e, kind):
                return e
    return flat[0]


def _text(value) -> str | None:
    """A note is text: a note that an expression made into a list or number is shown as JSON."""
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _file_changed(started: dict) -> bool:
    path = Path(started.get("path") or started.get("file", ""))
    try:
        return missions.digest_of(path.read_text(encoding="utf-8")) != started.get("digest")
    except (OSError, UnicodeDecodeError):
        return False


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return str(os.getuid())
