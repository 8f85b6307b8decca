"""A run's inputs: read from ``--input NAME=VALUE``, ``--input NAME=@FILE`` and ``--inputs FILE``,
then checked against the mission's input schemas before anything runs.

Each value, and each file, is at most ``STUDIOX_MAX_INPUT_BYTES`` (default 4 MB): inputs are
journaled whole, and a run's inputs are read back on every resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputsInvalid, MissionInvalid
from ..state.store import unstorable
from ..units import human_size
from . import Mission, yamlread
from .schema import suggest

DEFAULT_MAX_BYTES = 4_000_000


def max_bytes() -> int:
    """The size limit of one input value or file: ``STUDIOX_MAX_INPUT_BYTES``, else 4 MB."""
    raw = os.environ.get("STUDIOX_MAX_INPUT_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise InputsInvalid(f"STUDIOX_MAX_INPUT_BYTES must be a whole number of bytes, such as 10000000, "
                            f"not '{_shown(raw)}'")
    return limit


def _too_big(what: str, size: str, limit: int, per: str) -> InputsInvalid:

    return InputsInvalid(f"{what} is {size}, over the limit of {human_size(limit)} per {per}; pass a smaller one, "
                         "or raise the limit with STUDIOX_MAX_INPUT_BYTES=BYTES")


def _shown(text: str) -> str:
    """Text as it can be printed: bytes that were not UTF-8 (surrogate escapes) shown as \\xff."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _not_utf8(text: str) -> str | None:
    """Where ``text`` (from the command line) holds bytes that are not UTF-8, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"
        return f"{byte} at character {e.start + 1}"
    return None


def _read_file(path: str, what: str, per: str = "input") -> str:
    """The UTF-8 text of a file, read no further than the size limit."""
    limit = max_bytes()
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
            if len(data) > limit:

                whole = os.fstat(f.fileno()).st_size
                size = human_size(whole) if whole > limit else f"more than {human_size(limit)}"
                raise _too_big(f"{what}: '{_shown(path)}'", size, limit, f"{per} file" if per != "input" else per)
    except FileNotFoundError:
        raise InputsInvalid(f"{what}: the file '{_shown(path)}' does not exist") from None
    except OSError as e:
        raise InputsInvalid(f"{what}: cannot read '{_shown(path)}' ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputsInvalid(f"{what}: '{_shown(path)}' is not UTF-8 text (byte 0x{data[e.start]:02x} at byte "
                            f"{e.start + 1}); convert it to UTF-8 first") from None


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
        data = _parse_structured(_read_file(file, "--inputs", per="inputs"), file, "--inputs")
        if not isinstance(data, dict):
            raise InputsInvalid(f"--inputs: '{file}' must hold a mapping of input names to values")
        values.update(data)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputsInvalid(f"--input '{_shown(pair)}' must be written NAME=VALUE or NAME=@FILE")
        if where := _not_utf8(name):
            raise InputsInvalid(f"--input '{_shown(name)}': the name is not UTF-8 text ({where}); input names are "
                                "written in the mission, in UTF-8")
        schema = mission.inputs.get(name, {})
        what = f"--input {name}"
        if not raw.startswith("@"):
            if where := _not_utf8(raw):
                raise InputsInvalid(f"{what}: the value is not UTF-8 text ({where}); pass it in UTF-8, or put it "
                                    f"in a UTF-8 file and pass {name}=@FILE")
            size = len(raw.encode("utf-8"))
            if size > max_bytes():

                raise _too_big(f"{what}: the value", human_size(size), max_bytes(), "input")
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
        elif found := unstorable(values[name]):
            path, problem = found
            problems.append(f"the input '{name}{path}' is {problem}, which JSON cannot hold (inputs are kept as "
                            "JSON); give a finite number, null or valid text")
        result[name] = values[name]
    if problems:
        raise InputsInvalid(f"{mission.file}: the run's inputs do not fit the mission:\n  " + "\n  ".join(problems))
    return result
