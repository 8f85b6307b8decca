"""Scripted model answers checked against the mission they are for, before anything runs.

A replay file (or a test case's ``models:``) maps step ids and step addresses to answers. Read on
its own it can only be checked for shape (``adapters.replay.answer_problems``); read beside the
mission it can be checked for sense: every key names a worker the mission runs (an id, or an
address such as ``lines[2].check`` or ``route#2`` as the engine forms them), every ``output`` fits
that worker's output schema, and every tool call names a tool the worker is offered.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import MissionInvalid, Problem, suggest
from .mission import Mission, Step
from .mission.shapes import render_fields, worker_output
from .mission.yamlread import Located, render_path

_ID = re.compile(r"[a-z][a-z0-9_]*")
# one segment of a step address: ID, then #N from the second visit on, then [I] for a foreach item
_SEGMENT = re.compile(r"([a-z][a-z0-9_]*)(?:#([0-9]+))?(?:\[([0-9]+)\])?")
_MAX_OUTPUT_PROBLEMS = 5  # per answer: the first few say what is wrong


def replay_problems(mission: Mission, located: Located, at: tuple = ()) -> list[Problem]:
    """Everything wrong with the scripted answers at ``at`` in ``located`` (``()`` for a replay file):
    their shape, as ``Replay.load`` checks it, and their fit to ``mission``. Each problem is located
    in ``located.file``. Problems of the YAML itself (``located.problems``) are the caller's."""
    from .adapters.replay import answer_problems

    problems = answer_problems(located, at)
    answers = located.value_at(at)
    if isinstance(answers, dict):
        where = render_path(located.data, at)
        within = f"{where}: " if where else ""
        for key, listed in answers.items():
            if isinstance(key, str):
                problems += _KeyCheck(mission, located, (*at, key), f"{within}step '{key}'").run(listed)
    unique = {(p.line, p.column, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line, p.column))


def replay_file_problems(path: str | Path, mission: Mission | None) -> list[Problem]:
    """Everything wrong with a replay file, read from ``path``: its YAML, the shape of its answers and,
    given the ``mission``, their fit to it. A file that cannot be read is a UsageError."""
    from .adapters.replay import answer_problems, read

    try:
        located = read(path)
    except MissionInvalid as e:
        return list(e.problems)
    if located.problems:
        return located.problems
    return replay_problems(mission, located) if mission is not None else answer_problems(located)


class _KeyCheck:
    """One key of the answers and its list: the worker it names, and each answer against that worker."""

    def __init__(self, mission: Mission, located: Located, at: tuple, label: str):
        self.mission, self.located, self.at, self.label = mission, located, at, label
        self.problems: list[Problem] = []

    def add(self, sub: tuple, message: str, *, label: str | None = None, key: bool = False) -> None:
        line, col = self.located.where((*self.at, *sub), key=key)
        self.problems.append(Problem(self.located.file, line, col, label or self.label, message))

    def run(self, listed) -> list[Problem]:
        step, message = worker_named(self.mission, self.at[-1])
        if step is None:
            self.add((), message, key=True)
        elif isinstance(listed, list):
            for i, answer in enumerate(listed):
                self.answer(step, answer, (i,), f"{self.label}, answer {i + 1}")
        return self.problems

    def answer(self, step: Step, answer, sub: tuple, label: str) -> None:
        if not isinstance(answer, dict):
            return  # the shape check said so
        if "output" in answer and "error" not in answer:
            self.output(step, answer["output"], (*sub, "output"), label)
        calls = answer.get("tool_calls")
        if isinstance(calls, list):
            offered = [t for t in step.spec.get("tools") or [] if isinstance(t, str)]
            for n, call in enumerate(calls):
                if isinstance(call, dict) and isinstance(call.get("tool"), str) and call["tool"] not in offered:
                    self.add((*sub, "tool_calls", n, "tool"), _not_offered(step, call["tool"], offered, n),
                             label=label)
        if isinstance(answer.get("then"), dict):
            self.answer(step, answer["then"], (*sub, "then"), f"{label} (then)")

    def output(self, step: Step, value, sub: tuple, label: str) -> None:
        import jsonschema  # here: `studiox --help` should not pay for it

        schema = worker_output(step.spec)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value),
                        key=lambda e: [str(p) for p in e.absolute_path])
        for error in errors[:_MAX_OUTPUT_PROBLEMS]:
            fields = tuple(error.absolute_path)
            self.add((*sub, *fields), f"output{'.' if fields and isinstance(fields[0], str) else ''}"
                     f"{render_fields(fields)}: {error.message}, so it does not fit the output schema of "
                     f"'{step.id}' (an answer meant to be repaired is written as 'text:')", label=label)


def _not_offered(step: Step, tool: str, offered: list[str], n: int) -> str:
    if not offered:
        return (f"tool_calls[{n}]: the worker '{step.id}' is offered no tools, so it cannot call '{tool}' (list the "
                "tools it may call under its 'tools:')")
    return (f"tool_calls[{n}]: '{tool}' is not a tool the worker '{step.id}' is offered (its tools: "
            f"{', '.join(offered)}){suggest(tool, offered)}")


def worker_named(mission: Mission, key: str) -> tuple[Step | None, str]:
    """The worker step a key of scripted answers names, or None and why not.

    A key is a step id (the step wherever it runs), or a step address as the engine forms it:
    ``extract``, ``extract#2`` (its second visit, in a loop), ``lines[2].check`` (inside a foreach,
    item 2), ``lines#2[0].check``."""
    everywhere = {s.id: s for s in mission.walk()}
    if key in everywhere:
        return _the_worker(everywhere[key], key)
    if _ID.fullmatch(key):
        workers = [s.id for s in mission.walk() if s.kind == "worker"]
        return None, f"there is no step '{key}' in the mission{suggest(key, workers)}"
    segments = key.split(".")
    steps: tuple[Step, ...] = mission.steps
    inside = ""
    for n, segment in enumerate(segments):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            return None, (f"'{key}' is neither a step id nor a step address (such as 'extract', 'extract#2' or "
                          "'lines[2].check')")
        sid, visit, item = match.group(1), match.group(2), match.group(3)
        here = {s.id: s for s in steps}
        if sid not in here:
            where = f"inside the foreach '{inside}'" if inside else "at the top of the mission"
            if sid in everywhere:  # a step of another list: its address starts elsewhere
                address = ".".join((_address_of(mission, sid) + segment[len(sid):], *segments[n + 1:]))
                return None, f"there is no step '{sid}' {where}; its address is like '{address}'"
            fixed = [".".join((*segments[:n], other + segment[len(sid):], *segments[n + 1:])) for other in here]
            return None, f"there is no step '{sid}' {where}{suggest(key, fixed)}"
        step = here[sid]
        if visit is not None and (problem := _visit_problem(steps, step, int(visit))):
            return None, problem
        if n < len(segments) - 1:
            if step.kind != "foreach":
                return None, f"'{sid}' is a {step.kind} step, not a foreach: no step runs inside it"
            if item is None:
                return None, f"'{sid}' is a foreach: name one of its items, such as '{sid}[0]', before the step inside"
            steps, inside = step.steps, sid
        elif item is None:
            return _the_worker(step, key)
        elif step.kind != "foreach":
            return None, f"'{sid}' is a {step.kind} step, not a foreach: it has no items"
        else:
            return None, (f"'{key}' is an item of a foreach, not a worker: name the worker inside it, such as "
                          f"'{key}.{_first_worker(step) or 'STEP'}'")
    return None, f"'{key}' is not a step address"  # pragma: no cover - the loop returns


def _the_worker(step: Step, key: str) -> tuple[Step | None, str]:
    if step.kind == "worker":
        return step, ""
    inside = _first_worker(step) if step.kind == "foreach" else None
    hint = f"; script the worker inside it instead: '{inside}' (every item), or '{key}[0].{inside}'" if inside else ""
    return None, f"'{key}' is a {step.kind} step, not a worker: only workers ask a model{hint}"


def _address_of(mission: Mission, sid: str) -> str:
    """The address of a step's first visit, with item 0 of each foreach it is inside: ``lines[0].check``."""
    def find(steps: tuple[Step, ...], prefix: str) -> str | None:
        for s in steps:
            if s.id == sid:
                return prefix + sid
            if found := find(s.steps, f"{prefix}{s.id}[0]."):
                return found
        return None

    return find(mission.steps, "") or sid


def _first_worker(foreach: Step) -> str | None:
    for s in foreach.steps:
        if s.kind == "worker":
            return s.id
    return None


def _visit_problem(steps: tuple[Step, ...], step: Step, visit: int) -> str | None:
    """Why ``ID#N`` never names a visit of ``step`` in its list of steps, if it never does."""
    if visit < 2:
        return f"'{step.id}#{visit}' never appears in an address: a first visit is written without '#', a second " \
               f"as '{step.id}#2'"
    index = {s.id: i for i, s in enumerate(steps)}
    here = index[step.id]
    for j, other in enumerate(steps):
        if j < here or other.kind != "branch":
            continue
        targets = [c.get("goto") for c in other.spec.get("cases") or [] if isinstance(c, dict)]
        targets.append(other.spec.get("otherwise"))
        if any(isinstance(t, str) and index.get(t, len(steps)) <= here for t in targets):
            return None  # a branch at or after it jumps back to it (or before it): it can run again
    return f"'{step.id}' runs once: no branch jumps back to it, so there is no '{step.id}#{visit}'"
