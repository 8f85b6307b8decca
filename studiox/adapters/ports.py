"""Doors to the outside world that steps reach through: tools, models, knowledge.

The engine passes one :class:`Ports` to every executor, so tests (and embedders) substitute a
door without touching the engine. Each real door imports its heavy library only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import StepError

# the time limit of the step a door is called from (None: it has none). A tools door bounds each
# call with its own limit only when the step has none: the engine enforces the step's, whole.
STEP_TIME_LIMIT: ContextVar[float | None] = ContextVar("studiox_step_time_limit", default=None)
# what a port says while it waits (a provider's rate limit, a retry): put on the step's rail
ANNOUNCE: ContextVar[Callable[[str], None] | None] = ContextVar("studiox_announce", default=None)


class ToolsDoor(Protocol):
    async def describe(self, integration: str, tool: str) -> dict | None: ...
    async def call(self, integration: str, tool: str, arguments: dict, *, key: str) -> Any: ...
    async def close(self) -> None: ...


class ModelsDoor(Protocol):
    async def complete(self, call: Any, *, address: str, step_id: str, index: int) -> dict: ...


class KnowledgeDoor(Protocol):
    async def search(self, source: str, query: str, top: int, where: dict | None = None) -> list[dict]: ...


class NoIntegrations:
    """The tools door of an engine built without one: every call is a clear step error."""

    async def describe(self, integration: str, tool: str) -> dict | None:
        """What is known of a tool: read_only, idempotent, input_schema; None when nothing is."""
        return None

    async def call(self, integration: str, tool: str, arguments: dict, *, key: str):
        raise StepError("tool_error", f"cannot call {integration}.{tool}: no tools door was given to this engine")

    async def close(self) -> None:
        return None


class NoModels:
    """The models door of an engine built without one: every call is a clear step error."""

    async def complete(self, call, *, address: str, step_id: str, index: int) -> dict:
        raise StepError("model_error", "no model door was given to this engine")


class NoKnowledge:
    """The knowledge door of an engine built without one."""

    async def search(self, source: str, query: str, top: int, where: dict | None = None) -> list[dict]:
        raise StepError("knowledge", "no knowledge door was given to this engine")


@dataclass
class Ports:
    tools: ToolsDoor = field(default_factory=NoIntegrations)
    models: ModelsDoor = field(default_factory=NoModels)
    knowledge: KnowledgeDoor = field(default_factory=NoKnowledge)

    async def close(self) -> None:
        await self.tools.close()
        closing = getattr(self.knowledge, "close", None)  # (a knowledge door holding open indexes)
        if closing is not None:
            closing()
