"""Test files: found, read, checked against the schema and against their mission, every problem located."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..errors import InputsInvalid, MissionInvalid, Problem, UsageError, suggest
from ..mission import Mission, yamlread
from ..mission import load as load_mission
from ..mission.schema import check as schema_check

SUFFIXES = (".test.yaml", ".test.yml")
DEFAULT_DECIDER = "studiox-test"
SETUP_KEYS = ("inputs", "models", "tools", "real", "decisions")
_HERE = Path(__file__).resolve().parent
_SCHEMA = (_HERE / "mission-test.schema.json", _HERE.parents[1] / "schemas" / "mission-test.schema.json")


@dataclass
class Case:
    """One case of a test file, with its defaults laid under it."""

    name: str
    index: int
    inputs: dict
    models: dict
    tools: dict
    real: list[str]
    decisions: dict[str, list]  # step id or address → scripted decisions, used in order
    expect: dict
    crash: str | list[str] | None
    at: tuple = ()  # where the case is in the file


@dataclass
class TestFile:
    path: Path
    mission: Mission
    cases: list[Case]
    located: yamlread.Located
    problems: list[Problem] = field(default_factory=list)
    family: list[Mission] = field(default_factory=list)  # the mission and those its mission steps run

    def integrations(self) -> dict[str, tuple[Mission, dict]]:
        """Every integration the family uses, by name, with the mission declaring it (first wins)."""
        found: dict[str, tuple[Mission, dict]] = {}
        for mission in self.family or [self.mission]:
            for name, spec in mission.integrations.items():
                found.setdefault(name, (mission, spec))
        return found

    def where(self, path: tuple) -> str:
        """``invoice.test.yaml:42`` for a path into the file."""
        line, _ = self.located.where(path)
        return f"{self.path}:{line}"


def discover(paths: list[Path]) -> list[Path]:
    """The test files named, or found below the folders named (a mission file names its test file)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.name.endswith(SUFFIXES) and p.is_file())
        elif path.name.endswith(SUFFIXES):
            found.append(path)
        elif path.suffix in (".yaml", ".yml") and path.is_file():
            beside = [path.with_name(path.name[: -len(path.suffix)] + s) for s in SUFFIXES]
            tests = [p for p in beside if p.is_file()]
            if not tests:
                raise UsageError(f"{path} has no test file beside it: write {beside[0].name}")
            found += tests
        else:
            raise UsageError(f"{path} is not a test file, a mission with one, or a folder holding them")
    return list(dict.fromkeys(found))


@cache
def _validator():
    import jsonschema

    schema_file = next(p for p in _SCHEMA if p.is_file())
    return jsonschema.Draft202012Validator(json.loads(schema_file.read_text(encoding="utf-8")))


def load(path: Path) -> TestFile:
    """Read a test file and its mission; every problem of either is a MissionInvalid (exit 2)."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the test file {path}: {e.strerror}") from None
    located = yamlread.load(name, yamlread.read_text(name, raw))
    problems = located.problems or schema_check(located, _validator())
    if problems:
        raise MissionInvalid(problems)
    data = located.data
    assert isinstance(data, dict)
    mission_file = path.parent / data["mission"] if "mission" in data else \
        path.with_name(re.sub(r"\.test\.ya?ml$", "", path.name) + ".yaml")
    if not mission_file.is_file():
        line, col = located.where(("mission",))
        raise MissionInvalid([Problem(name, line, col, "mission", f"the mission {mission_file} does not exist")])
    mission = load_mission(mission_file)  # its own problems, located in the mission file
    from ..mission import descendants, loads

    family = [mission] + [loads(child["source"], child_path) for child_path, child in descendants(mission).items()]
    file = TestFile(path, mission, [], located, family=family)
    defaults = data.get("defaults") or {}
    if defaults.get("models"):
        from ..replay_checks import replay_problems

        file.problems += replay_problems(mission, located, ("defaults", "models"))
    names: dict[str, int] = {}
    for i, raw_case in enumerate(data["cases"]):
        at = ("cases", i)
        if raw_case["name"] in names:
            file.problems.append(_problem(file, (*at, "name"), f"a second case named '{raw_case['name']}' (the first "
                                          f"is case {names[raw_case['name']] + 1}); give each case its own name"))
        names.setdefault(raw_case["name"], i)
        case = _case(file, raw_case, defaults, i)
        Checks(file, case).all()
        file.cases.append(case)
    if file.problems:
        raise MissionInvalid(sorted(file.problems, key=lambda p: (p.line, p.column)))
    return file


def _case(file: TestFile, raw: dict, defaults: dict, index: int) -> Case:
    merged = {key: {**(defaults.get(key) or {}), **(raw.get(key) or {})} for key in ("inputs", "models", "tools",
                                                                                     "decisions")}
    real = list(dict.fromkeys([*(defaults.get("real") or []), *(raw.get("real") or [])]))
    decisions = {step: value if isinstance(value, list) else [value] for step, value in merged["decisions"].items()}
    return Case(raw["name"], index, merged["inputs"], merged["models"], merged["tools"], real, decisions,
                raw.get("expect") or {}, raw.get("crash"), ("cases", index))


def _problem(file: TestFile, path: tuple, message: str, *, key: bool = False) -> Problem:
    line, col = file.located.where(path, key=key)
    return Problem(str(file.path), line, col, yamlread.render_path(file.located.data, path), message)


def step_id(address: str) -> str:
    """The step id in an address: ``lines[2].check#3`` → ``check``."""
    return re.sub(r"(\[\d+\]|#\d+)", "", address.rsplit(".", 1)[-1])


class Checks:
    """What a case says, checked against its mission before anything runs."""

    def __init__(self, file: TestFile, case: Case):
        self.file, self.case = file, case
        self.mission = file.mission
        self.steps = {s.id: s for m in file.family for s in m.walk()}
        self.called = set().union(*(_tools_called(m) for m in file.family))
        self.integrations = file.integrations()

    def add(self, path: tuple, message: str, *, key: bool = False) -> None:
        self.file.problems.append(_problem(self.file, path, message, key=key))

    def origin(self, key: str, name: str) -> tuple:
        """Where a setting of the case stands: in the case, else in the defaults."""
        raw = self.file.located.data["cases"][self.case.index]  # type: ignore[index]
        return (*self.case.at, key, name) if name in (raw.get(key) or {}) else ("defaults", key, name)

    def all(self) -> None:
        self.inputs()
        self.models()
        for target in self.case.tools:
            self.tool(self.origin("tools", target), target)
        for integration in self.case.real:
            if integration not in self.integrations:
                self.add(self.origin("real", integration)[:-1], f"'{integration}' is not an integration of the mission"
                         f"{suggest(integration, self.integrations)}")
        for address in self.case.decisions:
            self.step(self.origin("decisions", address), address, key=True)
        self.expectations()

    def inputs(self) -> None:
        from ..mission.inputs import check

        values = {}
        for name, value in self.case.inputs.items():
            if name not in self.mission.inputs:
                self.add(self.origin("inputs", name), f"unknown input '{name}'{suggest(name, self.mission.inputs)}"
                         f" (the mission's inputs: {', '.join(self.mission.inputs) or 'none'})", key=True)
                continue
            try:
                values[name] = input_value(self.file.path.parent, self.mission, name, value)
            except InputsInvalid as e:
                self.add(self.origin("inputs", name), str(e))
        try:
            self.case.inputs = check(self.mission, values)
        except InputsInvalid as e:
            self.add((*self.case.at, "inputs"), str(e).split(":\n", 1)[-1].strip().replace("\n  ", "; "))

    def models(self) -> None:
        """The case's own scripted answers, as a replay file's are checked (shape, steps, output
        schemas, tools offered); the defaults' are checked once for the file."""
        from ..replay_checks import replay_problems

        raw = self.file.located.data["cases"][self.case.index]  # type: ignore[index]
        if raw.get("models"):
            self.file.problems += replay_problems(self.mission, self.file.located, (*self.case.at, "models"))

    def step(self, at: tuple, address: str, *, key: bool = False, kind: str | None = None) -> None:
        sid = step_id(address.rsplit("/", 1)[-1])  # (payment/pay: the step pay of the sub-mission at payment)
        step = self.steps.get(sid)
        if step is None:
            self.add(at, f"the mission has no step '{sid}'{suggest(sid, self.steps)}", key=key)
        elif kind is not None and step.kind != kind:
            self.add(at, f"the step '{sid}' is a {step.kind} step, not a {kind}: only a {kind} step uses this",
                     key=key)

    def tool(self, at: tuple, target: str) -> None:
        integration = target.split(".", 1)[0]
        if integration not in self.integrations:
            self.add(at, f"'{integration}' is not an integration of the mission"
                     f"{suggest(integration, self.integrations)}", key=True)
        elif target not in self.called:
            self.add(at, f"the mission does not call {target}{suggest(target, self.called)}"
                     f" (it calls: {', '.join(sorted(self.called)) or 'no tools'})", key=True)

    def expectations(self) -> None:
        from ..expressions import ExpressionError, parse_template

        expect, at = self.case.expect, (*self.case.at, "expect")
        for address in expect.get("steps") or {}:
            self.step((*at, "steps", address), address, key=True)
        for address in expect.get("decisions") or {}:
            self.step((*at, "decisions", address), address, key=True)
        for target in expect.get("calls") or {}:
            self.tool((*at, "calls", target), target)
        choices = self.mission.verdict.choices if self.mission.verdict else ()
        if "verdict" in expect and choices and expect["verdict"] not in choices:
            self.add((*at, "verdict"), f"'{expect['verdict']}' is not one of the mission's verdicts "
                     f"({', '.join(choices)}){suggest(expect['verdict'], choices)}")
        for i, text in enumerate(expect.get("outputs") or []):
            try:
                parse_template(text)
            except ExpressionError as e:
                self.add((*at, "outputs", i), e.message)


def _tools_called(mission: Mission) -> set[str]:
    """Every INTEGRATION.TOOL a mission's steps call or offer their workers."""
    called: set[str] = set()
    for step in mission.walk():
        if step.kind == "tool":
            called.add(step.spec)
        elif step.kind == "worker":
            called.update(step.spec.get("tools") or [])
    return called


def input_value(base: Path, mission: Mission, name: str, value):
    """An input as a case gives it: ``@FILE`` (relative to the test file) read as --input reads it."""
    if isinstance(value, str) and value.startswith("@"):
        from ..mission.inputs import _parse_structured, _read_file, _wants_text

        file = str(base / value[1:])
        text = _read_file(file, f"the input '{name}'")
        return text if _wants_text(mission.inputs.get(name, {})) else _parse_structured(text, file, f"the input '{name}'")
    return value
