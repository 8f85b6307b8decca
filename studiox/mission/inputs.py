"""A run's inputs: read from ``--input NAME=VALUE``, ``--input NAME=@FILE`` and ``--inputs FILE``,
then checked against the mission's input schemas before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputsInvalid, MissionInvalid
from . import Mission, yamlread
from .schema import suggest


def _read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputsInvalid(f"{what}: the file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputsInvalid(f"{what}: cannot read '{path}' as UTF-8 text ({e})") from None


def _parse_structured(text: str, path: str, what: str):
    if Path(path).suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as e:
            raise InputsInvalid(f"{what}: '{path}' is not valid JSON: {e}") from None
    try:  # YAML (a superset of JSON), read with the same limits as missions: no alias bombs
        return yamlread.load(path, text).data
    except MissionInvalid as e:
        raise InputsInvalid(f"{what}: {e.render()}") from None


def _wants_text(schema: dict) -> bool:
    return schema.get("type") == "string"


def collect(mission: Mission, pairs: list[str], files: list[str]) -> dict:
    """The inputs of a run from the command line, with defaults applied, checked against the schemas."""
    values: dict = {}
    for file in files:
        data = _parse_structured(_read_file(file, "--inputs"), file, "--inputs")
        if not isinstance(data, dict):
            raise InputsInvalid(f"--inputs: '{file}' must hold a mapping of input names to values")
        values.update(data)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputsInvalid(f"--input '{pair}' must be written NAME=VALUE or NAME=@FILE")
        schema = mission.inputs.get(name, {})
        what = f"--input {name}"
        if raw.startswith("@"):
            text = _read_file(raw[1:], what)
            values[name] = text if _wants_text(schema) else _parse_structured(text, raw[1:], what)
        elif _wants_text(schema):
            values[name] = raw
        else:
            try:
                values[name] = json.loads(raw)
            except ValueError:
                values[name] = raw  # plain words stay text; the schema check says if text is wrong
    return check(mission, values)


def check(mission: Mission, values: dict) -> dict:
    """Apply defaults and check every input; all problems are reported together."""
    import jsonschema

    problems = []
    for name in values:
        if name not in mission.inputs:
            known = ", ".join(mission.inputs) or "none"
            problems.append(f"unknown input '{name}'{suggest(name, mission.inputs)} (the mission's inputs: {known})")
    result = {}
    for name, schema in mission.inputs.items():
        if name not in values:
            if "default" in schema:
                result[name] = schema["default"]
                continue
            hint = schema.get("description", "")
            problems.append(f"the input '{name}' is required: pass --input {name}=VALUE"
                            + (f" ({hint.strip()})" if hint else ""))
            continue
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(values[name]))
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            problems.append(f"the input '{name}{where}' is not valid: {error.message}")
        result[name] = values[name]
    if problems:
        raise InputsInvalid(f"{mission.file}: the run's inputs do not fit the mission:\n  " + "\n  ".join(problems))
    return result
