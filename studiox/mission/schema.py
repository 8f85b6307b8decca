"""The mission JSON Schema: where it lives, and its errors in words people understand."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from ..errors import Problem, suggest
from .yamlread import Located, render_path

_HERE = Path(__file__).resolve().parent
# In a wheel the schema is packaged beside this module; in a source checkout it is ../schemas.
_CANDIDATES = (_HERE / "mission.schema.json", _HERE.parents[1] / "schemas" / "mission.schema.json")

_TYPE_WORDS = {
    "object": "a mapping (key: value lines)",
    "array": "a list ('- ' items)",
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "nothing (null)",
}

_PATTERN_HELP = {
    r"^[a-z][a-z0-9_]*$": "is not a valid name: use lowercase letters, digits and '_', starting with a "
    "letter (for example '{suggest}')",
    r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$": "is not a duration: write for example '30s', '5m', '1h30m' or '2d'",
    r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_.-]+$": "must name a tool as INTEGRATION.TOOL, for example 'erp.check_budget'",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "is not a valid mission name: use letters, digits, '-', '_' and '.', "
    "without spaces (for example '{suggest}')",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "is not an environment variable name",
    r"^https?://": "must be a URL starting with http:// or https://",
    r"\$\{\{": "must be an expression written ${{ ... }}",
}


def schema_path() -> Path:
    """Where the mission schema file is, installed or in a checkout."""
    for candidate in _CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("mission.schema.json is missing from this studiox installation")  # a broken install


@cache
def mission_schema() -> dict:
    """The mission JSON Schema (2020-12) as data."""
    return json.loads(schema_path().read_text(encoding="utf-8"))


@cache
def _validator():
    import jsonschema  # import here: `studiox --help` should not pay for it

    return jsonschema.Draft202012Validator(mission_schema())




def check(located: Located, validator=None) -> list[Problem]:
    """Every schema problem of a loaded mission (or of a file ``validator`` checks), located and
    worded for people."""
    problems: dict[tuple, Problem] = {}
    for error in (validator or _validator()).iter_errors(located.data):
        for path, message, on_key in _translate(error):
            line, col = located.where(path, key=on_key)
            problem = Problem(located.file, line, col, render_path(located.data, path), message)
            problems.setdefault((line, col, message), problem)
    return sorted(problems.values(), key=lambda p: (p.line, p.column))


def _describe_type(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value}'" if len(value) < 40 else "text"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _expected(types) -> str:
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


def _translate(error):
    """Yield (path, message, points_at_key) for one jsonschema error."""
    path = tuple(error.absolute_path)
    v, inst, sch = error.validator, error.instance, error.schema
    if v == "type":
        yield path, f"expected {_expected(error.validator_value)}, but found {_describe_type(inst)}", False
    elif v == "required":
        missing = [k for k in error.validator_value if k not in inst]
        for key in missing:
            if key == "id" and len(path) >= 2 and "steps" in path:
                yield path, "this step has no 'id'; give it a unique name, for example 'id: check_budget'", False
            else:
                yield path, f"the key '{key}' is missing here, and it is required", False
    elif v in ("additionalProperties", "unevaluatedProperties"):
        known = _known_keys(sch, inst)
        for key in sorted(set(inst) - set(known)):
            yield (*path, key), _unknown_key_message(key, known, sch), True
    elif v == "enum":
        choices = ", ".join(repr(c) for c in error.validator_value)
        yield path, f"'{inst}' is not allowed here; choose one of {choices}{suggest(inst, error.validator_value)}", False
    elif v == "pattern":
        help_text = _PATTERN_HELP.get(error.validator_value, f"does not match the pattern {error.validator_value}")
        yield path, f"'{inst}' " + help_text.format(suggest=_slug(inst)), False
    elif v == "propertyNames":
        for sub in error.context:
            bad = sub.instance
            help_text = _PATTERN_HELP.get(sub.schema.get("pattern", ""), "is not a valid name")
            yield (*path, bad), f"'{bad}' " + help_text.format(suggest=_slug(bad)), True
    elif v in ("oneOf", "anyOf"):
        yield from _translate_one_of(error, path)
    elif v == "not":
        yield path, "these keys cannot be used together here", False
    elif v == "minItems":
        yield path, f"needs at least {error.validator_value} item{'s' if error.validator_value != 1 else ''}", False
    elif v in ("minLength", "minProperties"):
        yield path, "must not be empty", False
    elif v == "maxLength":
        yield path, f"is longer than {error.validator_value} characters", False
    elif v in ("minimum", "exclusiveMinimum"):
        strict = "greater than" if v == "exclusiveMinimum" else "at least"
        yield path, f"must be {strict} {error.validator_value}, not {inst}", False
    elif v == "maximum":
        yield path, f"must be at most {error.validator_value}, not {inst}", False
    elif v == "uniqueItems":
        yield path, "lists the same value twice", False
    else:
        yield path, error.message, False


def _translate_one_of(error, path):
    by_branch: dict[int, list] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    # a branch whose type fits the value is what the author meant; report that branch's errors
    def misfit(e) -> bool:  # the value is not even of the kind this branch describes
        if tuple(e.absolute_path) != path:
            return False
        if e.validator == "type":
            return True
        return e.validator == "enum" and all(type(v) is not type(e.instance) for v in e.validator_value)

    fitting = [errs for errs in by_branch.values() if not any(misfit(e) for e in errs)]
    if error.validator == "oneOf" and not error.context:
        yield path, _one_of_conflict(error), False
        return
    if len(fitting) == 1:
        other = [b for b in error.validator_value if isinstance(b, dict) and b.get("required") == ["goto"]]
        for sub in fitting[0]:
            for sub_path, message, on_key in _translate(sub):
                if sub.validator == "enum" and other:  # on_error: also {goto: STEP}
                    message += ", or {goto: STEP}"
                yield sub_path, message, on_key
        return
    if len(fitting) > 1:
        yield path, _one_of_conflict(error), False
        return
    types = []
    for branch in error.validator_value:
        t = branch.get("type") or ("a choice of " + ", ".join(map(repr, branch["enum"])) if "enum" in branch else None)
        if t:
            types.append(_expected(t) if t in _TYPE_WORDS or isinstance(t, list) else t)
    yield path, f"expected {' or '.join(types) or 'a different value'}, but found {_describe_type(error.instance)}", False


def _one_of_conflict(error) -> str:
    keys = [b.get("required", [None])[0] for b in error.validator_value if isinstance(b, dict) and b.get("required")]
    keys = [k for k in keys if k]
    if keys:
        return "use exactly one of " + " or ".join(f"'{k}'" for k in keys) + " here"
    return "this value matches more than one of its allowed forms"


def _known_keys(sch: dict, inst) -> list[str]:
    keys = list(sch.get("properties", {}))
    for part in sch.get("allOf", []):
        cond = part.get("if", {}).get("required", [])
        if isinstance(inst, dict) and all(k in inst for k in cond):
            keys += list(part.get("then", {}).get("properties", {}))
    return keys


def _unknown_key_message(key: str, known: list[str], sch: dict) -> str:
    for part in sch.get("allOf", []):  # a key of another step kind
        kind = part.get("if", {}).get("required", [None])[0]
        if key in part.get("then", {}).get("properties", {}) and key != kind:
            return f"unknown key '{key}' — '{key}' belongs to a '{kind}' step"
    kinds = [p.get("if", {}).get("required", [None])[0] for p in sch.get("allOf", [])]
    return f"unknown key '{key}'{suggest(key, known + [k for k in kinds if k])}"


def _slug(text) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(text))  # checkBudget → check_Budget
    slug = re.sub(r"[^a-z0-9_]+", "_", spaced.lower()).strip("_")
    return slug if slug and slug[0].isalpha() else f"x_{slug}" if slug else "my_name"
