"""``set``: compute named values from expressions; the mapping is the step's output."""

from __future__ import annotations


async def execute(step, ctx):
    return {name: ctx.render(expr) for name, expr in step.spec.items()}
