"""Missions that compose: ``parallel`` branches and ``mission:`` steps (a child run).

Parallel: each branch is a step list walked at once with the others (``concurrency`` at a
time), its steps addressed ``ID.BRANCH.STEP``. A branch that parks waits alone: the others go
on to their end, and the step parks when nothing else can move. A branch that fails starts no
branch that has not started; those under way finish, so no call in flight is ever cut off by a
sibling. The output maps each branch to its steps' outputs.

Mission steps: the child is a run of its own (its journal, its decisions, its verdict), linked
both ways: the child's ``run_started`` names its ``parent`` (run and step), the parent's step
claims the child's id (``child:PARENT:ADDRESS``) before it starts it, so a parent resumed after
a crash at any point takes up the same child, never a second. The child's mission is the one
journaled with the parent's start (``children``). It is driven in the parent's process and event
loop; when it parks, the parent's step parks on the same decision, and deciding it resumes the
parent (see ``Engine.drive``), which resumes the child.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .. import expressions
from .. import mission as missions
from ..errors import InputsInvalid, StepError, StudioxError
from ..mission import Step
from ..state.journal import derive
from .control import GROUPED, Fail, Park, Scope, first_of

Run = Any  # a walk.Run (typed loosely here: walk imports this module)

INHERITED = ("model", "env_model", "api_base", "env_api_base", "cache", "replay", "allow_duplicate")


async def parallel(run: Run, step: Step, address: str, scope: Scope) -> dict:
    """Each branch through its steps at once; ``{branch: {step: output}}``."""
    results: dict[str, dict] = {}
    slots = asyncio.Semaphore(step.concurrency)
    failed = False

    async def one(name: str, steps: tuple[Step, ...]) -> None:
        nonlocal failed
        async with slots:
            if failed:
                return  # a sibling failed: no new branch starts
            GROUPED.set(step.concurrency > 1)  # (this branch's task only) siblings share commits
            inner = Scope(dict(scope.steps), dict(scope.vars))
            try:
                await run.sequence(steps, f"{address}.{name}.", inner)
            except Fail as f:
                failed = True
                raise StepError(f.error.get("kind", "error"), f"branch '{name}': {f.error['message']}") from None
            except Park:
                raise  # this branch waits; the others go on
            except BaseException:
                failed = True
                raise
            results[name] = {s.id: inner.steps[s.id]["output"] for s in steps if s.id in inner.steps}

    ended = await asyncio.gather(*(one(name, steps) for name, steps in step.branches), return_exceptions=True)
    problems = [e for e in ended if isinstance(e, BaseException)]
    if problems:
        raise first_of(problems)
    return {name: results.get(name, {}) for name, _ in step.branches}


async def submission(run: Run, step: Step, address: str, data: dict) -> dict:
    """Run the child mission to its end (or park on its decision); its verdict and outputs."""
    path = str(missions.submission_path(run.mission, step))
    child = _child_mission(run, path)
    depth = run.depth + 1
    if depth > missions.MAX_DEPTH:
        raise StepError("mission", f"missions run missions {depth} deep here, more than {missions.MAX_DEPTH}")
    try:
        inputs = expressions.render(step.inputs or {}, data)
        from ..mission.inputs import check

        inputs = check(child, inputs)
    except expressions.ExpressionError as e:
        raise StepError("expression", e.message) from None
    except InputsInvalid as e:
        raise StepError("invalid_arguments", str(e)) from None
    engine = run.engine
    options = {k: v for k, v in run.options.items() if k in INHERITED}
    via = f"{run.via}/{address}" if run.via else address
    try:
        child_id, had = engine.child_run(run.run_id, address, child, inputs, {**options, "children": run.children},
                                         via=via, user=(run.state.started or {}).get("user"))
    except StudioxError as e:  # its business key has a live run already
        raise StepError("mission", f"the mission {child.name} could not start: {e}") from None
    state = derive(child_id, engine.store.events(child_id))
    emit = run.emitter(address)
    if not had:
        emit(f"runs the mission {child.name} as run {child_id}", child=child_id)
        run.journal.flush()  # the link is on the rail before the child's own lines
    if state.finished is None:
        outcome = await engine.drive_async(child_id, resume=had and state.last is not None
                                           and state.last["type"] != "run_started", mission=child, via=via)
        state = derive(child_id, engine.store.events(child_id))
        if outcome.status == "waiting":
            waiting = outcome.waiting or {}
            parked = run.journal.append("waiting", step=address, decision=waiting.get("decision"), child=child_id,
                                        in_doubt=bool(waiting.get("in_doubt")), action=waiting.get("action"),
                                        explain=f"the mission {child.name} (run {child_id}) waits for a decision")
            run.state.waiting = parked
            decision = engine.decisions.get(waiting["decision"])
            raise Park(decision, {**waiting, "step": address, "child": child_id})
    finished = state.finished or {}
    if finished.get("status") != "succeeded":
        error = finished.get("error") or {}
        raise StepError("mission", f"the mission {child.name} (run {child_id}) {finished.get('status', 'stopped')}"
                        + (f": {error.get('message')}" if error.get("message") else ""))
    return {"run": child_id, "mission": child.name, "verdict": finished.get("verdict"), "note": finished.get("note"),
            "outputs": finished.get("outputs") or {}}


def _child_mission(run: Run, path: str) -> missions.Mission:
    """The child's mission as journaled with the run's start (else, for runs from before, its file)."""
    snapshot = run.children.get(path)
    if snapshot is not None:
        return missions.from_snapshot(snapshot["source"], path, snapshot["digest"])
    if not Path(path).is_file():
        raise StepError("mission", f"the mission file {path} does not exist")
    return missions.load(path)


def outputs(run: Run, data: dict) -> dict | None:
    """The mission's declared ``outputs``, computed as it finishes (None when it declares none)."""
    if not run.mission.outputs:
        return None
    try:
        return expressions.render(run.mission.outputs, data)
    except expressions.ExpressionError as e:
        raise Fail({"step": "outputs", "kind": "expression", "message": e.message}) from None
