"""The one expression language of missions: ``${{ ... }}``, safe by construction.

An expression is a small subset of Python's expression syntax (names, ``a.b``, ``a[0]``,
arithmetic, comparisons, ``and``/``or``/``not``, ``x if c else y``, list comprehensions and a
short list of functions), parsed with :mod:`ast` and evaluated by our own interpreter over
plain JSON data. Attribute access is key lookup on mappings, never ``getattr``: nothing can
reach Python objects, files or the network, whatever the data says (it may come from a model).
Work is bounded, so a hostile expression cannot hang or exhaust a run.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from .errors import ExpressionError

MAX_SOURCE = 2_000  # characters in one expression
MAX_NESTING = 100  # levels of an expression's syntax tree: deeper ones would exhaust Python's stack
MAX_STEPS = 200_000  # steps of work per evaluation (see _Evaluator.cost for what a step buys)
MAX_TEXT = 1_000_000  # characters in a text an expression builds
MAX_ITEMS = 100_000  # items in a list an expression builds
_ITEMS_PER_STEP = 4  # going through data costs a step per 4 values ...
_CHARS_PER_STEP = 64  # ... and per 64 characters of text
_BARE_BRACES = re.compile(r"(?<!\$)\{\{(.*?)\}\}", re.DOTALL)
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_NEVER_CLOSED = "an expression is opened with '${{' but never closed with '}}'"
_TOO_DEEP = ("the expression is nested too deeply (more than {} levels of operators, brackets or calls); "
             "split it into smaller expressions")


Path = tuple  # of str keys and int indexes, e.g. ('steps', 'extract', 'output', 'lines', 0, 'amount')


@dataclass(frozen=True)
class Expr:
    """One compiled expression: its source text and checked syntax tree."""

    source: str
    tree: ast.expr

    def references(self) -> list[tuple[str, ...]]:
        """Every data path the expression reads, e.g. ``('steps', 'extract', 'output', 'total')``.

        A path ends before its first index that is not a text (``a.b[0].c`` reads ``('a', 'b')``)."""
        return [known_path(path) for path, _ in _references(self.tree, frozenset())]

    def reference_sites(self) -> list[tuple[Path, int]]:
        """Every data path read, with its place in the source; constant whole-number indexes stay
        in the path (``a.b[0].c`` is ``('a', 'b', 0, 'c')``), a computed index ends it."""
        return [(path, _offset(self.source, node)) for path, node in _references(self.tree, frozenset())]


@dataclass(frozen=True)
class Template:
    """A text with ``${{ }}`` parts; a text that is one expression alone keeps its native type.

    ``starts`` gives, for each part, where it starts in the text (for an expression: its first
    character after ``${{`` and spaces)."""

    parts: tuple[str | Expr, ...]
    starts: tuple[int, ...] = ()

    @property
    def whole(self) -> Expr | None:
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Expr) else None

    @property
    def expressions(self) -> list[Expr]:
        return [p for p in self.parts if isinstance(p, Expr)]

    def located_expressions(self) -> list[tuple[Expr, int]]:
        """Each expression with where its source starts in the template's text."""
        return [(p, start) for p, start in zip(self.parts, self.starts, strict=True) if isinstance(p, Expr)]


def bare_braces(text: str) -> str | None:
    """The inside of a ``{{ x }}`` written without the ``$``, if the text has one."""
    m = _BARE_BRACES.search(text)
    return m.group(1).strip() if m else None


def _scan(text: str) -> Iterator[tuple[int, int, int]]:
    """``(opening, start, end)`` of each ``${{ ... }}``: where ``${{`` is, and the expression's text.

    An expression ends at the first ``}}`` outside its strings and brackets, so that
    ``${{ {'a': {'b': 1}} }}`` and ``${{ '}}' }}`` are read whole."""
    pos = 0
    while (opening := text.find("${{", pos)) != -1:
        i, quote = opening + 3, ""
        brackets: list[int] = []  # where each open bracket is
        while not (not quote and not brackets and text.startswith("}}", i)):
            if i >= len(text):
                if quote:
                    hint = f" (the text started with {quote} inside it is never closed)"
                elif brackets:
                    hint = f" (the '{text[brackets[-1]]}' inside it is never closed)"
                else:
                    hint = ""
                raise ExpressionError(_NEVER_CLOSED + hint, text, opening)
            c = text[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c in "([{":
                brackets.append(i)
            elif c in ")]}" and brackets:
                brackets.pop()
            i += 1
        yield opening, opening + 3, i
        pos = i + 2


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template | None:
    """Split ``text`` into literal and expression parts; ``None`` when it holds no expression."""
    if "${{" not in text:
        return None
    parts: list[str | Expr] = []
    starts: list[int] = []
    pos = 0
    for opening, start, end in _scan(text):
        if opening > pos:
            parts.append(text[pos:opening])
            starts.append(pos)
        source = text[start:end]
        start += len(source) - len(source.lstrip())
        try:
            parts.append(compile_expr(source))
        except ExpressionError as e:
            raise ExpressionError(e.message, source, start + (e.offset or 0)) from None
        starts.append(start)
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
        starts.append(pos)
    located = [(p, s) for p, s in zip(parts, starts, strict=True) if isinstance(p, Expr)]
    if len(located) == 1 and all(isinstance(p, Expr) or not p.strip() for p in parts):
        return Template((located[0][0],), (located[0][1],))  # one expression with spaces around keeps its type
    return Template(tuple(parts), tuple(starts))


@lru_cache(maxsize=4096)
def compile_expr(source: str) -> Expr:
    """Parse and check one expression (the text between ``${{`` and ``}}``)."""
    src = source.strip()
    if not src:
        raise ExpressionError("the expression is empty", source)
    if len(src) > MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE} characters", source)
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal": the error below says it better
            warnings.simplefilter("ignore")
            tree = ast.parse(src, mode="eval").body
    except SyntaxError as e:
        message, offset = _syntax_message(src, e)
        raise ExpressionError(message, source, offset) from None
    except (RecursionError, MemoryError):  # the parser's own stack ran out
        raise ExpressionError(_TOO_DEEP.format(MAX_NESTING), source) from None
    if _depth(tree) > MAX_NESTING:
        raise ExpressionError(_TOO_DEEP.format(MAX_NESTING), source)
    _check_syntax(tree, src)
    return Expr(src, tree)


def _depth(tree: ast.AST) -> int:
    """How many levels deep the tree goes (counted without recursion, and only just past the limit)."""
    deepest, todo = 0, [(tree, 1)]
    while todo and deepest <= MAX_NESTING:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _line_offset(src: str, lineno: int, column: int) -> int:
    """The offset in ``src`` of character ``column`` of line ``lineno`` (1-based)."""
    lines = src.split("\n")
    return sum(len(line) + 1 for line in lines[: lineno - 1]) + column


def _offset(src: str, node: ast.AST, *, end: bool = False) -> int:
    """Where a node starts (or ends) in ``src``, in characters (ast counts UTF-8 bytes)."""
    lineno = getattr(node, "end_lineno" if end else "lineno", None)
    col = getattr(node, "end_col_offset" if end else "col_offset", None)
    if lineno is None or col is None:
        return 0
    lines = src.split("\n")
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    return _line_offset(src, lineno, len(line.encode("utf-8")[:col].decode("utf-8", "ignore")))


def _quote(src: str, limit: int = 80) -> str:
    """An expression's source as quoted in a message, shortened when long."""
    return src if len(src) <= limit else src[: limit - 1] + "…"


def _syntax_message(src: str, e: SyntaxError) -> tuple[str, int | None]:
    """What is wrong, in words, and where in ``src`` when that is known."""
    for bad, good in (("&&", "and"), ("||", "or"), ("===", "==")):
        if bad in src:
            return f"'{bad}' is not part of the expression language; write '{good}'", src.index(bad)
    if m := re.search(r"(?<![=!<>])!(?!=)", src):
        return "'!' is not part of the expression language; write 'not'", m.start()
    if m := re.search(r"(?<![=!<>])=(?!=)", src):
        return "'=' assigns, which expressions cannot do; to compare, write '=='", m.start()
    where = f" at column {e.offset}" if e.offset else ""
    offset = _line_offset(src, e.lineno or 1, e.offset - 1) if e.offset and e.offset > 0 else None
    return f"the expression '{_quote(src)}' is not valid{where}: {e.msg}", offset


_ALLOWED = (
    ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
    ast.GtE, ast.In, ast.NotIn, ast.IfExp, ast.Call, ast.Constant, ast.Name, ast.Load, ast.Attribute,
    ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.ListComp, ast.GeneratorExp,
    ast.comprehension, ast.Store,
)


def _check_syntax(tree: ast.expr, src: str) -> None:
    todo: deque[tuple[ast.AST, ast.AST | None]] = deque([(tree, None)])  # breadth first, as ast.walk
    while todo:
        node, parent = todo.popleft()
        message = _refusal(node)
        if message:
            raise ExpressionError(message, src, _place(src, node, parent))
        todo.extend((child, node) for child in ast.iter_child_nodes(node))


def _refusal(node: ast.AST) -> str | None:
    """Why a node is not allowed in an expression, or None."""
    if not isinstance(node, _ALLOWED):
        return f"'{_describe(node)}' is not allowed in an expression"
    if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
        return f"the name '{node.attr}' is not allowed in an expression"
    if isinstance(node, ast.Name) and node.id.startswith("__"):
        return f"the name '{node.id}' is not allowed in an expression"
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else _describe(node.func)
            return f"unknown function '{name}'; the functions are: {', '.join(sorted(FUNCTIONS))}"
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            return f"call '{node.func.id}' with plain arguments only"
    if isinstance(node, ast.comprehension) and (node.is_async or not isinstance(node.target, ast.Name)):
        return "a comprehension takes one plain name: [x.amount for x in items]"
    if isinstance(node, ast.Constant) and not isinstance(node.value, (str, int, float, bool, type(None))):
        return f"the value {node.value!r} is not allowed in an expression"
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not _fits(node.value):
        return "this number is too large; numbers go up to about 1e308"
    return None


_OPERATORS = {ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
              ast.RShift: ">>", ast.MatMult: "@", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not"}


def _place(src: str, node: ast.AST, parent: ast.AST | None) -> int:
    """Where in ``src`` a refused node is: the name itself for ``a.__x``, the operator for ``a ** b``."""
    if isinstance(node, ast.Attribute):
        return _offset(src, node, end=True) - len(node.attr)
    if hasattr(node, "lineno") or parent is None:
        return _offset(src, node)
    after = parent.left if isinstance(parent, (ast.BinOp, ast.Compare)) else None
    symbol = _OPERATORS.get(type(node), "")
    start = _offset(src, after, end=True) if after is not None else _offset(src, parent)
    found = src.find(symbol, start) if symbol else -1
    return found if found >= 0 else _offset(src, parent)


def _describe(node: ast.AST) -> str:
    if type(node) in _OPERATORS:
        return _OPERATORS[type(node)]
    try:
        return ast.unparse(node) or type(node).__name__
    except Exception:  # noqa: BLE001 - only used for a message
        return type(node).__name__


def _references(node: ast.AST, bound: frozenset[str]) -> Iterator[tuple[Path, ast.AST]]:
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
        inner = set(bound)
        for gen in node.generators:
            yield from _references(gen.iter, frozenset(inner))
            inner.add(gen.target.id)  # type: ignore[attr-defined]
            for cond in gen.ifs:
                yield from _references(cond, frozenset(inner))
        yield from _references(node.elt, frozenset(inner))
        return
    chain = _chain(node)
    if chain is not None:
        if chain[0] not in bound and chain[0] not in _CONSTANTS:
            yield chain, node
        link = node
        while isinstance(link, (ast.Attribute, ast.Subscript)):  # indexes computed from data read data too
            if isinstance(link, ast.Subscript) and _index(link.slice) is None:
                yield from _references(link.slice, bound)
            link = link.value
        return
    if isinstance(node, ast.Call):
        for arg in node.args:
            yield from _references(arg, bound)
        return
    for child in ast.iter_child_nodes(node):
        yield from _references(child, bound)


def _index(node: ast.AST) -> str | int | None:
    """The value of a constant index (``['a']``, ``[0]``, ``[-1]``); None for a computed one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _index(node.operand)
        return -value if isinstance(value, int) else None
    return None


def _chain(node: ast.AST) -> Path | None:
    """``a.b['c'][0].d`` as ``('a', 'b', 'c', 0, 'd')``; a computed index ends the path before it."""
    parts: list[str | int] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            key = _index(node.slice)
            if key is None:
                parts = []  # a computed index (or a slice): the known path ends before it
            else:
                parts.append(key)
            node = node.value
        elif isinstance(node, ast.Name):
            return (node.id, *reversed(parts))
        else:
            return None


def known_path(path: Path) -> tuple[str, ...]:
    """The part of a path before its first whole-number index: what :meth:`Expr.references` gives."""
    for i, part in enumerate(path):
        if not isinstance(part, str):
            return tuple(path[:i])
    return tuple(path)


# ---------------------------------------------------------------------------- evaluation


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


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ExpressionError(message)


def _too_large(kind: str) -> ExpressionError:
    limit = f"{MAX_TEXT:,} characters" if kind == "text" else f"{MAX_ITEMS:,} items"
    return ExpressionError(f"the expression builds a {kind} that is too large (more than {limit})")


def _built(value):
    """``value``, unless it is a text or list past what an expression may build."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise _too_large("text")
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise _too_large("list")
    return value


def _fits(value: float) -> bool:
    """Whether a number is one JSON can hold: not NaN or infinite, and no whole number past 1,024 bits."""
    return math.isfinite(value) if isinstance(value, float) else value.bit_length() <= 1024


def _finite(value, what: str = "the result"):
    """``value``, unless it is a number JSON cannot hold."""
    if not _fits(value):
        raise ExpressionError(f"{what} is not a finite number" if isinstance(value, float) else f"{what} is too large")
    return value


def _measure(value, limit: int, per_value: int) -> tuple[int, int]:
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


def _to_json(value, limit: int = MAX_TEXT, *, sort_keys: bool = False) -> str:
    """``value`` as JSON text, refused when it would be longer than ``limit`` characters.

    Every value takes at least 3 characters with its separator, so a lower bound of the length is
    known before encoding; when it fits, the text is at most some times longer, and checked after."""
    values, chars = _measure(value, limit, 3)
    if 3 * values + chars > limit:
        raise _too_large("text")
    try:
        text = json.dumps(value, sort_keys=sort_keys, allow_nan=False)
    except RecursionError:
        raise ExpressionError("the value is nested too deeply to be written as text") from None
    except ValueError as e:  # NaN or infinity in data that did not come from JSON
        raise ExpressionError(f"the value cannot be written as JSON: {e}") from None
    if len(text) > limit:
        raise _too_large("text")
    return text


def _fn_len(x):
    _need(isinstance(x, (str, list, dict)), f"len() needs text, a list or a mapping, not {type_name(x)}")
    return len(x)


def _fn_number(x):
    if _is_number(x):
        return x
    _need(isinstance(x, str), f"number() cannot read {type_name(x)} as a number")
    try:
        value = float(x.replace(",", "").strip())
    except ValueError:
        raise ExpressionError(f"number() cannot read {_quote(repr(x), 40)} as a number") from None
    _need(math.isfinite(value), f"number() cannot read {_quote(repr(x), 40)} as a finite number")
    return int(value) if value.is_integer() and "." not in x else value


def _fn_round(x, digits=0):
    _need(_is_number(x) and isinstance(digits, int), "round() needs a number and a whole number of digits")
    return round(x, digits) if digits else round(x)


def _numbers(name: str, items) -> list:
    values = items[0] if len(items) == 1 and isinstance(items[0], list) else list(items)
    _need(all(_is_number(v) for v in values), f"{name}() needs numbers")
    return values


def _fn_min(*items):
    values = _numbers("min", items)
    return min(values) if values else None


def _fn_max(*items):
    values = _numbers("max", items)
    return max(values) if values else None


def _fn_abs(x):
    _need(_is_number(x), "abs() needs a number")
    return abs(x)


def _fn_join(items: list, separator: str = ", ") -> str:
    # the size is known piece by piece before anything is joined: a separator of 50,000 characters
    # between 1,000 items would otherwise build 50 MB first
    size = len(separator) * max(len(items) - 1, 0)
    pieces = []
    for x in items:
        if size > MAX_TEXT:
            raise _too_large("text")
        piece = x if isinstance(x, str) else _to_json(x, MAX_TEXT - size)
        size += len(piece)
        pieces.append(piece)
    if size > MAX_TEXT:
        raise _too_large("text")
    return separator.join(pieces)


def _fn_split(text: str, separator: str | None = None) -> list:
    _need(separator != "", "split() needs a separator that is not empty")
    # a list of many short texts needs far more memory than its text: count the pieces first
    if separator is not None:
        pieces = text.count(separator) + 1
    elif len(text) // 2 < MAX_ITEMS:
        pieces = 0  # too short to hold that many words
    else:
        pieces = sum(1 for _ in itertools.islice(re.finditer(r"\S+", text), MAX_ITEMS + 1))
    if pieces > MAX_ITEMS:
        raise _too_large("list")
    return text.split(separator)


# name → (function, what each argument must be: "text", "list", "mapping", or None for anything;
# no tuple at all when the function takes any number of values and checks them itself)
_SIGNATURES: dict[str, tuple[Callable, tuple | None]] = {
    "len": (_fn_len, (None,)),
    "number": (_fn_number, (None,)),
    "string": (lambda x: x if isinstance(x, str) else _to_json(x), (None,)),
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
    "contains": (lambda container, x: _in(x, container), (None, None)),
    "join": (_fn_join, ("list", "text")),
    "split": (_fn_split, ("text", "text")),
    "keys": (lambda m: list(m), ("mapping",)),
    "values": (lambda m: list(m.values()), ("mapping",)),
    "any": (any, ("list",)),
    "all": (all, ("list",)),
    "sorted": (lambda xs: _sorted(xs), ("list",)),
    "default": (lambda x, fallback: fallback if x is None else x, (None, None)),
    "to_json": (lambda x: _to_json(x, sort_keys=True), (None,)),
    "from_json": (lambda text: _from_json(text), ("text",)),
}
FUNCTIONS = {name: fn for name, (fn, _) in _SIGNATURES.items()}
_KINDS = {"text": str, "list": list, "mapping": dict}
_CONSTANT_TIME = frozenset({"len", "round", "abs", "default"})  # whatever their data, they do not go through it


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
    return _finite(float(text), f"the number {_quote(text, 40)} given to from_json()")


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
        _need(depth <= MAX_NESTING, f"from_json() was given JSON nested more than {MAX_NESTING} levels deep")
        if isinstance(v, (list, dict)):
            todo.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return value


def _in(item, container) -> bool:
    if isinstance(container, str):
        _need(isinstance(item, str), f"cannot look for {type_name(item)} inside text")
        return item in container
    if isinstance(container, dict):
        return isinstance(item, str) and item in container  # a mapping's keys are text
    if isinstance(container, list):
        return item in container
    if container is None:
        return False
    raise ExpressionError(f"cannot look inside {type_name(container)}")


class _Evaluator:
    """Walks a checked tree over plain data, charging every step of work to a budget."""

    def __init__(self, context: dict, budget: int):
        self.context = context
        self.budget = budget
        self.steps = 0
        # sizes of the lists and mappings measured so far, by id (the value is kept, so the id stays
        # its own): data referred to many times is measured once, and charged each time
        self.sizes: dict[int, tuple[object, int, int]] = {}

    def charge(self, work: int) -> None:
        self.steps += work
        if self.steps > self.budget:
            raise ExpressionError(f"the expression did more than {self.budget:,} steps of work; simplify it")

    def cost(self, value) -> int:
        """Steps of work to go once through ``value``: one, plus one per 4 values inside it and one per
        64 characters of text (measured only as far as the budget left allows)."""
        if isinstance(value, str):
            return 1 + len(value) // _CHARS_PER_STEP
        if not isinstance(value, (list, dict)):
            return 1
        known = self.sizes.get(id(value))
        if known is not None and known[0] is value:
            values, chars = known[1], known[2]
        else:
            limit = (self.budget - self.steps + 1) * _CHARS_PER_STEP
            values, chars = _measure(value, limit, _CHARS_PER_STEP // _ITEMS_PER_STEP)
            if (_CHARS_PER_STEP // _ITEMS_PER_STEP) * values + chars <= limit:  # measured to the end
                self.sizes[id(value)] = (value, values, chars)
        return 1 + values // _ITEMS_PER_STEP + chars // _CHARS_PER_STEP

    def charge_membership(self, item, container) -> None:
        """``item in container`` compares the item with each element of a list."""
        if isinstance(container, list):
            each = self.cost(item) if isinstance(item, (list, dict)) else 0
            self.charge(len(container) // _ITEMS_PER_STEP + len(container) * each)
        elif isinstance(container, str) and isinstance(item, str):
            self.charge(len(container) // _CHARS_PER_STEP)

    def run(self, node: ast.AST, scope: dict):
        self.charge(1)
        method = getattr(self, "_" + type(node).__name__)
        return method(node, scope)

    def _Constant(self, node, scope):
        return node.value

    def _Name(self, node, scope):
        if node.id in scope:
            return scope[node.id]
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in self.context:
            return self.context[node.id]
        raise ExpressionError(f"unknown name '{node.id}'")

    def _Attribute(self, node, scope):
        return _lookup(self.run(node.value, scope), node.attr)

    def _Subscript(self, node, scope):
        base = self.run(node.value, scope)
        if isinstance(node.slice, ast.Slice):
            _need(isinstance(base, (list, str)), f"only lists and text can be sliced, not {type_name(base)}")
            lo, hi, step = (self.run(p, scope) if p else None for p in (node.slice.lower, node.slice.upper,
                                                                        node.slice.step))
            _need(all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (lo, hi, step))
                  and step != 0, "slice bounds must be whole numbers")
            part = base[lo:hi:step]
            self.charge(len(part) // (_CHARS_PER_STEP if isinstance(part, str) else _ITEMS_PER_STEP))
            return part
        return _lookup(base, self.run(node.slice, scope))

    def _BoolOp(self, node, scope):
        value = None
        for operand in node.values:
            value = self.run(operand, scope)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _UnaryOp(self, node, scope):
        value = self.run(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not value
        _need(_is_number(value), f"'-' and '+' need a number, not {type_name(value)}")
        return -value if isinstance(node.op, ast.USub) else value

    def _BinOp(self, node, scope):
        a, b = self.run(node.left, scope), self.run(node.right, scope)
        op = node.op
        if isinstance(op, ast.Add):
            if _is_number(a) and _is_number(b):
                return _finite(a + b)
            if type(a) is type(b) and isinstance(a, str):
                self.charge((len(a) + len(b)) // _CHARS_PER_STEP)
                _need(len(a) + len(b) <= MAX_TEXT, "the expression builds a value that is too large")
                return a + b
            if type(a) is type(b) and isinstance(a, list):
                self.charge(self.cost(a) + self.cost(b))  # deeply: the result holds all of both
                _need(len(a) + len(b) <= MAX_ITEMS, "the expression builds a value that is too large")
                return a + b
            raise ExpressionError(f"cannot add {type_name(a)} and {type_name(b)}; use string(x) or number(x)")
        _need(_is_number(a) and _is_number(b), f"arithmetic needs numbers, not {type_name(a)} and {type_name(b)}")
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ExpressionError("division by zero")
        result = {ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.Div: lambda: a / b,
                  ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b}[type(op)]()
        return _finite(result)

    def _Compare(self, node, scope):
        left = self.run(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.run(comparator, scope)
            if isinstance(op, (ast.In, ast.NotIn)):
                self.charge_membership(left, right)
            elif type(left) is type(right) and isinstance(left, (list, dict)):
                self.charge(min(self.cost(left), self.cost(right)))
            elif isinstance(left, str) and isinstance(right, str):
                self.charge(min(len(left), len(right)) // _CHARS_PER_STEP)
            if not _compare(op, left, right):
                return False
            left = right
        return True

    def _IfExp(self, node, scope):
        return self.run(node.body if self.run(node.test, scope) else node.orelse, scope)

    def _Call(self, node, scope):
        name = node.func.id
        args = [self.run(a, scope) for a in node.args]
        if name == "contains" and len(args) == 2:
            self.charge_membership(args[1], args[0])
        elif name not in _CONSTANT_TIME:
            work = sum(self.cost(a) for a in args)
            if name == "sorted" and args and isinstance(args[0], list):
                work *= max(1, len(args[0]).bit_length())  # n log n comparisons
            self.charge(work)
        result = call_function(name, args)
        return _finite(result) if _is_number(result) else _built(result)

    def _List(self, node, scope):
        return self.collect([self.run(e, scope) for e in node.elts])

    _Tuple = _List

    def collect(self, items: list) -> list:
        # an item costs its full size: [x, x] written out holds x twice, however little it costs to refer to
        self.charge(sum(self.cost(item) for item in items))
        return _built(items)

    def _Dict(self, node, scope):
        result = {}
        for k, v in zip(node.keys, node.values, strict=True):
            _need(k is not None, "'**' is not allowed in an expression")
            key = self.run(k, scope)
            _need(isinstance(key, str), f"mapping keys must be text, not {type_name(key)}")
            value = self.run(v, scope)
            self.charge(self.cost(value) + len(key) // _CHARS_PER_STEP)
            result[key] = value
        return result

    def _ListComp(self, node, scope):
        out: list = []
        self._comprehend(node, node.generators, dict(scope), out)
        return out

    _GeneratorExp = _ListComp

    def _comprehend(self, node, generators, scope, out):
        gen, rest = generators[0], generators[1:]
        items = self.run(gen.iter, scope)
        _need(isinstance(items, (list, dict, str)), f"cannot go through {type_name(items)} item by item")
        for item in items:
            self.charge(1)
            scope[gen.target.id] = item
            if all(self.run(c, scope) for c in gen.ifs):
                if rest:
                    self._comprehend(node, rest, scope, out)
                else:
                    value = self.run(node.elt, scope)
                    self.charge(self.cost(value))
                    out.append(value)
                    if len(out) > MAX_ITEMS:
                        raise _too_large("list")


def _lookup(base, key):
    if base is None:
        return None  # null-safe, like GitHub Actions: a missing value reads as null
    if isinstance(base, dict):
        _need(isinstance(key, str), f"a mapping is indexed by text, not {type_name(key)}")
        return base.get(key)
    if isinstance(base, (list, str)):
        _need(isinstance(key, int) and not isinstance(key, bool),
              f"a {type_name(base)} is indexed by a whole number, not by {_quote(repr(key), 40)}")
        return base[key] if -len(base) <= key < len(base) else None
    raise ExpressionError(f"{type_name(base)} has no field {_quote(repr(key), 40)}")


def _compare(op, a, b) -> bool:
    if isinstance(op, ast.Eq):
        return a == b
    if isinstance(op, ast.NotEq):
        return a != b
    if isinstance(op, ast.In):
        return _in(a, b)
    if isinstance(op, ast.NotIn):
        return not _in(a, b)
    ordered = (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))
    _need(ordered, f"cannot compare {type_name(a)} with {type_name(b)}")
    return {ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b, ast.GtE: a >= b}[type(op)]


def evaluate(expr: Expr, context: dict, *, budget: int = MAX_STEPS):
    """Evaluate one compiled expression over ``context`` (plain JSON data, never modified).

    The work it may do is ``budget`` steps; whatever goes wrong is an ExpressionError."""
    where = f"(in '${{{{ {_quote(expr.source)} }}}}')"
    try:
        return _Evaluator(context, budget).run(expr.tree, {})
    except ExpressionError as e:
        raise ExpressionError(f"{e.message} {where}", expr.source) from None
    except RecursionError:
        raise ExpressionError(f"the expression is nested too deeply {where}", expr.source) from None
    except MemoryError:
        raise ExpressionError(f"the expression needs more memory than there is; simplify it {where}",
                              expr.source) from None
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:  # a case the checks above missed
        raise ExpressionError(f"the expression cannot be computed: {e} {where}", expr.source) from None


def render(value, context: dict):
    """Evaluate every ``${{ }}`` inside ``value`` (text, list or mapping), returning new data."""
    if isinstance(value, str):
        template = parse_template(value)
        if template is None:
            return value
        if template.whole is not None:
            return evaluate(template.whole, context)
        pieces: list[str] = []
        size = 0
        for part in template.parts:
            result = part if isinstance(part, str) else evaluate(part, context)
            if result is None:
                piece = ""
            elif isinstance(result, str):
                piece = result
            else:
                try:
                    piece = _to_json(result, MAX_TEXT - size)
                except MemoryError:
                    raise _too_large("text") from None
            size += len(piece)
            if size > MAX_TEXT:
                raise ExpressionError("the text built from expressions is too large")
            pieces.append(piece)
        return "".join(pieces)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value


def templates_in(value, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Every text inside ``value`` with its path, for checking expressions before a run."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from templates_in(v, (*path, i))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from templates_in(v, (*path, k))
