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
from ..mission import Mission, Step

RETRY_NEVER = {"expression", "rejected", "budget"}  # errors that another attempt cannot fix


class StepError(Exception):
    """A step failed; ``kind`` decides whether its retry policy applies (timeout, tool_error, …)."""

    def __init__(self, kind: str, message: str, *, details: dict | None = None, outcome_unknown: bool = False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details or {}
        # True when an action may or may not have taken effect (a crash or time-out mid-call)
        self.outcome_unknown = outcome_unknown

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, **({"details": self.details} if self.details else {})}

    def retryable_under(self, kinds: tuple[str, ...]) -> bool:
        if self.kind in kinds:
            return True
        if self.kind in RETRY_NEVER:
            return False
        return "any" in kinds or ("error" in kinds and self.kind != "timeout")


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
