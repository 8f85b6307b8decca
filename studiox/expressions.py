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
import json
import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from .errors import ExpressionError

MAX_SOURCE = 2_000  # characters in one expression
MAX_STEPS = 200_000  # evaluation steps per expression
MAX_TEXT = 1_000_000  # characters in a text an expression builds
_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_BARE_BRACES = re.compile(r"(?<!\$)\{\{(.*?)\}\}", re.DOTALL)
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}




@dataclass(frozen=True)
class Expr:
    """One compiled expression: its source text and checked syntax tree."""

    source: str
    tree: ast.expr

    def references(self) -> list[tuple[str, ...]]:
        """Every data path the expression reads, e.g. ``('steps', 'extract', 'output', 'total')``."""
        return list(_references(self.tree, frozenset()))


@dataclass(frozen=True)
class Template:
    """A text with ``${{ }}`` parts; a text that is one expression alone keeps its native type."""

    parts: tuple[str | Expr, ...]

    @property
    def whole(self) -> Expr | None:
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Expr) else None

    @property
    def expressions(self) -> list[Expr]:
        return [p for p in self.parts if isinstance(p, Expr)]


def bare_braces(text: str) -> str | None:
    """The inside of a ``{{ x }}`` written without the ``$``, if the text has one."""
    m = _BARE_BRACES.search(text)
    return m.group(1).strip() if m else None


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template | None:
    """Split ``text`` into literal and expression parts; ``None`` when it holds no expression."""
    if "${{" not in text:
        return None
    parts: list[str | Expr] = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(compile_expr(m.group(1)))
        pos = m.end()
    if "${{" in text[pos:]:
        raise ExpressionError("an expression is opened with '${{' but never closed with '}}'", text)
    if pos < len(text):
        parts.append(text[pos:])
    expressions = [p for p in parts if isinstance(p, Expr)]
    if len(expressions) == 1 and all(isinstance(p, Expr) or not p.strip() for p in parts):
        parts = list(expressions)  # one expression with spaces around it keeps its native type
    return Template(tuple(parts))


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
        raise ExpressionError(_syntax_message(src, e), source) from None
    _check_syntax(tree, src)
    return Expr(src, tree)


def _syntax_message(src: str, e: SyntaxError) -> str:
    for bad, good in (("&&", "and"), ("||", "or"), ("===", "==")):
        if bad in src:
            return f"'{bad}' is not part of the expression language; write '{good}'"
    if re.search(r"(?<![=!<>])!(?!=)", src):
        return "'!' is not part of the expression language; write 'not'"
    if re.search(r"(?<![=!<>])=(?!=)", src):
        return "'=' assigns, which expressions cannot do; to compare, write '=='"
    where = f" at column {e.offset}" if e.offset else ""
    return f"the expression '{src}' is not valid{where}: {e.msg}"


_ALLOWED = (
    ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
    ast.GtE, ast.In, ast.NotIn, ast.IfExp, ast.Call, ast.Constant, ast.Name, ast.Load, ast.Attribute,
    ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.ListComp, ast.GeneratorExp,
    ast.comprehension, ast.Store,
)


def _check_syntax(tree: ast.expr, src: str) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"'{_describe(node)}' is not allowed in an expression", src)
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            raise ExpressionError(f"the name '{node.attr}' is not allowed in an expression", src)
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ExpressionError(f"the name '{node.id}' is not allowed in an expression", src)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                known = ", ".join(sorted(FUNCTIONS))
                raise ExpressionError(f"unknown function '{name}'; the functions are: {known}", src)
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(f"call '{node.func.id}' with plain arguments only", src)
        if isinstance(node, ast.comprehension) and (node.is_async or not isinstance(node.target, ast.Name)):
            raise ExpressionError("a comprehension takes one plain name: [x.amount for x in items]", src)
        if isinstance(node, ast.Constant) and not isinstance(node.value, (str, int, float, bool, type(None))):
            raise ExpressionError(f"the value {node.value!r} is not allowed in an expression", src)


_OPERATORS = {ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
              ast.RShift: ">>", ast.MatMult: "@", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not"}


def _describe(node: ast.AST) -> str:
    if type(node) in _OPERATORS:
        return _OPERATORS[type(node)]
    try:
        return ast.unparse(node) or type(node).__name__
    except Exception:  # noqa: BLE001 - only used for a message
        return type(node).__name__


def _references(node: ast.AST, bound: frozenset[str]) -> Iterator[tuple[str, ...]]:
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
            yield chain
        link = node
        while isinstance(link, (ast.Attribute, ast.Subscript)):  # indexes computed from data read data too
            if isinstance(link, ast.Subscript) and not isinstance(link.slice, ast.Constant):
                yield from _references(link.slice, bound)
            link = link.value
        return
    if isinstance(node, ast.Call):
        for arg in node.args:
            yield from _references(arg, bound)
        return
    for child in ast.iter_child_nodes(node):
        yield from _references(child, bound)


def _chain(node: ast.AST) -> tuple[str, ...] | None:
    """``a.b['c'][0]`` as ``('a', 'b', 'c')`` (stops at the first non-text index)."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                parts.append(key.value)
            else:
                parts = []  # a computed or numeric index: the known path ends before it
            node = node.value
        elif isinstance(node, ast.Name):
            return (node.id, *reversed(parts))
        else:
            return None


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


def _fn_len(x):
    _need(isinstance(x, (str, list, dict)), f"len() needs text, a list or a mapping, not {type_name(x)}")
    return len(x)


def _fn_number(x):
    if _is_number(x):
        return x
    try:
        value = float(str(x).replace(",", "").strip())
    except ValueError:
        raise ExpressionError(f"number() cannot read {x!r} as a number") from None
    return int(value) if value.is_integer() and "." not in str(x) else value


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
    return separator.join(x if isinstance(x, str) else json.dumps(x) for x in items)


# name → (function, what each argument must be: "text", "list", "mapping", or None for anything;
# no tuple at all when the function takes any number of values and checks them itself)
_SIGNATURES: dict[str, tuple[Callable, tuple | None]] = {
    "len": (_fn_len, (None,)),
    "number": (_fn_number, (None,)),
    "string": (lambda x: x if isinstance(x, str) else json.dumps(x), (None,)),
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
    "split": (lambda text, separator=None: text.split(separator), ("text", "text")),
    "keys": (lambda m: list(m), ("mapping",)),
    "values": (lambda m: list(m.values()), ("mapping",)),
    "any": (any, ("list",)),
    "all": (all, ("list",)),
    "sorted": (lambda xs: _sorted(xs), ("list",)),
    "default": (lambda x, fallback: fallback if x is None else x, (None, None)),
    "to_json": (lambda x: json.dumps(x, sort_keys=True), (None,)),
    "from_json": (lambda text: _from_json(text), ("text",)),
}
FUNCTIONS = {name: fn for name, (fn, _) in _SIGNATURES.items()}
_KINDS = {"text": str, "list": list, "mapping": dict}


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


def _from_json(s: str):
    try:
        return json.loads(s)
    except ValueError as e:
        raise ExpressionError(f"from_json() was given text that is not JSON: {e}") from None


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
    def __init__(self, context: dict):
        self.context = context
        self.steps = 0

    def run(self, node: ast.AST, scope: dict):
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionError(f"the expression did more than {MAX_STEPS:,} steps of work; simplify it")
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
            return base[lo:hi:step]
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
                return a + b
            if type(a) is type(b) and isinstance(a, (str, list)):
                _need(len(a) + len(b) <= MAX_TEXT, "the expression builds a value that is too large")
                return a + b
            raise ExpressionError(f"cannot add {type_name(a)} and {type_name(b)}; use string(x) or number(x)")
        _need(_is_number(a) and _is_number(b), f"arithmetic needs numbers, not {type_name(a)} and {type_name(b)}")
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ExpressionError("division by zero")
        result = {ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.Div: lambda: a / b,
                  ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b}[type(op)]()
        _need(not (isinstance(result, float) and math.isinf(result)), "the result is too large")
        return result

    def _Compare(self, node, scope):
        left = self.run(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.run(comparator, scope)
            if not _compare(op, left, right):
                return False
            left = right
        return True

    def _IfExp(self, node, scope):
        return self.run(node.body if self.run(node.test, scope) else node.orelse, scope)

    def _Call(self, node, scope):
        return call_function(node.func.id, [self.run(a, scope) for a in node.args])

    def _List(self, node, scope):
        return [self.run(e, scope) for e in node.elts]

    _Tuple = _List

    def _Dict(self, node, scope):
        result = {}
        for k, v in zip(node.keys, node.values, strict=True):
            _need(k is not None, "'**' is not allowed in an expression")
            key = self.run(k, scope)
            _need(isinstance(key, str), f"mapping keys must be text, not {type_name(key)}")
            result[key] = self.run(v, scope)
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
            self.steps += 1
            scope[gen.target.id] = item
            if all(self.run(c, scope) for c in gen.ifs):
                if rest:
                    self._comprehend(node, rest, scope, out)
                else:
                    out.append(self.run(node.elt, scope))


def _lookup(base, key):
    if base is None:
        return None  # null-safe, like GitHub Actions: a missing value reads as null
    if isinstance(base, dict):
        _need(isinstance(key, str), f"a mapping is indexed by text, not {type_name(key)}")
        return base.get(key)
    if isinstance(base, (list, str)):
        _need(isinstance(key, int) and not isinstance(key, bool),
              f"a {type_name(base)} is indexed by a whole number, not by {key!r}")
        return base[key] if -len(base) <= key < len(base) else None
    raise ExpressionError(f"{type_name(base)} has no field {key!r}")


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


def evaluate(expr: Expr, context: dict):
    """Evaluate one compiled expression over ``context`` (plain JSON data, never modified)."""
    try:
        return _Evaluator(context).run(expr.tree, {})
    except ExpressionError as e:
        raise ExpressionError(f"{e.message} (in '${{{{ {expr.source} }}}}')", expr.source) from None
    except RecursionError:
        raise ExpressionError(f"the expression is nested too deeply (in '{expr.source}')", expr.source) from None
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:  # a case the checks above missed
        raise ExpressionError(f"the expression cannot be computed: {e} (in '${{{{ {expr.source} }}}}')",
                              expr.source) from None


def render(value, context: dict):
    """Evaluate every ``${{ }}`` inside ``value`` (text, list or mapping), returning new data."""
    if isinstance(value, str):
        template = parse_template(value)
        if template is None:
            return value
        if template.whole is not None:
            return evaluate(template.whole, context)
        pieces = []
        for part in template.parts:
            result = part if isinstance(part, str) else evaluate(part, context)
            pieces.append(result if isinstance(result, str) else json.dumps(result) if result is not None else "")
        text = "".join(pieces)
        _need(len(text) <= MAX_TEXT, "the text built from expressions is too large")
        return text
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
