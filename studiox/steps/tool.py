"""``tool``: call one tool of an integration with rendered arguments."""

from __future__ import annotations

from typing import Any

from ..governance import Action
from ..mission import Step
from . import StepContext


async def propose(step: Step, ctx: StepContext) -> Action:
    """The call about to be made, with what the integration says of the tool."""
    integration, tool = step.spec.split(".", 1)
    arguments = ctx.render(step.arguments or {}, "arguments")
    info = await ctx.ports.tools.describe(integration, tool) or {}
    read_only, why = bool(info.get("read_only")), "the integration annotates it read-only"
    if step.trust == "read_only":
        read_only, why = True, f"the mission trusts it as read-only: {step.trust_reason or 'no reason given'}"
    return Action("tool", step.spec, arguments, read_only=read_only, read_only_why=why if read_only else None,
                  input_schema=info.get("input_schema"), idempotent=bool(info.get("idempotent")))


async def execute(step: Step, ctx: StepContext) -> Any:
    action = ctx.action or await propose(step, ctx)
    integration, tool = action.target.split(".", 1)
    ctx.emit(f"calling {action.target}", arguments=action.arguments)
    return await ctx.ports.tools.call(integration, tool, action.arguments, key=ctx.idempotency_key)
