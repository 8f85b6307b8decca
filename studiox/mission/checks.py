"""Semantic checks of a mission: what a JSON Schema cannot say.

Duplicate step ids, expressions (syntax, and every name they read), references to models,
knowledge sources, integrations and steps, jumps, unreachable steps, unbounded loops, secrets
written in the file. The checks read plain data defensively, so they still report what they can
when the schema check has already found problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import expressions as ex
from ..errors import Problem
from .compose_checks import check_mission_step, missing_output
from .schema import suggest
from .shapes import output_problem
from .yamlread import Located, render_path

KINDS = ("worker", "tool", "retrieve", "set", "foreach", "parallel", "mission", "branch", "fail", "finish")
ROOTS = ("inputs", "steps", "mission", "run")
STEP_FIELDS = ("output", "status", "error")
_SECRET_HEADER = re.compile(r"authorization|token|secret|password|cookie|api[-_]?key", re.I)
_SECRET_ENV = re.compile(r"token|secret|password|api_?key|credential", re.I)


@dataclass
class _Scope:
    """What an expression at some place in the mission may read."""

    visible: frozenset[str]  # step ids that have run before this place
    current: str | None = None  # the step being checked
    loop_vars: frozenset[str] = frozenset()
    extra: frozenset[str] = frozenset()  # e.g. 'args' inside an approval rule


@dataclass
class _StepInfo:
    path: tuple
    siblings: tuple  # path of the list that holds the step
    inside: str | None  # id of the enclosing foreach, if any


@dataclass
class _Checker:
    loc: Located
    check_paths: bool = True
    problems: list[Problem] = field(default_factory=list)
    steps: dict[str, _StepInfo] = field(default_factory=dict)
    step_values: dict[str, object] | None = None  # each step as written, by id (once all are collected)

    def add(self, path: tuple, message: str, *, key: bool = False, offset: int | None = None) -> None:
        """A problem at ``path`` (its key, with ``key``; character ``offset`` inside its text, when given)."""
        line, col = self.loc.where(path, key=key) if offset is None else self.loc.where_inside(path, offset)
        self.problems.append(Problem(self.loc.file, line, col, render_path(self.loc.data, path), message))

    @property
    def data(self) -> dict:
        data = self.loc.data
        return data if isinstance(data, dict) else {}

    def section(self, name: str) -> dict:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    # ------------------------------------------------------------------ driver

    def run(self) -> list[Problem]:
        steps = self.data.get("steps")
        steps = steps if isinstance(steps, list) else []
        self.collect(steps, ("steps",), None)
        self.check_models()
        self.check_integrations()
        self.check_inputs()
        if self.check_paths:
            self.check_knowledge()
        self.check_list(steps, ("steps",), frozenset(), frozenset())
        top_ids = [s.get("id") for s in steps if isinstance(s, dict)]
        self.check_verdict(top_ids)
        for name, value in self.section("outputs").items():  # computed as the run finishes
            for sub, text in ex.templates_in(value, ("outputs", name)):
                self.check_text(text, sub, _Scope(frozenset(i for i in top_ids if isinstance(i, str))))
        if isinstance(self.data.get("key"), str):  # set once the steps it reads have run: any top-level step
            self.check_text(self.data["key"], ("key",), _Scope(frozenset(i for i in top_ids if isinstance(i, str))))
        return self.problems

    def collect(self, steps: list, path: tuple, inside: str | None) -> None:
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("id"), str):
                continue
            sid = step["id"]
            if sid in self.steps:
                first = self.loc.where((*self.steps[sid].path, "id"))[0]
                self.add((*path, i, "id"), f"the step id '{sid}' is already used on line {first}; "
                         "step ids must be unique in a mission")
            else:
                self.steps[sid] = _StepInfo((*path, i), path, inside)
            if isinstance(step.get("steps"), list):
                self.collect(step["steps"], (*path, i, "steps"), sid)
            for name, branch in _branches(step):
                self.collect(branch, (*path, i, "parallel", "branches", name), sid)

    # ------------------------------------------------------------------ sections

    def check_models(self) -> None:
        defaults = [n for n, m in self.section("models").items() if isinstance(m, dict) and m.get("default")]
        for extra in defaults[1:]:
            self.add(("models", extra, "default"), f"more than one model is marked default ('{defaults[0]}' "
                     f"and '{extra}'); mark only one")

    def check_integrations(self) -> None:
        for name, spec in self.section("integrations").items():
            if not isinstance(spec, dict):
                continue
            for header, value in (spec.get("headers") or {}).items():
                if isinstance(value, str) and _SECRET_HEADER.search(header):
                    self.add(("integrations", name, "headers", header), f"the header '{header}' looks like a "
                             f"secret written in the file; read it from the environment instead: "
                             f"{{from_env: {name.upper()}_{_env_name(header)}}}")
            for var, value in (spec.get("env") or {}).items():
                if isinstance(value, str) and _SECRET_ENV.search(var):
                    self.add(("integrations", name, "env", var), f"'{var}' looks like a secret written in the "
                             f"file; read it from the environment instead: {{from_env: {var}}}")

    def check_inputs(self) -> None:
        for name, spec in self.section("inputs").items():
            if isinstance(spec, dict):
                self.check_json_schema(spec, ("inputs", name), f"the input '{name}'")

    def check_json_schema(self, spec: dict, path: tuple, what: str) -> None:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(spec)
        except jsonschema.SchemaError as e:
            if e.path and e.path[-1] == "type":
                types = ("string", "number", "integer", "boolean", "array", "object", "null")
                message = (f"'{e.instance}' is not a JSON Schema type; use one of {', '.join(types)}"
                           f"{suggest(e.instance, types)}")
            else:
                message = f"{what} is not a valid JSON Schema: {e.message}"
            self.add((*path, *e.path), message)
            return
        if "default" in spec:
            try:
                jsonschema.validate(spec["default"], spec, cls=jsonschema.Draft202012Validator)
            except jsonschema.ValidationError as e:
                self.add((*path, "default"), f"the default of {what} does not match its own schema: {e.message}")

    def check_knowledge(self) -> None:
        base = Path(self.loc.file).resolve().parent
        for name, spec in self.section("knowledge").items():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                if not (base / spec["path"]).exists():
                    self.add(("knowledge", name, "path"), f"the knowledge source '{name}' points to "
                             f"'{spec['path']}', which does not exist (paths are relative to the mission file)")

    # ------------------------------------------------------------------ steps

    def check_list(self, steps: list, path: tuple, outer: frozenset[str], loop_vars: frozenset[str]) -> None:
        seen: set[str] = set()
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            spath = (*path, i)
            sid = step.get("id") if isinstance(step.get("id"), str) else None
            kinds = [k for k in KINDS if k in step]
            if not kinds:
                self.add(spath, "this step has no kind; give it exactly one of: " + ", ".join(KINDS))
            elif len(kinds) > 1:
                self.add(spath, f"this step has several kinds ({', '.join(kinds)}); a step does exactly one thing, "
                         "so split it into several steps")
            scope = _Scope(frozenset(outer | seen), sid, loop_vars)
            self.check_step(step, spath, kinds[0] if len(kinds) == 1 else None, scope)
            if isinstance(step.get("steps"), list) and "foreach" in step:
                var = step.get("as", "item") if isinstance(step.get("as"), str) else "item"
                if var in ROOTS or var == "loop":
                    self.add((*spath, "as"), f"'{var}' is a reserved name; call the item something else")
                self.check_list(step["steps"], (*spath, "steps"), frozenset(outer | seen), loop_vars | {var, "loop"})
            for name, branch in _branches(step):  # each branch sees what ran before, not the other branches
                self.check_list(branch, (*spath, "parallel", "branches", name), frozenset(outer | seen), loop_vars)
            if sid:
                seen.add(sid)
        self.check_flow(steps, path)

    def check_step(self, step: dict, path: tuple, kind: str | None, scope: _Scope) -> None:
        for key, value in step.items():
            if key in ("id", "name", "description", "steps", "as", "concurrency", "retry", "timeout", "trust",
                       "trust_reason", "budget", "parallel") or (key == "mission" and kind == "mission"):
                continue
            own = _Scope(scope.visible - {scope.current}, scope.current, scope.loop_vars, scope.extra)
            if key == "approval" and isinstance(value, dict):
                with_args = _Scope(scope.visible, scope.current, scope.loop_vars, frozenset({"args"}))
                for name in ("auto_approve_when", "quorum_when"):  # rules over the action's arguments too
                    if isinstance(value.get(name), str):
                        self.check_text(value[name], (*path, key, name), with_args)
                for label, shown in (value.get("show") or {}).items() if isinstance(value.get("show"), dict) else ():
                    if isinstance(shown, str):
                        self.check_text(shown, (*path, key, "show", label), with_args)
                if "quorum_when" in value and not (isinstance(value.get("quorum"), int) and value["quorum"] > 1):
                    self.add((*path, key, "quorum_when"), "quorum_when says when a quorum applies, but there is "
                             "none; add 'quorum: N' (2 or more) beside it", key=True)
                for i, name in enumerate(value.get("recheck") or []):  # steps that ran before this one
                    if isinstance(name, str) and name not in own.visible:
                        known = sorted(own.visible)
                        self.add((*path, key, "recheck", i), f"'{name}' is not a step that runs before this one, so it "
                                 f"cannot be rechecked{suggest(name, known)}")
                for outcome in ("on_reject", "on_timeout"):  # the note ending the run is rendered then
                    note = value.get(outcome, {}).get("note") if isinstance(value.get(outcome), dict) else None
                    if isinstance(note, str):
                        self.check_text(note, (*path, key, outcome, "note"), own)
                continue
            if key == "worker" and isinstance(value, dict):
                self.check_worker(value, (*path, key), scope)
                continue
            for sub, text in ex.templates_in(value, (*path, key)):
                self.check_text(text, sub, own)
        if kind == "tool" and isinstance(step.get("tool"), str):
            self.check_tool_name(step["tool"], (*path, "tool"))
        if kind == "mission":
            check_mission_step(self, step, path)
        if kind == "retrieve" and isinstance(step.get("retrieve"), dict):
            source = step["retrieve"].get("from")
            names = self.section("knowledge")
            if isinstance(source, str) and source not in names:
                hint = suggest(source, names) or ("" if names else "; declare it under 'knowledge:'")
                self.add((*path, "retrieve", "from"), f"unknown knowledge source '{source}'{hint}")
        if kind == "finish":
            verdict = step["finish"] if isinstance(step["finish"], str) else (step["finish"] or {}).get("verdict")
            self.check_verdict_value(verdict, (*path, "finish") if isinstance(step["finish"], str)
                                     else (*path, "finish", "verdict"))
        approval = step.get("approval")
        if isinstance(approval, dict):
            for outcome in ("on_reject", "on_timeout"):
                if isinstance(approval.get(outcome), dict) and "verdict" in approval[outcome]:
                    self.check_verdict_value(approval[outcome]["verdict"], (*path, "approval", outcome, "verdict"))

    def check_worker(self, worker: dict, path: tuple, scope: _Scope) -> None:
        own = _Scope(scope.visible - {scope.current}, scope.current, scope.loop_vars)
        for key in ("instructions", "input"):
            for sub, text in ex.templates_in(worker.get(key), (*path, key)):
                self.check_text(text, sub, own)
        model = worker.get("model")
        models = self.section("models")
        if isinstance(model, str):
            if model not in models and "/" not in model:
                hint = suggest(model, models) or " — name one of 'models:', or write a litellm model such as " \
                                                 "'openai/gpt-4o-mini'"
                self.add((*path, "model"), f"unknown model '{model}'{hint}")
        elif not _has_default_model(models):
            why = "the mission declares no models" if not models else "several models are declared and none is " \
                                                                      "marked 'default: true'"
            self.add(path, f"this worker names no model, and {why}; add 'model: NAME' here")
        if isinstance(worker.get("output"), dict):
            self.check_json_schema(worker["output"], (*path, "output"), "the worker's output")
        for i, tool in enumerate(worker.get("tools") or []):
            if isinstance(tool, str):
                self.check_tool_name(tool, (*path, "tools", i))

    def check_tool_name(self, tool: str, path: tuple) -> None:
        if "." not in tool:
            return  # the schema already says how a tool is named
        integration = tool.split(".", 1)[0]
        names = self.section("integrations")
        if integration not in names:
            hint = suggest(integration, names) or ("" if names else "; declare it under 'integrations:'")
            self.add(path, f"unknown integration '{integration}'{hint}")

    # ------------------------------------------------------------------ expressions

    def check_text(self, text: str, path: tuple, scope: _Scope) -> None:
        bare = ex.bare_braces(text)
        if bare is not None:
            self.add(path, f"'{{{{ {bare} }}}}' is plain text here; studiox expressions start with a dollar sign: "
                     f"'${{{{ {bare} }}}}'")
            return
        try:
            template = ex.parse_template(text)
        except ex.ExpressionError as e:
            self.add(path, e.message, offset=e.offset or 0)
            return
        for expr, start in template.located_expressions() if template else ():
            for full, _ in expr.reference_sites():
                message = self.check_reference(ex.known_path(full), scope) or self.check_output_field(full)
                if message:
                    self.add(path, message)
            for full, written, offset in expr.item_reference_sites():  # r.x in [... for r in steps.loop.output]
                if full[0] == "steps" and not self.check_reference(ex.known_path(full[:2]), scope):
                    message = self.check_output_field(full, written)
                    if message:
                        self.add(path, message, offset=start + offset)

    def check_reference(self, chain: tuple[str, ...], scope: _Scope) -> str | None:
        root = chain[0]
        if root in scope.loop_vars or root in scope.extra:
            return None
        if root not in ROOTS:
            allowed = [*ROOTS, *scope.loop_vars, *scope.extra]
            if root in self.steps:
                return f"unknown name '{root}' — to read a step's result write 'steps.{root}.output'"
            if root in self.section("inputs"):
                return f"unknown name '{root}' — to read an input write 'inputs.{root}'"
            return f"unknown name '{root}'{suggest(root, allowed)}"
        if len(chain) < 2:
            return None
        name = chain[1]
        if root == "inputs":
            declared = self.section("inputs")
            if name not in declared:
                hint = suggest(name, declared) or ("; declare it under 'inputs:'" if not declared else "")
                return f"unknown input '{name}'{hint}"
        elif root == "steps":
            return self.check_step_reference(chain, scope)
        elif root == "mission" and name not in ("name", "version", "description"):
            return f"'mission.{name}' does not exist; a mission has name, version and description"
        elif root == "run" and name not in ("id", "started_at"):
            return f"'run.{name}' does not exist; a run has id and started_at"
        return None

    def check_step_reference(self, chain: tuple[str, ...], scope: _Scope) -> str | None:
        sid = chain[1]
        if sid not in self.steps:
            return f"unknown step '{sid}'{suggest(sid, self.steps)}"
        if sid == scope.current:
            return f"the step '{sid}' cannot read its own result"
        if sid not in scope.visible:
            inside = self.steps[sid].inside
            if inside and inside != scope.current and inside not in scope.visible | {scope.current}:
                return (f"the step '{sid}' runs inside the loop '{inside}' and cannot be read from here; "
                        f"read 'steps.{inside}.output' after the loop")
            if inside and inside in scope.visible:
                return (f"the step '{sid}' runs inside the loop '{inside}'; after the loop its results are in "
                        f"'steps.{inside}.output'")
            return f"the step '{sid}' has not run yet at this point (it comes later in the mission)"
        if len(chain) > 2 and chain[2] not in STEP_FIELDS:
            return (f"'steps.{sid}.{chain[2]}' does not exist — did you mean 'steps.{sid}.output.{chain[2]}'? "
                    "(a step has output, status and error)")
        return None

    def check_output_field(self, full: ex.Path, written: ex.Path | None = None) -> str | None:
        """What a path provably gets wrong about the output of the step it reads, where that step
        declares its output's shape (see shapes.py); ``written``: the path as written, when it goes
        through a comprehension's variable."""
        if self.step_values is None:
            self.step_values = {sid: self.loc.value_at(info.path) for sid, info in self.steps.items()}
        if len(full) >= 3 and full[0] == "steps" and full[2] == "output":
            value = self.step_values.get(full[1]) if isinstance(full[1], str) else None
            if isinstance(value, dict) and "mission" in value:  # a child run's verdict and declared outputs
                return missing_output(self, value, tuple(full[3:]))
        return output_problem(self.step_values, full, written or full)

    # ------------------------------------------------------------------ control flow

    def check_flow(self, steps: list, path: tuple) -> None:
        index = {s["id"]: i for i, s in enumerate(steps) if isinstance(s, dict) and isinstance(s.get("id"), str)}
        edges: dict[int, set[int]] = {}
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            out: set[int] = set()
            falls_through = not any(k in step for k in ("fail", "finish", "branch")) or "when" in step
            for target, tpath, kind in _jumps(step, (*path, i)):
                j = self.jump_target(target, tpath, index)
                if j is None:
                    continue
                out.add(j)
                if j <= i and kind == "branch" and not _bounded(step):
                    self.add(tpath, f"this jumps back to '{target}', which makes a loop; add 'max_iterations: N' "
                             "to the branch so that it cannot run forever")
                elif j <= i and kind != "branch":
                    self.add(tpath, f"'{target}' comes before this step; only a branch (with max_iterations) may "
                             "jump back — to try a step again, use 'retry'")
            branch = step.get("branch")
            if isinstance(branch, dict) and "otherwise" not in branch:
                falls_through = True
            if falls_through and i + 1 < len(steps):
                out.add(i + 1)
            edges[i] = out
        reached, todo = {0}, [0]
        while todo:
            for j in edges.get(todo.pop(), ()):
                if j not in reached:
                    reached.add(j)
                    todo.append(j)
        for i, step in enumerate(steps):
            if i not in reached and isinstance(step, dict):
                self.add((*path, i), f"the step '{step.get('id', i)}' can never run: no step leads to it "
                         "(the steps before it end the run or jump past it)")

    def jump_target(self, target, path: tuple, index: dict[str, int]) -> int | None:
        if not isinstance(target, str):
            return None
        if target in index:
            return index[target]
        if target in self.steps:
            self.add(path, f"cannot jump to '{target}': a jump may only go to a step in the same list of steps")
        else:
            self.add(path, f"unknown step '{target}'{suggest(target, index)}")
        return None

    # ------------------------------------------------------------------ verdict

    def check_verdict(self, top_ids: list) -> None:
        verdict = self.data.get("verdict")
        if not isinstance(verdict, dict):
            return
        scope = _Scope(frozenset(i for i in top_ids if isinstance(i, str)))
        for sub, text in ex.templates_in({k: v for k, v in verdict.items() if k != "choices"}, ("verdict",)):
            self.check_text(text, sub, scope)
        self.check_verdict_value(verdict.get("value"), ("verdict", "value"))
        for i, case in enumerate(verdict.get("cases") or []):
            if isinstance(case, dict):
                self.check_verdict_value(case.get("value"), ("verdict", "cases", i, "value"))
        if isinstance(verdict.get("otherwise"), dict):
            self.check_verdict_value(verdict["otherwise"].get("value"), ("verdict", "otherwise", "value"))

    def check_verdict_value(self, value, path: tuple) -> None:
        verdict = self.data.get("verdict")
        choices = verdict.get("choices") if isinstance(verdict, dict) else None
        if not isinstance(value, str) or "${{" in value or not isinstance(choices, list):
            return
        if value not in choices:
            self.add(path, f"'{value}' is not one of the mission's verdicts "
                     f"({', '.join(map(str, choices))}){suggest(value, choices)}")


def _jumps(step: dict, path: tuple):
    branch = step.get("branch")
    if isinstance(branch, dict):
        for i, case in enumerate(branch.get("cases") or []):
            if isinstance(case, dict):
                yield case.get("goto"), (*path, "branch", "cases", i, "goto"), "branch"
        if "otherwise" in branch:
            yield branch["otherwise"], (*path, "branch", "otherwise"), "branch"
    on_error = step.get("on_error")
    if isinstance(on_error, dict):
        yield on_error.get("goto"), (*path, "on_error", "goto"), "on_error"
    approval = step.get("approval")
    if isinstance(approval, dict):
        for outcome in ("on_reject", "on_timeout"):
            if isinstance(approval.get(outcome), dict) and "goto" in approval[outcome]:
                yield approval[outcome]["goto"], (*path, "approval", outcome, "goto"), outcome


def _bounded(step: dict) -> bool:
    return isinstance(step.get("branch"), dict) and isinstance(step["branch"].get("max_iterations"), int)


def _has_default_model(models: dict) -> bool:
    return len(models) == 1 or any(isinstance(m, dict) and m.get("default") for m in models.values())


def _env_name(header: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", header.upper()).strip("_")


def check(located: Located, *, check_paths: bool = True) -> list[Problem]:
    """Every semantic problem of a loaded mission; ``check_paths`` also checks the files it names."""
    return _Checker(located, check_paths=check_paths).run()


def _branches(step: dict) -> list[tuple[str, list]]:
    """A parallel step's branches (name, steps), as far as they are well formed."""
    spec = step.get("parallel")
    branches = spec.get("branches") if isinstance(spec, dict) else None
    if not isinstance(branches, dict):
        return []
    return [(name, steps) for name, steps in branches.items() if isinstance(steps, list)]
