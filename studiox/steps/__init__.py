"""Step executors: one module per kind, one entry point each.

An :class:`Executor` is ``async def execute(step, ctx) -> output``. It reads the run only
through the :class:`StepContext` it is given, reports what it saw through ``ctx.emit``, and
either returns the step's output (plain JSON data) or raises :class:`StepError`. A kind that
acts on the outside world also has a :class:`Proposer`, which says what it is about to do so
that the engine's gate can ask first. Neither touches the store: durability, retries, time
limits and the gate are the engine's, done once for every kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .. import expressions
from ..errors import StepError
from ..mission import Mission, Step

if TYPE_CHECKING:
    from ..governance import Action

__all__ = ["Executor", "Proposer", "StepContext", "StepError", "executor_for", "proposer_for"]



@dataclass(frozen=True)
class StepContext:
    """What an executor may see and do: a read-only view of the run, and doors to the outside."""

    step: Step
    address: str  # the step's place in the run, e.g. "lines[3].check" or "route#2"
    attempt: int
    run_id: str
    mission: Mission
    data: Mapping[str, Any]  # what expressions read: inputs, steps, loop variables
    ports: Any  # studiox.ports.Ports
    emit: Callable[..., None] = field(repr=False)
    action: Any = None  # the approved action (studiox.governance.Action) of a gated step
    # doors the engine opens for workers: durable model turns, gated tool calls, model choice
    model: Callable[..., Any] | None = field(default=None, repr=False)
    act: Callable[..., Any] | None = field(default=None, repr=False)
    resolve_model: Callable[..., Any] | None = field(default=None, repr=False)

    def render(self, value, at: str = ""):
        """Evaluate the expressions inside ``value``, written at ``at`` in the step (``arguments``,
        ``worker.input``); a failure is the step's error, and says where."""
        try:
            return expressions.render(value, self.data, at)
        except expressions.ExpressionError as e:
            raise StepError("expression", e.message) from None

    key_scope: str | None = None  # MISSION/KEY when the run has a business key

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and resumes of this step: ``RUN/STEP``, or ``MISSION/KEY/STEP`` when the
        run has a business key, so a server that honours it acts once for the object across runs."""
        return f"{self.key_scope or self.run_id}/{self.address}"


class Executor(Protocol):
    """How a step kind does its work: the step's output, or a StepError."""

    async def __call__(self, step: Step, ctx: StepContext) -> Any: ...


class Proposer(Protocol):
    """What a step kind is about to do to the outside world (the action the gate decides on)."""

    async def __call__(self, step: Step, ctx: StepContext) -> Action: ...


def proposer_for(kind: str) -> Proposer | None:
    """The proposer of a step kind that acts on the outside world, else None."""
    from . import tool

    proposers: dict[str, Proposer] = {"tool": tool.propose}
    return proposers.get(kind)


def executor_for(kind: str) -> Executor:
    """The executor of a step kind."""
    from . import branch, control, retrieve, set_, tool, worker

    executors: dict[str, Executor] = {
        "set": set_.execute,
        "branch": branch.execute,
        "fail": control.execute_fail,
        "finish": control.execute_finish,
        "tool": tool.execute,
        "worker": worker.execute,
        "retrieve": retrieve.execute,
    }
    return executors[kind]
