"""Checks of ``mission:`` steps before anything runs: the child file exists and is valid, no
mission runs itself (through others), chains stay within MAX_DEPTH, the inputs given fit the
child's declared inputs, and what the parent reads of ``output.outputs`` the child declares."""

from __future__ import annotations

import contextvars
from pathlib import Path

from ..errors import MissionInvalid, suggest

# the mission files being checked, outermost first: a child among them is a cycle
_CHAIN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("mission_chain", default=())
OUTPUT_FIELDS = ("run", "mission", "verdict", "note", "outputs")


def child_of(file: str, written: str):
    """The child mission a ``mission:`` step names (loaded, checked), or why it cannot be."""
    from . import MAX_DEPTH, load_once

    path = str((Path(file).resolve().parent / written).resolve())
    chain = _CHAIN.get() or (str(Path(file).resolve()),)
    if path in chain:
        loop = " → ".join(Path(p).name for p in (*chain[chain.index(path):], path))
        return None, f"missions may not run themselves, through others or not: {loop}"
    if len(chain) >= MAX_DEPTH:
        return None, f"missions run missions more than {MAX_DEPTH} deep here: {' → '.join(Path(p).name for p in chain)}"
    if not Path(path).is_file():
        return None, f"the mission file '{written}' does not exist (paths are relative to this mission's file)"
    token = _CHAIN.set((*chain, path))
    try:
        return load_once(path), None
    except MissionInvalid as e:
        first = e.problems[0].render() if e.problems else ""
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        return None, f"the mission '{written}' is not valid: {first}{more}"
    finally:
        _CHAIN.reset(token)


def check_mission_step(checks, step: dict, path: tuple) -> None:
    """Problems of one ``mission:`` step, added to ``checks`` (a mission.checks._Checks)."""
    written = step.get("mission")
    if not isinstance(written, str) or not checks.check_paths:
        return
    child, why = child_of(checks.loc.file, written)
    if child is None:
        checks.add((*path, "mission"), why)
        return
    inputs = step.get("inputs")
    given: dict = inputs if isinstance(inputs, dict) else {}
    for name in given:
        if name not in child.inputs:
            checks.add((*path, "inputs", name), f"the mission {child.name} has no input '{name}'"
                       f"{suggest(name, child.inputs)} (its inputs: {', '.join(child.inputs) or 'none'})", key=True)
    for name, schema in child.inputs.items():
        if name not in given and not (isinstance(schema, dict) and "default" in schema):
            checks.add((*path, "mission"), f"the mission {child.name} needs the input '{name}': give it under "
                       "'inputs:'" + (f" ({schema['description'].strip()})" if isinstance(schema, dict)
                                      and schema.get("description") else ""))


def missing_output(checks, step: dict, fields: tuple) -> str | None:
    """What is wrong with ``steps.ID.output.FIELDS...`` of a mission step, if it is provably wrong."""
    if not fields or not checks.check_paths:
        return None
    if fields[0] not in OUTPUT_FIELDS:
        return f"a mission step's output has {', '.join(OUTPUT_FIELDS)}, not '{fields[0]}'{suggest(fields[0], OUTPUT_FIELDS)}"
    if fields[0] != "outputs" or len(fields) < 2 or not isinstance(step.get("mission"), str):
        return None
    child, _ = child_of(checks.loc.file, step["mission"])
    if child is None:
        return None  # said where the step is
    declared = list(child.outputs or {})
    if fields[1] not in declared:
        return (f"the mission {child.name} declares no output '{fields[1]}'{suggest(fields[1], declared)}"
                f" (its outputs: {', '.join(declared) or 'none; declare them under outputs:'})")
    return None
