"""The expression functions and the value rules they share: types, sizes, finite numbers."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable

from ..errors import ExpressionError
from .limits import MAX_ITEMS, MAX_NESTING, MAX_TEXT


def type_name(value: object) -> str:
    """The JSON word for a value's type, as people see it in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def quote(src: str, limit: int = 80) -> str:
    """An expression's source as quoted in a message, shortened when long."""
    return src if len(src) <= limit else src[: limit - 1] + "…"


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def need(cond: bool, message: str) -> None:
    if not cond:
        raise ExpressionError(message)


def too_large(kind: str) -> ExpressionError:
    limit = f"{MAX_TEXT:,} characters" if kind == "text" else f"{MAX_ITEMS:,} items"
    return ExpressionError(f"the expression builds a {kind} that is too large (more than {limit})")


def built(value):
    """``value``, unless it is a text or list past what an expression may build."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise too_large("text")
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise too_large("list")
    return value


def fits(value: float) -> bool:
    """Whether a number is one JSON can hold: not NaN or infinite, and no whole number past 1,024 bits."""
    return math.isfinite(value) if isinstance(value, float) else value.bit_length() <= 1024


def finite(value, what: str = "the result"):
    """``value``, unless it is a number JSON cannot hold."""
    if not fits(value):
        raise ExpressionError(f"{what} is not a finite number" if isinstance(value, float) else f"{what} is too large")
    return value


def measure(value, limit: int, per_value: int) -> tuple[int, int]:
    """``(values, characters)`` inside ``value`` (a key counts as a value, a long whole number by its
    digits), counted without recursion, and only until ``per_value * values + characters`` passes
    ``limit``: measuring never costs more than what it allows."""
    values = chars = 0
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            chars += len(v)
        elif isinstance(v, (list, dict)):
            values += 2 * len(v) if isinstance(v, dict) else len(v)
            if per_value * values + chars > limit:
                break
            if isinstance(v, dict):
                chars += sum(map(len, v))
                todo.extend(v.values())
            else:
                todo.extend(v)
        elif isinstance(v, int) and v.bit_length() > 64:
            chars += v.bit_length() // 3
        if per_value * values + chars > limit:
            break
    return values, chars


def to_json_text(value, limit: int = MAX_TEXT, *, sort_keys: bool = False) -> str:
    """``value`` as JSON text, refused when it would be longer than ``limit`` characters.

    Every value takes at least 3 characters with its separator, so a lower bound of the length is
    known before encoding; when it fits, the text is at most some times longer, and checked after."""
    values, chars = measure(value, limit, 3)
    if 3 * values + chars > limit:
        raise too_large("text")
    try:
        text = json.dumps(value, sort_keys=sort_keys, allow_nan=False)
    except RecursionError:
        raise ExpressionError("the value is nested too deeply to be written as text") from None
    except ValueError as e:  # NaN or infinity in data that did not come from JSON
        raise ExpressionError(f"the value cannot be written as JSON: {e}") from None
    if len(text) > limit:
        raise too_large("text")
    return text


def _fn_len(x):
    need(isinstance(x, (str, list, dict)), f"len() needs text, a list or a mapping, not {type_name(x)}")
    return len(x)


def _fn_number(x):
    if is_number(x):
        return x
    need(isinstance(x, str), f"number() cannot read {type_name(x)} as a number")
    try:
        value = float(x.replace(",", "").strip())
    except ValueError:
        raise ExpressionError(f"number() cannot read {quote(repr(x), 40)} as a number") from None
    need(math.isfinite(value), f"number() cannot read {quote(repr(x), 40)} as a finite number")
    return int(value) if value.is_integer() and "." not in x else value


def _fn_round(x, digits=0):
    need(is_number(x) and isinstance(digits, int), "round() needs a number and a whole number of digits")
    return round(x, digits) if digits else round(x)


def _numbers(name: str, items) -> list:
    values = items[0] if len(items) == 1 and isinstance(items[0], list) else list(items)
    need(all(is_number(v) for v in values), f"{name}() needs numbers")
    return values


def _fn_min(*items):
    values = _numbers("min", items)
    return min(values) if values else None


def _fn_max(*items):
    values = _numbers("max", items)
    return max(values) if values else None


def _fn_abs(x):
    need(is_number(x), "abs() needs a number")
    return abs(x)


def _fn_join(items: list, separator: str = ", ") -> str:
    # the size is known piece by piece before anything is joined: a separator of 50,000 characters
    # between 1,000 items would otherwise build 50 MB first
    size = len(separator) * max(len(items) - 1, 0)
    pieces = []
    for x in items:
        if size > MAX_TEXT:
            raise too_large("text")
        piece = x if isinstance(x, str) else to_json_text(x, MAX_TEXT - size)
        size += len(piece)
        pieces.append(piece)
    if size > MAX_TEXT:
        raise too_large("text")
    return separator.join(pieces)


def _fn_split(text: str, separator: str | None = None) -> list:
    need(separator != "", "split() needs a separator that is not empty")
    # a list of many short texts needs far more memory than its text: count the pieces first
    if separator is not None:
        pieces = text.count(separator) + 1
    elif len(text) // 2 < MAX_ITEMS:
        pieces = 0  # too short to hold that many words
    else:
        pieces = sum(1 for _ in itertools.islice(re.finditer(r"\S+", text), MAX_ITEMS + 1))
    if pieces > MAX_ITEMS:
        raise too_large("list")
    return text.split(separator)


# name → (function, what each argument must be: "text", "list", "mapping", or None for anything;
# no tuple at all when the function takes any number of values and checks them itself)
_SIGNATURES: dict[str, tuple[Callable, tuple | None]] = {
    "len": (_fn_len, (None,)),
    "number": (_fn_number, (None,)),
    "string": (lambda x: x if isinstance(x, str) else to_json_text(x), (None,)),
    "round": (_fn_round, (None, None)),
    "abs": (_fn_abs, (None,)),
    "min": (_fn_min, None),  # min(list) or min(a, b, ...)
    "max": (_fn_max, None),
    "sum": (lambda xs: sum(_numbers("sum", [xs])), (None,)),
    "lower": (str.lower, ("text",)),
    "upper": (str.upper, ("text",)),
    "trim": (str.strip, ("text",)),
    "startswith": (str.startswith, ("text", "text")),
    "endswith": (str.endswith, ("text", "text")),
    "contains": (lambda container, x: inside(x, container), (None, None)),
    "join": (_fn_join, ("list", "text")),
    "split": (_fn_split, ("text", "text")),
    "keys": (lambda m: list(m), ("mapping",)),
    "values": (lambda m: list(m.values()), ("mapping",)),
    "any": (any, ("list",)),
    "all": (all, ("list",)),
    "sorted": (lambda xs: _sorted(xs), ("list",)),
    "default": (lambda x, fallback: fallback if x is None else x, (None, None)),
    "to_json": (lambda x: to_json_text(x, sort_keys=True), (None,)),
    "from_json": (lambda text: _from_json(text), ("text",)),
}
FUNCTIONS = {name: fn for name, (fn, _) in _SIGNATURES.items()}
_KINDS = {"text": str, "list": list, "mapping": dict}
CONSTANT_TIME = frozenset({"len", "round", "abs", "default"})  # whatever their data, they do not go through it


def call_function(name: str, args: list):
    """Call one of the expression functions, checking what its arguments are first."""
    fn, kinds = _SIGNATURES[name]
    if kinds is None:  # any number of values of any kind: the function checks them
        return fn(*args)
    if len(args) > len(kinds):
        raise ExpressionError(f"{name}() takes at most {len(kinds)} value{'s' if len(kinds) > 1 else ''}")
    for arg, kind in zip(args, kinds, strict=False):
        if kind is not None and not isinstance(arg, _KINDS[kind]):
            raise ExpressionError(f"{name}() needs {'a ' + kind if kind != 'text' else 'text'}, not {type_name(arg)}")
    try:
        return fn(*args)
    except TypeError:
        raise ExpressionError(f"{name}() was called with the wrong number of values") from None


def _sorted(xs: list) -> list:
    try:
        return sorted(xs)
    except TypeError:
        raise ExpressionError("sorted() needs a list of numbers or a list of texts") from None


def _no_constant(name: str):
    raise ExpressionError(f"from_json() was given '{name}', which is not a JSON number")


def _json_float(text: str) -> float:
    return finite(float(text), f"the number {quote(text, 40)} given to from_json()")


def _from_json(s: str):
    try:
        value = json.loads(s, parse_constant=_no_constant, parse_float=_json_float)
    except ValueError as e:
        raise ExpressionError(f"from_json() was given text that is not JSON: {e}") from None
    except RecursionError:
        raise ExpressionError("from_json() was given JSON nested too deeply") from None
    depth, todo = 0, [(value, 1)]
    while todo:  # data nested deeper than this cannot be written back out safely
        v, depth = todo.pop()
        need(depth <= MAX_NESTING, f"from_json() was given JSON nested more than {MAX_NESTING} levels deep")
        if isinstance(v, (list, dict)):
            todo.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return value


def inside(item, container) -> bool:
    if isinstance(container, str):
        need(isinstance(item, str), f"cannot look for {type_name(item)} inside text")
        return item in container
    if isinstance(container, dict):
        return isinstance(item, str) and item in container  # a mapping's keys are text
    if isinstance(container, list):
        return item in container
    if container is None:
        return False
    raise ExpressionError(f"cannot look inside {type_name(container)}")


