"""The one family of errors meant for people, and how they read.

Anything raised from here is a user error: the CLI prints it without a traceback and
exits with the error's ``exit_code``. Any other exception is a bug in studiox.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where it is, and what to do about it."""

    file: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    column: int  # 1-based; 0 when unknown
    path: str  # the YAML path, e.g. "steps[2] (id: budget).tool"; "" for the file itself
    message: str

    def render(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_json(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class StudioxError(Exception):
    """Base of every error meant for a person; ``exit_code`` is what the CLI returns."""

    exit_code = 2

    def render(self) -> str:
        return str(self)


@dataclass
class MissionInvalid(StudioxError):
    """A mission file has one or more problems; all of them are carried at once."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class UsageError(StudioxError):
    """A command was called with arguments that cannot work (exit 2)."""


class InputsInvalid(StudioxError):
    """A run's inputs do not match the mission's input schemas (exit 2)."""


class StoreError(StudioxError):
    """The state folder cannot be used as it is; it is left untouched (exit 2)."""


class RunNotFound(StudioxError):
    """No run, or no decision, answers to the id given (exit 2)."""


class RunLocked(StudioxError):
    """Another live process is driving the run (exit 2)."""


class DuplicateRun(StudioxError):
    """A run for the same business key is still live (exit 2); --allow-duplicate starts one anyway."""


class DecisionError(StudioxError):
    """A decision cannot be made as asked (exit 2)."""


class RunNotResumable(StudioxError):
    """The run is finished, failed or cancelled: there is nothing to resume (exit 2)."""


class StepError(StudioxError):
    """A step failed; ``kind`` decides whether its retry policy applies (timeout, tool_error, …).

    Raised by executors and adapters; the engine journals it and applies the step's retry and
    ``on_error``. It reaches a person only as part of a run's outcome (exit 1).
    """

    exit_code = 1

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


RETRY_NEVER = {"expression", "rejected", "budget", "duplicate"}  # step errors that another attempt cannot fix


class ExpressionError(StudioxError):
    """An expression that cannot be parsed or evaluated; ``message`` is for people.

    ``offset`` is where the problem is, counted in characters from the start of the text that was
    parsed (a template's text for ``expressions.parse_template``), when that is known.
    """

    def __init__(self, message: str, source: str = "", offset: int | None = None):
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset


class MissingValue(ExpressionError):
    """An expression read a field or item that is not there (a missing key, an index past the end, a
    field of null, a step that has not run); ``default(x, fallback)`` turns it into the fallback."""


def suggest(word: str, choices) -> str:
    """' — did you mean 'x'?' when a close choice exists, else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""
