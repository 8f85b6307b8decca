"""``branch``: choose the next step; the first case whose condition holds wins."""

from __future__ import annotations

from typing import Any

from ..mission import Step
from . import StepContext


async def execute(step: Step, ctx: StepContext) -> Any:
    for index, case in enumerate(step.spec["cases"]):
        if ctx.render(case["when"], f"branch.cases[{index}].when"):
            ctx.emit(f"case {index + 1} holds: going to '{case['goto']}'", condition=case["when"])
            return {"goto": case["goto"], "case": index}
    target = step.spec.get("otherwise")
    ctx.emit(f"no case holds: going to '{target}'" if target else "no case holds: going on to the next step")
    return {"goto": target, "case": None}
