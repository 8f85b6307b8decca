"""``fail`` and ``finish``: end the run, with an error or with a verdict."""

from __future__ import annotations

import json
from typing import Any

from ..errors import StepError
from ..mission import Step
from . import StepContext


async def execute_fail(step: Step, ctx: StepContext) -> Any:
    message = ctx.render(step.spec, "fail")
    ctx.emit(f"the mission fails: {message}")
    return {"message": message if isinstance(message, str) else str(message)}


async def execute_finish(step: Step, ctx: StepContext) -> Any:
    spec = {"verdict": step.spec} if isinstance(step.spec, str) else step.spec
    verdict = ctx.render(spec["verdict"], "finish" if isinstance(step.spec, str) else "finish.verdict")
    note = ctx.render(spec.get("note"), "finish.note")
    if note is not None and not isinstance(note, str):
        note = json.dumps(note, ensure_ascii=False)
    choices = ctx.mission.verdict.choices if ctx.mission.verdict else None
    if choices and verdict not in choices:
        raise StepError("invalid_output", f"the verdict '{verdict}' is not one of {', '.join(choices)}")
    ctx.emit(f"the mission finishes early: {verdict}", note=note)
    return {"verdict": verdict, "note": note}
