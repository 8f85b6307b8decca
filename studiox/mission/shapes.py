"""The shape of a step's output as the mission declares it: a worker's output schema, a set step's keys,
the fixed fields of a retrieve or branch step, and a foreach's list of items (each mapping the loop's
steps to their outputs).

Used to check references such as ``steps.extract.output.totl``, or ``r.classify.output.label`` in
``[... for r in steps.triage.output]``, before anything runs; a shape left open (no schema,
additionalProperties, oneOf, a computed index, a tool's result) is never complained about.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from ..expressions.syntax import EACH, Path

_OPEN_SHAPES = ("oneOf", "anyOf", "allOf", "not", "if", "$ref", "$dynamicRef", "patternProperties",
                "unevaluatedProperties", "dependentSchemas", "prefixItems")
STEP_FIELDS = ("output", "status", "error")
_FIXED = {"retrieve": ("query", "passages", "citations", "text"), "branch": ("goto", "case")}


def worker_output(spec: dict) -> dict:
    """The JSON Schema a worker's answer must fit: its declared ``output``, else text."""
    return spec.get("output") or {"type": "string"}


def undeclared_in_schema(schema: dict, fields: tuple) -> tuple[int, list] | None:
    """``(i, declared names)`` when ``fields[i]`` is not a property the JSON Schema declares there;
    None when every field is declared, or the schema leaves that shape open."""
    node = schema
    for i, field_ in enumerate(fields):
        if not isinstance(node, dict) or any(k in node for k in _OPEN_SHAPES):
            return None
        types = node.get("type")
        types = [types] if isinstance(types, str) else types if isinstance(types, list) else []
        if isinstance(field_, int) or field_ is EACH:
            if "array" not in types or not isinstance(node.get("items"), dict):
                return None
            node = node["items"]
            continue
        props = node.get("properties")
        if not isinstance(props, dict) or (types and "object" not in types) or \
                node.get("additionalProperties", False) is not False:
            return None
        if field_ not in props:
            return i, list(props)
        node = props[field_]
    return None


def undeclared_in_value(value, fields: tuple) -> tuple[int, list] | None:
    """The same for a value written out in the mission (a set step's mapping): text, which may be an
    expression, leaves the shape open."""
    for i, field_ in enumerate(fields):
        if isinstance(field_, int) and isinstance(value, list) and -len(value) <= field_ < len(value):
            value = value[field_]
        elif isinstance(field_, str) and isinstance(value, dict):
            if field_ not in value:
                return i, list(value)
            value = value[field_]
        else:
            return None
    return None


def render_fields(fields: tuple) -> str:
    return "".join("[*]" if f is EACH else f"[{f}]" if isinstance(f, int) else f".{f}" for f in fields).lstrip(".")


def written(path: Path) -> str:
    """A path as an expression writes it: ``r.classify['a b'][0]``."""
    out = str(path[0])
    for part in path[1:]:
        out += f".{part}" if isinstance(part, str) and part.isidentifier() else f"[{part!r}]"
    return out


def output_problem(steps: Mapping[str, object], full: Path, as_written: Path) -> str | None:
    """What is provably wrong with reading ``full`` (``('steps', ID, 'output', ...)``), written
    ``as_written`` (the same, or through a comprehension's variable, which stands for the start of
    ``full``); None when nothing is. ``steps`` maps each step id to the step as written."""
    if len(full) < 4 or full[0] != "steps" or full[2] != "output" or not isinstance(full[1], str):
        return None
    return _Reading(steps, full, as_written).output_of(full[1], 3, in_item=False)


class _Reading:
    """One path being followed through the outputs it reads; ``k``: how many parts of the full path
    the variable it is written with stands for, beyond its own (a problem there is the list's)."""

    def __init__(self, steps: Mapping[str, object], full: Path, as_written: Path):
        self.steps, self.full, self.as_written = steps, full, as_written
        self.k = len(full) - len(as_written)

    def shown(self, j: int) -> str:
        """The written path up to part ``j`` of the full one."""
        return written(self.as_written[: j - self.k + 1])

    def instead(self, j: int, word: str) -> str:
        """The written path with part ``j`` replaced by ``word``."""
        return written((*self.as_written[: j - self.k], word, *self.as_written[j - self.k + 1:]))

    def output_of(self, sid: str, j: int, *, in_item: bool) -> str | None:
        step = self.steps.get(sid)
        if j >= len(self.full) or not isinstance(step, dict):
            return None
        if "foreach" in step:
            return self.item_of(sid, step, j)
        found = _undeclared(step, self.full[j:])
        if found is None:
            return None
        i, declared, what = found
        at = j + i
        name = self.full[at]
        if at < self.k:
            return None  # inside what the variable stands for: the reference to its list says so
        if in_item and i == 0 and name in STEP_FIELDS:
            return self.step_field_of_an_item(sid, j)
        under = render_fields(self.full[j:at])
        message = f"the output of the step '{sid}' has no field '{name}'{f' under {under!r}' if under else ''}"
        close = _close(name, declared)
        if self.k or in_item:  # read through a loop: say which path, and what to write instead
            message = f"'{self.shown(at)}' does not exist: " + message
            hint = f" — did you mean '{self.instead(at, close)}'?" if close else ""
        else:
            hint = f" — did you mean '{close}'?" if close else ""
        return message + (hint or f"; {what} {', '.join(map(str, declared[:10]))}")

    def step_field_of_an_item(self, sid: str, j: int) -> str:
        """``r.classify.output``: an item of a loop's output already holds each step's output."""
        if self.full[j] != "output":
            return (f"'{self.shown(j)}' does not exist: an item of a loop's output holds only the output of each "
                    f"of its steps, not its {self.full[j]} ('{self.shown(j - 1)}' is the output of '{sid}')")
        head = (f"'{self.shown(j)}' does not exist: '{self.shown(j - 1)}' is already the output of the step "
                f"'{sid}' (an item of a loop's output maps each of its steps to its output)")
        fixed_full = (*self.full[:j], *self.full[j + 1:])
        fixed = (*self.as_written[: j - self.k], *self.as_written[j - self.k + 1:])
        rest = _Reading(self.steps, fixed_full, fixed).output_of(sid, j, in_item=True)
        return head + (f" — did you mean '{written(fixed)}'?" if rest is None else f"; and {rest}")

    def item_of(self, sid: str, step: dict, j: int) -> str | None:
        """Part ``j`` reads the output of the loop ``sid``: a list of items, each mapping the loop's
        steps to their outputs."""
        inner = [s["id"] for s in step.get("steps") or [] if isinstance(s, dict) and isinstance(s.get("id"), str)]
        part = self.full[j]
        if isinstance(part, str):
            if j <= self.k:
                return None
            hint = (f"; each item holds the outputs of its steps: [r.{part} for r in {self.shown(j - 1)}]"
                    if part in inner else "")
            return f"'{self.shown(j - 1)}' is a list, one item per element of the loop '{sid}', so it has no " \
                   f"field '{part}'{hint}"
        if j + 1 >= len(self.full) or not isinstance(self.full[j + 1], str):
            return None
        name = self.full[j + 1]
        if name in inner:
            return self.output_of(name, j + 2, in_item=True)
        if j + 1 < self.k or not inner:
            return None
        close = _close(name, inner)
        return (f"the loop '{sid}' has no step '{name}', so '{self.shown(j + 1)}' does not exist (an item of the "
                f"loop's output holds the output of each of its steps: {', '.join(inner)})"
                + (f" — did you mean '{self.instead(j + 1, close)}'?" if close else ""))


def _undeclared(step: dict, fields: tuple) -> tuple[int, list, str] | None:
    """Where ``fields`` leaves the output a step declares: ``(i, what is declared there, how to say it)``."""
    if isinstance(step.get("worker"), dict) and isinstance(step["worker"].get("output"), dict):
        found = undeclared_in_schema(step["worker"]["output"], fields)
        return None if found is None else (*found, "its output schema declares")
    if isinstance(step.get("set"), dict):
        found = undeclared_in_value(step["set"], fields)
        return None if found is None else (*found, "the fields there are")
    for kind, names in _FIXED.items():
        if kind in step and isinstance(fields[0], str) and fields[0] not in names:
            return 0, list(names), f"a {kind} step gives"
    return None


def _close(word: str, choices) -> str | None:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None
