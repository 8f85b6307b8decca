"""One drive of one run: walk the mission's steps, taking journaled outcomes where there are some.

Resume is the same code as a first run: the mission is walked from its first step; a step
whose outcome is journaled is not executed, its outcome is taken (outputs, jumps, verdicts), so
the walk reaches the first unfinished step in exactly the state the run had. The write order
is the contract: a step's ``step_started`` is on disk before it acts, its outcome before the
next step starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from .. import expressions, secrets
from .. import mission as missions
from ..adapters import preload
from ..adapters.ports import STEP_TIME_LIMIT, Ports
from ..errors import StepError
from ..governance import Action, needs_decision
from ..mission import Mission, Step
from ..state import keys
from ..state.journal import Journal, RunState
from ..state.store import unstorable
from ..steps import StepContext, executor_for, proposer_for
from . import acting, compose
from .control import GROUPED, Cancelled, EngineView, Fail, Finish, Outcome, Park, Rejected, Scope, first_of
from .gate import DEADLINES, Gate, text_of

CANCEL_POLL = 0.05  # seconds between looks for a cancel request from another process
# steps that only compute, with no outside effect and nothing to wait for: their start is journaled
# with their result, in one commit
INSTANT = frozenset({"set", "branch", "finish", "retrieve", "fail"})


class Run:
    """One drive of one run."""

    def __init__(self, engine: EngineView, mission: Mission, state: RunState, journal: Journal,
                 via: str | None = None):
        secrets.remember_environment()  # credentials in the environment are masked in all the run writes
        self.engine = engine
        self.mission = mission
        self.state = state
        self.journal = journal
        self.run_id = state.run_id
        started = state.started or {}
        self.started_by = f"studiox {started.get('studiox', '?')}"
        self.base = {
            "inputs": started.get("inputs", {}),
            "mission": {"name": mission.name, "version": mission.version, "description": mission.description},
            "run": {"id": self.run_id, "started_at": started.get("at")},
        }
        self.options: dict = started.get("options") or {}
        self.children: dict = started.get("children") or {}  # the missions its mission steps run, as journaled
        self.via = via  # a child run: the parent's step that drives it (``payment``, ``payment/pay``)
        self.depth = len(via.split("/")) if via else 0
        self.ports: Ports = engine.ports(mission, self.run_id, self.options)
        self.observations = list(state.observations)
        self.gate = Gate(self)
        self.steps_by_id = {s.id: s for s in mission.walk()}
        self.cancel_checked = -CANCEL_POLL  # (the first step looks)
        self.excluded: dict[str, float] = {}  # step address → seconds of its attempt that were not its work
        preload.for_mission(mission, self.options)

    async def main(self) -> Outcome:
        """Walk the run to its end, or until it parks; journal how it ended."""
        try:
            root = Scope()
            await self.sequence(self.mission.steps, "", root)
            verdict, note = self.verdict(root)
            self.journal.append("run_finished", status="succeeded", verdict=verdict, note=note,
                                **self.outputs(root))
            return Outcome(self.run_id, "succeeded", verdict, note)
        except Finish as f:
            self.journal.append("run_finished", status="succeeded", verdict=f.verdict, note=f.note,
                                **self.outputs(root))
            return Outcome(self.run_id, "succeeded", f.verdict, f.note)
        except Fail as f:
            self.journal.append("run_finished", status="failed", error=f.error)
            return Outcome(self.run_id, "failed", error=f.error)
        except Park as p:
            return Outcome(self.run_id, "waiting", waiting={"decision": p.decision.id, **p.waiting})
        except Cancelled:
            request = self.engine.store.record(f"cancel:{self.run_id}") or {}
            self.journal.append("run_finished", status="cancelled", reason=request.get("reason"),
                                user=request.get("user"))
            return Outcome(self.run_id, "cancelled")
        except (asyncio.CancelledError, KeyboardInterrupt):
            waiting = self.state.waiting
            self.journal.append("run_interrupted", reason="interrupted (Ctrl-C)",
                                **({"waiting": waiting["decision"]} if waiting else {}))
            raise
        finally:
            self.journal.flush_quietly()  # what was noted on the way (a park, an error) is kept
            await self.ports.close()

    # ------------------------------------------------------------------ walking

    async def sequence(self, steps: tuple[Step, ...], prefix: str, scope: Scope) -> None:
        index = {s.id: i for i, s in enumerate(steps)}
        visits: Counter[str] = Counter()
        i = 0
        while i < len(steps):
            step = steps[i]
            visits[step.id] += 1
            limit = step.spec.get("max_iterations") if step.kind == "branch" else None
            if limit and visits[step.id] > limit:
                raise Fail({"step": step.id, "kind": "loop", "message": f"the branch '{step.id}' ran {limit} times, "
                            "its max_iterations; the loop was stopped"})
            address = prefix + step.id + (f"#{visits[step.id]}" if visits[step.id] > 1 else "")
            target = await self.step(step, address, scope)
            if not prefix:
                self.settle_key(scope)
            i = index[target] if target else i + 1

    async def step(self, step: Step, address: str, scope: Scope) -> str | None:
        """Run one step (or take its journaled outcome); return the id to jump to, if any."""
        done = self.state.done.get(address)
        if done is None:
            if self.cancel_requested():
                raise Cancelled()
            done = await self.execute(step, address, scope)
        scope.steps[step.id] = {"output": done.get("output"), "status": done["status"], "error": done.get("error")}
        if done["status"] == "rejected" and not done.get("goto"):
            if done.get("end"):
                raise Finish(done["end"]["verdict"], done["end"].get("note"))
            raise Fail(done["error"])
        if done["status"] != "succeeded":
            return done.get("goto")
        output = done.get("output") or {}
        if step.kind == "finish":
            raise Finish(output["verdict"], output.get("note"))
        if step.kind == "fail":
            raise Fail({"step": address, "kind": "fail", "message": output["message"]})
        return output.get("goto") if step.kind == "branch" else None

    @property
    def key_scope(self) -> str | None:
        """``MISSION/KEY`` once the run's business key is known: what idempotency keys are built from."""
        return f"{self.mission.name}/{self.state.key}" if self.state.key is not None else None

    def settle_key(self, scope: Scope) -> None:
        """Set the run's business key as soon as the steps it reads have run; one live run per key."""
        if self.mission.key is None or self.state.key is not None:
            return
        needed = expressions.steps_read(self.mission.key)
        if any(s not in scope.steps for s in needed):
            return
        try:
            key = key_text(self.mission.key, self.data(scope))
        except StepError as e:
            self.emitter("key")(f"the mission's key could not be made: {e.message}; the run goes on without one")
            self.state.key = ""  # tried: not again in this drive
            return
        store, at = self.engine.store, self.engine.clock()
        keys.register(store, self.mission.name, key, self.run_id, at)
        # registered first, checked after: of two runs racing for the key at least one sees the other
        live = keys.live_runs(store, self.mission.name, key, other_than=self.run_id)
        self.journal.append("key_set", key=key, live=[r["run"] for r in live])
        self.state.key = key
        if live and not self.options.get("allow_duplicate"):
            raise Fail({"step": "key", "kind": "duplicate", "message": (
                f"{key} is already being handled by run {live[0]['run']} ({live[0]['status']}); this run stops "
                "here (start it with --allow-duplicate to run both)")})

    def cancel_requested(self) -> bool:
        """Whether someone asked (from another process) to cancel the run; looked up at most every
        CANCEL_POLL seconds, so a run of instant steps does not read the store before each one."""
        now = time.monotonic()
        if now - self.cancel_checked < CANCEL_POLL:
            return False
        self.cancel_checked = now
        return self.engine.store.record(f"cancel:{self.run_id}") is not None

    async def execute(self, step: Step, address: str, scope: Scope) -> dict:
        """Attempts of one step, each journaled; returns its step_finished event."""
        data = self.data(scope)
        if step.when is not None:
            try:
                holds = expressions.render(step.when, data, "when")
            except expressions.ExpressionError as e:
                return await self.failed(step, address, StepError("expression", e.message), 0)
            if not holds:
                return await self.finished(address, status="skipped", output=None, reason="its condition was false")
        attempt = self.state.attempts.get(address, 0) + 1
        while True:
            if attempt > 1:
                try:
                    acting.settle_before_retry(self, step, address)
                except Rejected as r:  # a person gave up on a cut-off call: the step ends as rejected
                    return await self.finished(address, **self.gate.rejection(step, address, r.applied, data))
            self.journal.note("step_started", step=address, kind=step.kind, attempt=attempt)
            if step.kind not in INSTANT:  # work that may take a while: others can see it started
                self.journal.flush()
            started = time.perf_counter()
            try:
                output = await self.limited(step, self.attempt(step, address, scope, data, attempt))
                if (found := unstorable(output, "output")) is not None:
                    raise StepError("invalid_output", f"the step's result holds {found[1]} at {found[0]}, which "
                                    "JSON cannot keep, so it cannot be journaled")
            except Rejected as r:
                return await self.finished(address, **self.gate.rejection(step, address, r.applied, data))
            except StepError as e:
                retry = attempt < step.retry.attempts and e.retryable_under(step.retry.on)
                delay = self.backoff(step, attempt) if retry else None
                self.journal.append("step_failed", step=address, attempt=attempt, error=e.as_dict(),
                                    retry_in=delay)
                if delay is not None:
                    await self.engine.sleep(delay)
                    attempt += 1
                    continue
                return await self.failed(step, address, e, attempt)
            took = time.perf_counter() - started - self.excluded.pop(address, 0.0)
            return await self.finished(address, status="succeeded", output=output, attempts=attempt,
                                 duration=round(max(took, 0.0), 6))

    async def attempt(self, step: Step, address: str, scope: Scope, data: dict, attempt: int) -> Any:
        """One attempt: propose, pass the gate, act (exactly once when it changes the world)."""
        if step.kind == "foreach":
            return await self.foreach(step, address, scope, data)
        if step.kind == "parallel":
            return await compose.parallel(self, step, address, scope)
        if step.kind == "mission" and not (step.approval and step.approval.required):
            return await compose.submission(self, step, address, data)
        ctx = StepContext(step=step, address=address, attempt=attempt, run_id=self.run_id, mission=self.mission,
                          data=data, ports=self.ports, emit=self.emitter(address), key_scope=self.key_scope)
        if step.kind == "worker":
            from .worker import WorkerDoors

            doors = WorkerDoors(self, step, address, attempt, data)
            ctx = replace(ctx, model=doors.model, act=doors.act, resolve_model=doors.resolve_model)
        action = await self.propose(step, ctx)
        if action is not None and (misfit := action.misfit()) is not None:
            raise StepError("invalid_arguments", misfit)  # never put to a person: it cannot succeed
        if action is not None and needs_decision(step, action):
            action = self.gate.check(step, address, action, data)
            if step.approval is not None and step.approval.recheck and not action.read_only \
                    and not self.acted(address):
                await self.recheck(step, address, action, data)
        elif action is not None and action.read_only_why:
            ctx.emit(f"runs without a decision: {action.read_only_why}")
        ctx = replace(ctx, action=action)
        execute = executor_for(step.kind)
        if action is None or action.read_only or action.kind != "tool":
            return await execute(step, ctx)
        return await acting.act_once(self, step, address, action, lambda: execute(step, ctx),
                                     key=ctx.idempotency_key, emit=ctx.emit)

    def acted(self, address: str) -> bool:
        """Whether the action at ``address`` was made, or may have been (then the in-doubt path decides):
        evidence is rechecked before acting, never after — the action itself changes it."""
        event = self.state.actions.get(address)
        return event is not None and (event["type"] == "action_started" or bool(event.get("ok")))

    async def recheck(self, step: Step, address: str, action: Action, data: dict) -> None:
        """Evidence still true when the action runs: the read-only steps named in ``approval.recheck`` run
        again; when an output differs from what the approver saw, a person is asked again, shown old → new.

        The question's slot names the new values, so the same change is asked about once."""
        assert step.approval is not None
        asked = [slot for slot in self.state.waiting_by_step if slot.startswith(f"recheck:{address}#")]
        if asked:  # a person was already shown a change: their answer (or the wait for it) stands
            self.gate.decide_slot(step, address, action, asked[-1], explain="")
            return
        emit = self.emitter(address)
        changes = []
        for name in step.approval.recheck:
            target = self.steps_by_id[name]
            ctx = StepContext(step=target, address=f"{address}~{name}", attempt=1, run_id=self.run_id,
                              mission=self.mission, data=data, ports=self.ports, emit=emit, key_scope=self.key_scope)
            again = await self.propose(target, ctx)
            if again is not None and needs_decision(target, again):
                raise StepError("recheck", f"'{name}' cannot be rechecked: it is not read-only")
            now = await executor_for(target.kind)(target, replace(ctx, action=again))
            before = (data["steps"].get(name) or {}).get("output")
            changes += [f"{name}{field}: {old} → {new}" for field, old, new in _differences(before, now)]
        if not changes:
            emit(f"rechecked {', '.join(step.approval.recheck)} after the approval: unchanged")
            return
        emit("rechecked after the approval, and it changed: " + "; ".join(changes), changes=changes)
        digest = hashlib.sha256(json.dumps(changes).encode()).hexdigest()[:12]
        self.gate.decide_slot(step, address, action, f"recheck:{address}#{digest}", explain=(
            "Since this was approved, what it rests on has changed: " + "; ".join(changes) + ". Approve again only "
            "if it should still run."))

    async def limited(self, step: Step, work) -> Any:
        """Await ``work`` (a whole attempt) within the step's time limit; time a person takes to decide
        does not count (see Gate._ask)."""
        limit = STEP_TIME_LIMIT.set(step.timeout)  # a tool call within the step is bounded by it
        try:
            if step.timeout is None:
                return await work
            return await _within(step.timeout, work)
        finally:
            STEP_TIME_LIMIT.reset(limit)

    async def propose(self, step: Step, ctx: StepContext) -> Action | None:
        """What the step is about to do to the outside world, if anything, or if approval is required."""
        proposer = proposer_for(step.kind)
        if proposer is not None:
            return await proposer(step, ctx)
        if step.approval is not None and step.approval.required:
            return Action("step", step.id, {"kind": step.kind, "inputs": ctx.render(step.spec, step.kind)})
        return None

    async def foreach(self, step: Step, address: str, scope: Scope, data: dict) -> list:
        """Each item through the inner steps, ``concurrency`` at a time.

        When one item parks or fails, no new item starts, but the items already under way go on
        until they finish or stop themselves: a call in flight is never cut off by a sibling, so
        it never becomes 'in doubt' for that reason.
        """
        try:
            items = expressions.render(step.spec, data, "foreach")
        except expressions.ExpressionError as e:
            raise StepError("expression", e.message) from None
        if not isinstance(items, list):
            raise StepError("expression", f"foreach needs a list, but got {expressions.type_name(items)}")
        results: list = [None] * len(items)
        self.emitter(address)(f"{len(items)} items, {min(step.concurrency, max(len(items), 1))} at a time",
                              items=len(items))
        slots = asyncio.Semaphore(step.concurrency)
        stopping = False

        async def one(i: int, item) -> None:
            nonlocal stopping
            done = self.state.items.get((address, i))
            if done is not None:
                results[i] = done["output"]
                return
            async with slots:
                if stopping:
                    return  # a sibling parked or failed: no new item starts
                GROUPED.set(step.concurrency > 1)  # (this item's task only) siblings share commits
                loop = {"index": i, "first": i == 0, "last": i == len(items) - 1}
                inner = Scope(dict(scope.steps), {**scope.vars, step.item_name: item, "loop": loop})
                try:
                    await self.sequence(step.steps, f"{address}[{i}].", inner)
                except Fail as f:
                    stopping = True
                    raise StepError(f.error.get("kind", "error"), f"item {i}: {f.error['message']}") from None
                except BaseException:
                    stopping = True
                    raise
                output = {s.id: inner.steps[s.id]["output"] for s in step.steps if s.id in inner.steps}
                fields = {"step": address, "index": i, "output": output}
                self.state.items[(address, i)] = (await self.journal.append_soon("item_finished", **fields)
                                                  if GROUPED.get() else self.journal.append("item_finished", **fields))
                results[i] = output

        ended = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)), return_exceptions=True)
        problems = [e for e in ended if isinstance(e, BaseException)]
        if problems:
            raise first_of(problems)
        return results

    # ------------------------------------------------------------------ outcomes

    async def finished(self, address: str, **fields) -> dict:
        """Journal a step's result: on disk before the run goes on (shared with siblings in a foreach)."""
        if GROUPED.get():
            event = await self.journal.append_soon("step_finished", step=address, **fields)
        else:
            event = self.journal.append("step_finished", step=address, **fields)
        self.state.done[address] = event
        return event

    async def failed(self, step: Step, address: str, error: StepError, attempts: int) -> dict:
        if step.on_error.action == "fail":
            raise Fail({"step": address, **error.as_dict()})
        return await self.finished(address, status="failed", output=None, error=error.as_dict(), attempts=attempts,
                             goto=step.on_error.goto)

    def backoff(self, step: Step, attempt: int) -> float:
        policy = step.retry
        delay = min(policy.max_delay, policy.backoff * policy.factor ** (attempt - 1))
        if policy.jitter:
            delay *= 0.5 + 0.5 * self.engine.rng()
        return round(delay, 3)

    def verdict(self, root: Scope) -> tuple[str, str | None]:
        spec = self.mission.verdict
        if spec is None:
            return missions.DEFAULT_VERDICT, None
        data = self.data(root)
        try:
            chosen: dict = {"value": spec.value, "note": spec.note}
            at = "verdict"
            if spec.value is None:
                at = "verdict.otherwise"
                for i, case in enumerate(spec.cases):
                    if expressions.render(case["when"], data, f"verdict.cases[{i}].when"):
                        chosen, at = case, f"verdict.cases[{i}]"
                        break
                else:
                    chosen = spec.otherwise or {}
            value = expressions.render(chosen["value"], data, f"{at}.value")
            note = text_of(expressions.render(chosen.get("note"), data, f"{at}.note"))
        except expressions.ExpressionError as e:
            raise Fail({"step": "verdict", "kind": "expression", "message": e.message}) from None
        if value not in spec.choices:
            raise Fail({"step": "verdict", "kind": "invalid_output",
                        "message": f"the verdict '{value}' is not one of {', '.join(spec.choices)}"})
        return value, note

    # ------------------------------------------------------------------ helpers

    def data(self, scope: Scope) -> dict:
        return {**self.base, "steps": scope.steps, **scope.vars}

    def outputs(self, root: Scope) -> dict:
        """``{"outputs": ...}`` for ``run_finished`` when the mission declares outputs, else nothing."""
        found = compose.outputs(self, self.data(root))
        return {} if found is None else {"outputs": found}

    def emitter(self, address: str):
        def emit(message: str, **data) -> None:
            event = self.journal.note("observation", step=address, message=message, **({"data": data} if data else {}))
            self.observations.append(event)
        return emit


def _differences(before, after, path: str = "") -> list[tuple[str, str, str]]:
    """Where two outputs differ: ``(".remaining", "2600", "820")`` for each changed value."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for name in sorted(set(before) | set(after), key=str):
            found += _differences(before.get(name), after.get(name), f"{path}.{name}")
        return found
    if before == after:
        return []
    return [(path, json.dumps(before, ensure_ascii=False), json.dumps(after, ensure_ascii=False))]


def key_text(key: str, data: dict) -> str:
    """A business key as text (a number is written as JSON writes it); a StepError when it cannot be made."""
    try:
        value = expressions.render(key, data)
    except expressions.ExpressionError as e:
        raise StepError("expression", f"the mission's key: {e.message}") from None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise StepError("expression", f"the mission's key must be a text or a number, not {value!r}")
    return str(value).strip()


async def _within(seconds: float, work) -> Any:
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            token = DEADLINES.set((*DEADLINES.get(), deadline))
            try:
                return await work
            finally:
                DEADLINES.reset(token)
    except TimeoutError:
        if not deadline.expired():
            raise  # some other time limit, below: not this step's
        raise StepError("timeout", f"the step took longer than its time limit of {seconds:g}s",
                        outcome_unknown=True) from None
