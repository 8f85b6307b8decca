"""Corrections a person makes to a proposed action before approving it (``--set``, the prompt's edit).

Each is checked before anything is recorded: by name against the action and its tool's schema,
by value against the field's schema, and as a whole against the tool's input schema.
"""

from __future__ import annotations

import json

from .errors import DecisionError, suggest
from .governance import Action, Decision


def parse_edits(pairs: list[str], decision: Decision | None = None) -> dict:
    """``--set NAME=VALUE`` pairs as new argument values, each checked before anything is recorded.

    With the decision: a name the action does not have (nor its tool's input schema) is refused
    with the names it does have, and each value is read as its field's schema says (numbers as
    people write them: ``1,700.00``, ``1700``); a value that cannot fit is refused naming the field.
    Without one: JSON values are parsed, else text.
    """
    from .values import parse_field

    action = decision.request["action"] if decision else None
    schema = (decision.request.get("input_schema") or {}) if decision else {}
    fields = schema.get("properties") or {}
    known = [*(action["arguments"] if action else {}), *(n for n in fields if action and n not in action["arguments"])]
    edits = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DecisionError(f"--set '{pair}' must be written NAME=VALUE")
        if action is None:
            try:
                edits[name] = json.loads(raw)
            except ValueError:
                edits[name] = raw
            continue
        if action["kind"] == "tool" and name not in known:
            raise DecisionError(f"--set {name}: {action['target']} has no argument '{name}'{suggest(name, known)} "
                                f"(its arguments: {', '.join(known) or 'none'}); nothing was recorded")
        try:
            edits[name] = parse_field(raw, fields.get(name), action["arguments"].get(name))
        except ValueError as e:
            raise DecisionError(f"--set {name}: {e}; nothing was recorded") from None
    return edits


def edited_action(decision: Decision, edits: dict) -> Action:
    """The proposed action with corrected arguments, checked again against the tool's input schema."""
    proposed = Action.from_dict(decision.request["action"])
    if proposed.kind == "step":
        raise DecisionError(f"decision {decision.id} approves a step ({proposed.target}), which has no arguments "
                            "to correct; approve or reject it as it is")
    if proposed.kind == "budget":
        raise_by = edits.get("raise_by")
        if set(edits) != {"raise_by"} or isinstance(raise_by, bool) or not isinstance(raise_by, (int, float)) \
                or raise_by <= 0:
            raise DecisionError("a budget decision can only change how much more to allow: --set raise_by=N "
                                "(a positive number)")
    arguments = {**proposed.arguments, **edits}
    schema = decision.request.get("input_schema")
    if schema:
        import jsonschema

        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(arguments), key=lambda e: e.path)
        if errors:
            raise DecisionError("the edited arguments do not fit the tool: " + "; ".join(
                f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors))
    return proposed.with_arguments(arguments)
