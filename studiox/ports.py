"""Doors to the outside world that steps reach through: tools, models, knowledge.

The engine passes one :class:`Ports` to every executor, so tests (and embedders) substitute a
door without touching the engine. Each real door imports its heavy library only when used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .steps import StepError


class NoIntegrations:
    """The tools door of a build without integrations: every call is a clear step error."""

    async def describe(self, integration: str, tool: str) -> dict | None:
        """What is known of a tool: read_only, idempotent, input_schema; None when nothing is."""
        return None

    async def call(self, integration: str, tool: str, arguments: dict, *, key: str):
        raise StepError("unavailable", f"cannot call {integration}.{tool}: integrations are not available in this "
                        "version of studiox yet")

    async def close(self) -> None:
        return None


class NoModels:
    """The models door of an engine built without one: every call is a clear step error."""

    async def complete(self, call, *, address: str, step_id: str, index: int) -> dict:
        raise StepError("model_error", "no model door was given to this engine")


@dataclass
class Ports:
    tools: object = field(default_factory=NoIntegrations)
    models: object = field(default_factory=NoModels)

    async def close(self) -> None:
        await self.tools.close()
