"""Values as people write and read them: numbers with thousands separators, yes/no, JSON.

Used by the terminal prompt to show arguments and to read edited ones against the tool's schema.
"""

from __future__ import annotations

import json
import math
import re


def human(value) -> str:
    """A value as people read it: numbers with thousands separators (amounts with two decimals), text as is.

    Integers: ``1780`` → ``1,780``. Floats with at most two decimals: ``1700.0`` → ``1,700.00``;
    others keep every digit: ``0.125`` → ``0.125``. Empty text, text with surrounding spaces or
    several lines, and anything else (lists, objects, booleans, null) are shown as JSON.
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if round(value, 2) == value and abs(value) < 1e15 else f"{value:,}"
    if isinstance(value, str):
        return value if value and value.strip() == value and "\n" not in value else json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")  # 1,700 · 1,700.00 · 12,345,678.5
_AMBIGUOUS = re.compile(r"[+-]?[1-9]\d{0,2}\.\d{3}")  # 1.700: one point seven, or (in Europe) 1700?


def parse_number(text: str) -> int | float:
    """A number as people write it, or ValueError saying how to write it.

    The rule: a point is always the decimal point. A comma is a thousands separator only where
    every comma is followed by exactly three digits (``1,700.00``, ``12,345``); spaces between
    digits are ignored (``1 700``). Anything that could be read two ways is refused rather than
    guessed: ``1,5`` and ``1.700,00`` (a decimal comma) and ``1.700`` (1.7, or 1700 written the
    European way). Without a point or an exponent the number is an integer.
    """
    raw = text.strip()
    compact = re.sub(r"(?<=\d)[ \u00a0\u202f](?=\d)", "", raw)  # 1 700, with any kind of space
    if _GROUPED.fullmatch(compact):
        compact = compact.replace(",", "")
    elif "," in compact:
        raise ValueError(f"'{raw}' is not a number: a comma only separates thousands (1,700.50); write decimals "
                         "with a point (1700.5)")
    elif _AMBIGUOUS.fullmatch(compact):
        whole = compact.replace(".", "")
        raise ValueError(f"'{raw}' could be read two ways: write {whole} (or {int(whole):,}) for the whole number, "
                         f"or {compact.rstrip('0').rstrip('.')} for the decimal one")
    if not _NUMBER.fullmatch(compact):
        raise ValueError(f"'{raw}' is not a number (write it like 1700, 1,700.00 or 1700.5)")
    if len(compact) > 40:
        raise ValueError(f"'{_clip(raw)}' is too long to be an amount")
    number = float(compact) if any(c in compact for c in ".eE") else int(compact)
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"'{_clip(raw)}' is too large to be a number")
    return number


_YES = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}


def _types(schema: dict | None, current) -> set[str]:
    """The JSON types a field takes: from its schema, else from its current value (None: any)."""
    kind = (schema or {}).get("type")
    if kind:
        return {kind} if isinstance(kind, str) else set(kind)
    if schema and "enum" in schema:
        return {_json_type(v) for v in schema["enum"]}
    return {_json_type(current)} if current is not None else set()


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "null"


def parse_field(raw: str, schema: dict | None, current=None):
    """A typed answer as the value of a field whose schema is ``schema`` (ValueError when it cannot be).

    Numbers as :func:`parse_number` reads them, yes/no/true/false for booleans, null for null,
    text as typed for strings, and JSON for lists and objects. Without a schema the field's
    current value says what it is; with neither, JSON if it parses, else text.
    """
    text = raw.strip()
    types = _types(schema, current)
    if "null" in types and text.lower() == "null":
        return None
    if "boolean" in types and text.lower() in _YES:
        return _YES[text.lower()]
    problem = None
    if types & {"number", "integer"}:
        try:
            number = parse_number(text)
        except ValueError as e:
            problem = e
        else:
            if "integer" in types and "number" not in types and isinstance(number, float) and number.is_integer():
                number = int(number)
            if isinstance(current, (int, float)) and not isinstance(current, bool) and number == current:
                return current  # 1,700.00 for 1700 is the same amount, not an edit
            return number
    if "string" in types:
        return text
    if not types or types & {"array", "object"}:
        try:
            return json.loads(text)
        except ValueError:
            if types:
                raise ValueError(f"'{_clip(text)}' is not valid JSON") from None
            return text
    if problem is not None:
        raise problem
    raise ValueError(f"'{_clip(text)}' is not {' or '.join(sorted(types))}")


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
