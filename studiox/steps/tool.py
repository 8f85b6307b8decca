"""``tool``: call one tool of an integration with rendered arguments."""

from __future__ import annotations


async def execute(step, ctx):
    integration, tool = step.spec.split(".", 1)
    arguments = ctx.render(step.arguments or {})
    ctx.emit(f"calling {step.spec}", arguments=arguments)
    result = await ctx.ports.tools.call(integration, tool, arguments, key=ctx.idempotency_key)
    return result
