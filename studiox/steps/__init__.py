"""Step executors: one module per kind, one entry point each.

An executor is ``async def execute(step, ctx) -> output``. It reads the run only through the
:class:`StepContext` it is given, reports what it saw through ``ctx.emit``, and either returns
the step's output (plain JSON data), raises :class:`StepError`, or raises :class:`Wait` to ask
for a decision. It never touches the store: durability, retries, time limits and the approval
gate are the engine's, done once for every kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import expressions
from ..errors import StepError
from ..mission import Mission, Step

__all__ = ["StepContext", "StepError", "executor_for", "proposer_for"]



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

    def render(self, value):
        """Evaluate the expressions inside ``value``; a failure is the step's error."""
        try:
            return expressions.render(value, self.data)
        except expressions.ExpressionError as e:
            raise StepError("expression", e.message) from None

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and resumes of this step in this run: the key for exactly-once actions."""
        return f"{self.run_id}/{self.address}"


def proposer_for(kind: str):
    """The ``propose`` function of a step kind that acts on the outside world, else None.

    ``async def propose(step, ctx) -> Action`` says what the step is about to do, so the
    engine's gate can ask for a decision before anything happens.
    """
    from . import tool

    return {"tool": tool.propose}.get(kind)


def executor_for(kind: str):
    """The ``execute`` function of a step kind."""
    from . import branch, control, retrieve, set_, tool, worker

    table = {
        "set": set_.execute,
        "branch": branch.execute,
        "fail": control.execute_fail,
        "finish": control.execute_finish,
        "tool": tool.execute,
        "worker": worker.execute,
        "retrieve": retrieve.execute,
    }
    return table[kind]
