"""How a drive ends: the ``Outcome``, and the signals that carry a run-level event up the walk.

A signal is raised where the event happens (a ``finish`` step, a rejection, a park for a
decision) and caught once, by ``walk.Run.main``, which journals the run's end.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..adapters.ports import Ports
from ..errors import StepError, StudioxError
from ..governance import DecisionQueue
from ..mission import Mission, Step
from ..state.journal import Journal, RunState
from ..state.store import Store


@dataclass
class Outcome:
    """How a drive of a run ended."""

    run_id: str
    status: str  # succeeded · failed · cancelled · waiting
    verdict: str | None = None
    note: str | None = None
    error: dict | None = None
    waiting: dict | None = None
    mission_changed: bool = False


class Finish(Exception):
    """The run ends now with a verdict (a ``finish`` step, or a rejection the mission turns into one)."""

    def __init__(self, verdict: str, note: str | None):
        self.verdict, self.note = verdict, note


class Fail(Exception):
    """The run fails now (a step failed with no way on, or a ``fail`` step)."""

    def __init__(self, error: dict):
        self.error = error


class Cancelled(Exception):
    """Somebody cancelled the run; it stops before its next step."""


class Rejected(Exception):
    """A person (or a time limit) said no to an action; ``applied`` is the decision_applied event."""

    def __init__(self, applied: dict):
        self.applied = applied


class Park(Exception):
    """The run waits for a decision; the process stops driving it."""

    def __init__(self, decision: Any, waiting: dict):
        self.decision, self.waiting = decision, waiting


class JournalMismatch(StudioxError):
    """Resuming would mix the journal with a different conversation or action (exit 2).

    Like Temporal's non-determinism error: the journal and the code disagree, so studiox stops
    rather than guess. Nothing is written; the run stays as it was.
    """


# which signal wins when several items of a foreach end at once: a run-level one first
PRIORITY = (Cancelled, Park, Finish, Fail)


class EngineView(Protocol):
    """What a drive uses of its engine (the doors it was built with)."""

    store: Store
    ports: Callable[[Mission, str, dict], Ports]
    decisions: DecisionQueue
    prompt: Callable[..., None] | None
    sleep: Callable[[float], Awaitable[Any]]
    rng: Callable[[], float]
    clock: Callable[[], float]

    def child_run(self, parent: str, address: str, mission: Mission, inputs: dict,
                  options: dict, via: str | None = None, user: str | None = None) -> tuple[str, bool]: ...

    async def drive_async(self, run_id: str, *, resume: bool = False, retry_failed: bool = False,
                          mission: Mission | None = None, via: str | None = None) -> Outcome: ...


class RunView(Protocol):
    """What the gate, acting and the worker doors use of one drive (``walk.Run``)."""

    engine: EngineView
    mission: Mission
    state: RunState
    journal: Journal
    run_id: str
    started_by: str
    options: dict
    ports: Ports
    observations: list
    gate: Any  # gate.Gate
    excluded: dict[str, float]
    steps_by_id: dict[str, Step]

    @property
    def key_scope(self) -> str | None: ...

    def emitter(self, address: str) -> Callable[..., None]: ...


# inside an item of a foreach that runs items concurrently: step results share commits (group commit)
GROUPED: contextvars.ContextVar[bool] = contextvars.ContextVar("grouped", default=False)


@dataclass
class Scope:
    """What expressions see at one place: the steps so far, and loop variables."""

    steps: dict = field(default_factory=dict)
    vars: dict = field(default_factory=dict)


def first_of(problems: list[BaseException]) -> BaseException:
    """The exception a foreach raises when items ended badly.

    A bug (or a journal mismatch, or Ctrl-C) is never hidden behind a step error; then a
    run-level signal; then a time-out's cancellation; then the first step error.
    """
    flat: list[BaseException] = []

    def walk(errors):
        for e in errors:
            walk(e.exceptions) if isinstance(e, BaseExceptionGroup) else flat.append(e)

    walk(problems)
    ordinary = (*PRIORITY, asyncio.CancelledError, StepError)
    for e in flat:
        if not isinstance(e, ordinary):
            return e
    for kind in ordinary:
        for e in flat:
            if isinstance(e, kind):
                return e
    return flat[0]
