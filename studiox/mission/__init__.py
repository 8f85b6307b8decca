"""The typed Mission, and ``load``: YAML → schema check → semantic checks → frozen objects.

Nothing here runs anything. Every problem of a file is reported at once, each with its file,
line, column and YAML path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissionInvalid, Problem
from ..units import seconds
from . import checks, schema, yamlread
from .checks import KINDS

DEFAULT_VERDICT = "Completed"


def _duration(value, default: float) -> float:
    return default if value is None else float(seconds(value) or 0.0)




@dataclass(frozen=True)
class Retry:
    attempts: int = 1
    backoff: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True
    on: tuple[str, ...] = ("any",)


@dataclass(frozen=True)
class OnError:
    action: str = "fail"  # fail | continue | goto
    goto: str | None = None


@dataclass(frozen=True)
class Approval:
    required: bool = False
    auto_approve_when: str | None = None
    reason: str | None = None
    explain: str | None = None
    timeout: float | None = None
    on_reject: dict | None = None
    on_timeout: dict | None = None
    on_duplicate: str = "ask"  # with a mission key: a tool already done for the key in another run asks again
    recheck: tuple[str, ...] = ()  # read-only steps run again after the approval, before the action
    show: dict | None = None  # label → expression: the evidence the approver sees
    # who may decide (checked by studiox.governance.check_decider)
    approvers: tuple[str, ...] = ()  # OS users and Unix groups; empty: anyone
    four_eyes: bool = False  # the run's starter may not approve
    quorum: int = 1  # distinct people who must approve
    quorum_when: str | None = None  # the quorum applies only when this holds


@dataclass(frozen=True)
class Step:
    """One step: its id, its kind and that kind's settings (``spec``), and the common settings."""

    id: str
    kind: str
    spec: Any  # the kind's own settings, as written (read-only by convention)
    path: tuple  # where the step stands in the file, for messages
    name: str | None = None
    description: str | None = None
    when: Any = None
    retry: Retry = field(default_factory=Retry)
    timeout: float | None = None
    on_error: OnError = field(default_factory=OnError)
    approval: Approval | None = None
    budget: dict | None = None
    arguments: dict | None = None  # tool steps
    trust: str | None = None
    trust_reason: str | None = None
    steps: tuple[Step, ...] = ()  # foreach
    item_name: str = "item"  # foreach
    concurrency: int = 1  # foreach, parallel
    branches: tuple[tuple[str, tuple[Step, ...]], ...] = ()  # parallel: (name, steps) in order
    inputs: dict | None = None  # mission: the child's inputs, as written

    @property
    def title(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Model:
    name: str
    model: str
    default: bool = False
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    choices: tuple[str, ...]
    value: str | None = None
    note: str | None = None
    cases: tuple[dict, ...] = ()
    otherwise: dict | None = None


@dataclass(frozen=True)
class Mission:
    """A validated mission, ready to run. ``source`` and ``digest`` identify exactly what was read."""

    name: str
    steps: tuple[Step, ...]
    file: str
    source: str
    digest: str
    description: str = ""
    version: str | None = None
    inputs: dict = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    knowledge: dict = field(default_factory=dict)
    integrations: dict = field(default_factory=dict)
    budget: dict | None = None
    verdict: Verdict | None = None
    key: str | None = None  # an expression naming the business object a run is about
    outputs: dict | None = None  # name → value or expression: what a parent's mission step reads
    triggers: tuple[dict, ...] = ()  # inbox, schedule, webhook: what starts it while `studiox serve` watches
    notify: tuple[dict, ...] = ()  # who is told of decisions waiting or expiring, runs failed or finished

    @property
    def default_model(self) -> Model | None:
        marked = [m for m in self.models.values() if m.default]
        if marked:
            return marked[0]
        return next(iter(self.models.values())) if len(self.models) == 1 else None

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent

    def walk(self):
        """Every step, nested ones included, in document order."""
        def _walk(steps):
            for s in steps:
                yield s
                yield from _walk(s.steps)
                for _, branch in s.branches:
                    yield from _walk(branch)
        yield from _walk(self.steps)


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load(path: str | Path) -> Mission:
    """Read, check and type a mission file; raises MissionInvalid with every problem found."""
    return loads(read_source(path), str(path))


_LOADED: dict[tuple, Mission] = {}


def load_once(path: str | Path) -> Mission:
    """:func:`load`, remembered for this process while the file is unchanged (same mtime and size):
    a sub-mission is read once though validation, the plan and the run all ask for it."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        _LOADED[key] = load(path)
    return _LOADED[key]


def read_source(path: str | Path) -> str:
    """A mission file's text: UTF-8, at most 1 MB; MissionInvalid naming the file otherwise."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise MissionInvalid([Problem(file, 0, 0, "", "no such file")]) from None
    except IsADirectoryError:
        raise MissionInvalid([Problem(file, 0, 0, "", "this is a folder, not a mission file")]) from None
    except OSError as e:
        raise MissionInvalid([Problem(file, 0, 0, "", f"cannot read the file: {e.strerror}")]) from None
    return yamlread.read_text(file, raw)


def loads(text: str, file: str = "<mission>", *, check_paths: bool = True) -> Mission:
    """Check and type a mission from its text; ``file`` names it in messages.

    ``check_paths=False`` skips checks of files the mission points to: a run's snapshot must
    load wherever and whenever it is resumed.
    """
    located = yamlread.load(file, text)
    if not isinstance(located.data, dict):
        found = "a list" if isinstance(located.data, list) else "a single value"
        raise MissionInvalid([Problem(file, 1, 1, "", f"a mission must be a mapping of keys such as 'mission:' "
                                                        f"and 'steps:', but this file holds {found}")])
    problems = located.problems + schema.check(located)
    problems += checks.check(located, check_paths=check_paths)
    if problems:
        unique = {p.render(): p for p in problems}
        raise MissionInvalid(sorted(unique.values(), key=lambda p: (p.line, p.column, p.message)))
    return _build(located.data, file, text)


def from_snapshot(text: str, file: str, digest: str) -> Mission:
    """The mission a run started with, from its journaled source.

    It was fully checked when the run started; its digest proves it is the same text, so
    resuming skips the checks (and stays fast for long missions).
    """
    from ..errors import StoreError

    if digest_of(text) != digest:
        raise StoreError(f"the mission snapshot of this run does not match its digest; the journal was altered "
                         f"({file})")
    located = yamlread.load(file, text)
    if located.problems or not isinstance(located.data, dict):  # pragma: no cover - checked at start
        raise MissionInvalid(located.problems)
    return _build(located.data, file, text)


def _build(data: dict, file: str, text: str) -> Mission:
    models = {}
    for name, spec in (data.get("models") or {}).items():
        if isinstance(spec, str):
            models[name] = Model(name, spec)
        else:
            settings = {k: v for k, v in spec.items() if k not in ("model", "default")}
            models[name] = Model(name, spec["model"], bool(spec.get("default")), settings)
    verdict = None
    if v := data.get("verdict"):
        verdict = Verdict(tuple(v["choices"]), v.get("value"), v.get("note"), tuple(v.get("cases", ())),
                          v.get("otherwise"))
    version = data.get("version")
    return Mission(
        name=data["mission"],
        steps=tuple(_step(s, ("steps", i)) for i, s in enumerate(data["steps"])),
        file=file,
        source=text,
        digest=digest_of(text),
        description=data.get("description", ""),
        version=None if version is None else str(version),
        inputs=data.get("inputs") or {},
        models=models,
        knowledge=data.get("knowledge") or {},
        integrations=data.get("integrations") or {},
        budget=data.get("budget"),
        verdict=verdict,
        key=data.get("key"),
        outputs=data.get("outputs"),
        triggers=tuple(data.get("triggers") or ()),
        notify=tuple(data.get("notify") or ()),
    )


def _step(raw: dict, path: tuple) -> Step:
    kind = next(k for k in KINDS if k in raw)
    retry = Retry()
    if r := raw.get("retry"):
        retry = Retry(
            attempts=r.get("attempts", 3),
            backoff=_duration(r.get("backoff"), 1.0),
            factor=r.get("factor", 2.0),
            max_delay=_duration(r.get("max_delay"), 300.0),
            jitter=r.get("jitter", True),
            on=tuple(r.get("on", ("any",))),
        )
    on_error = OnError()
    if (e := raw.get("on_error")) is not None:
        on_error = OnError("goto", e["goto"]) if isinstance(e, dict) else OnError(e)
    approval = None
    if (a := raw.get("approval")) is not None:
        if a == "required":
            approval = Approval(required=True)
        else:
            approval = Approval(
                required=a.get("required", False),
                auto_approve_when=a.get("auto_approve_when"),
                reason=a.get("reason"),
                explain=a.get("explain"),
                timeout=seconds(a.get("timeout")),
                on_reject=a.get("on_reject"),
                on_timeout=a.get("on_timeout"),
                on_duplicate=a.get("on_duplicate", "ask"),
                recheck=tuple(a.get("recheck", ())),
                show=a.get("show"),
                approvers=tuple(a.get("approvers", ())),
                four_eyes=a.get("four_eyes", False),
                quorum=a.get("quorum", 1),
                quorum_when=a.get("quorum_when"),
            )
    children = tuple(_step(s, (*path, "steps", i)) for i, s in enumerate(raw.get("steps", ())))
    branches = tuple((name, tuple(_step(s, (*path, "parallel", "branches", name, i)) for i, s in enumerate(steps)))
                     for name, steps in raw["parallel"]["branches"].items()) if kind == "parallel" else ()
    return Step(
        id=raw["id"],
        kind=kind,
        spec=raw[kind],
        path=path,
        name=raw.get("name"),
        description=raw.get("description"),
        when=raw.get("when"),
        retry=retry,
        timeout=seconds(raw.get("timeout")),
        on_error=on_error,
        approval=approval,
        budget=raw.get("budget"),
        arguments=raw.get("arguments") if kind == "tool" else None,
        trust=raw.get("trust"),
        trust_reason=raw.get("trust_reason"),
        steps=children,
        item_name=raw.get("as", "item"),
        concurrency=raw["parallel"].get("concurrency", len(branches)) if kind == "parallel" else raw.get("concurrency", 1),
        branches=branches,
        inputs=raw.get("inputs") if kind == "mission" else None,
    )


MAX_DEPTH = 5  # missions running missions: how deep a chain of mission steps may go


def submission_path(mission: Mission, step: Step) -> Path:
    """The file a ``mission:`` step runs, relative to its own mission's file."""
    return (Path(mission.file).resolve().parent / step.spec).resolve()


def descendants(mission: Mission, _seen: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Every mission a mission runs through ``mission:`` steps, however deep, by absolute path:
    ``{path: {source, digest}}``: journaled with a run, so a resumed run runs the same children."""
    found: dict[str, dict] = {}
    for step in mission.walk():
        if step.kind != "mission":
            continue
        path = str(submission_path(mission, step))
        if path in found or path in _seen:
            continue  # (a cycle is a validation error; here it only must not loop)
        text = read_source(path)
        child = loads(text, path)
        found[path] = {"source": text, "digest": child.digest}
        found.update(descendants(child, _seen | {path}))
    return found


def missions_in(paths: list[Path]) -> list[Path]:
    """The mission files a service or worker watches: those named, and the ``*.yaml`` below the folders named (not test files)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.y*ml") if not p.name.endswith((".test.yaml", ".test.yml"))
                            and p.suffix in (".yaml", ".yml") and "data" not in p.relative_to(path).parts)
        elif path.is_file():
            found.append(path)
    return found
