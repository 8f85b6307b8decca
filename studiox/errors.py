"""The one family of errors meant for people, and how they read.

Anything raised from here is a user error: the CLI prints it without a traceback and
exits with the error's ``exit_code``. Any other exception is a bug in studiox.
"""

from __future__ import annotations

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


class RunNotResumable(StudioxError):
    """The run is finished, failed or cancelled: there is nothing to resume (exit 2)."""
