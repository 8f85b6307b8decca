"""``set``: compute named values from expressions; the mapping is the step's output."""

from __future__ import annotations

from typing import Any

from ..mission import Step
from . import StepContext


async def execute(step: Step, ctx: StepContext) -> Any:
    return {name: ctx.render(expr, f"set.{name}") for name, expr in step.spec.items()}
