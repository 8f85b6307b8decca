"""Parsing: templates (``${{ }}`` inside text), expressions, their checks and the data paths they read."""

from __future__ import annotations

import ast
import re
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ExpressionError
from .functions import FUNCTIONS, fits, quote
from .limits import MAX_NESTING, MAX_SOURCE

_BARE_BRACES = re.compile(r"(?<!\$)\{\{(.*?)\}\}", re.DOTALL)
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_NEVER_CLOSED = "an expression is opened with '${{' but never closed with '}}'"
_TOO_DEEP = ("the expression is nested too deeply (more than {} levels of operators, brackets or calls); "
             "split it into smaller expressions")


Path = tuple  # of str keys and int indexes, e.g. ('steps', 'extract', 'output', 'lines', 0, 'amount')


class Each:
    """In a path, any one item of a list: what a comprehension's variable stands for."""

    def __repr__(self) -> str:
        return "[*]"


EACH = Each()


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

    def item_reference_sites(self) -> list[tuple[Path, Path, int]]:
        """Every path read through a comprehension's variable that goes through a known list, as
        ``(full path, path as written, place in the source)``: in ``[r.classify.label for r in
        steps.triage.output]``, ``r.classify.label`` is ``('steps', 'triage', 'output', EACH,
        'classify', 'label')``, written ``('r', 'classify', 'label')``."""
        return [(full, written, _offset(self.source, node)) for full, written, node in _item_references(self.tree, {})]


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
    return f"the expression '{quote(src)}' is not valid{where}: {e.msg}", offset


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
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not fits(node.value):
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
        if chain[0] not in bound and chain[0] not in CONSTANTS:
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


def _item_references(node: ast.AST, bound: dict[str, Path | None]) -> Iterator[tuple[Path, Path, ast.AST]]:
    """The paths read through comprehension variables; ``bound`` gives the path each variable stands
    for (None when its list is computed)."""
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
        inner = dict(bound)
        for gen in node.generators:
            yield from _item_references(gen.iter, inner)
            chain = exact_chain(gen.iter)
            if chain is not None and chain[0] in inner:
                base = inner[chain[0]]
                chain = None if base is None else (*base, *chain[1:])
            elif chain is not None and chain[0] in CONSTANTS:
                chain = None
            inner[gen.target.id] = None if chain is None else (*chain, EACH)  # type: ignore[attr-defined]
            for cond in gen.ifs:
                yield from _item_references(cond, inner)
        yield from _item_references(node.elt, inner)
        return
    chain = _chain(node)
    if chain is not None:
        base = bound.get(chain[0])
        if base is not None:
            yield (*base, *chain[1:]), chain, node
        link = node
        while isinstance(link, (ast.Attribute, ast.Subscript)):
            if isinstance(link, ast.Subscript) and _index(link.slice) is None:
                yield from _item_references(link.slice, bound)
            link = link.value
        return
    for child in ast.iter_child_nodes(node):
        yield from _item_references(child, bound)


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


def exact_chain(node: ast.AST) -> Path | None:
    """``a.b['c'][0]`` as ``('a', 'b', 'c', 0)``; None when it is not a path of constant names and indexes."""
    parts: list[str | int] = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        key = node.attr if isinstance(node, ast.Attribute) else _index(node.slice)
        if key is None:
            return None
        parts.append(key)
        node = node.value
    return (node.id, *reversed(parts)) if isinstance(node, ast.Name) else None


def known_path(path: Path) -> tuple[str, ...]:
    """The part of a path before its first whole-number index: what :meth:`Expr.references` gives."""
    for i, part in enumerate(path):
        if not isinstance(part, str):
            return tuple(path[:i])
    return tuple(path)


