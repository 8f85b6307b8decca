"""The shape of a step's output as the mission declares it: a worker's output schema, a set step's keys.

Used to check references such as ``steps.extract.output.totl`` before anything runs; a shape left
open (no schema, additionalProperties, oneOf, a computed index) is never complained about.
"""

from __future__ import annotations

_OPEN_SHAPES = ("oneOf", "anyOf", "allOf", "not", "if", "$ref", "$dynamicRef", "patternProperties",
                "unevaluatedProperties", "dependentSchemas", "prefixItems")


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
        if isinstance(field_, int):
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
    return "".join(f"[{f}]" if isinstance(f, int) else f".{f}" for f in fields).lstrip(".")
