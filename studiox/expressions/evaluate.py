"""The interpreter: evaluates a compiled expression over plain JSON data, within its work budget."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping

from ..errors import ExpressionError, MissingValue
from .functions import (
    CONSTANT_TIME,
    built,
    call_function,
    finite,
    inside,
    is_number,
    measure,
    need,
    quote,
    to_json_text,
    too_large,
    type_name,
)
from .limits import CHARS_PER_STEP, ITEMS_PER_STEP, MAX_ITEMS, MAX_STEPS, MAX_TEXT
from .syntax import CONSTANTS, Expr, exact_chain, parse_template

# why a step's output or error is null, by the step's status
_NULL_BECAUSE = {"skipped": "the step was skipped", "failed": "the step failed", "rejected": "the step was rejected",
                 "succeeded": "the step succeeded"}
_A = {"number": "a number", "true/false": "true or false", "text": "text"}


class _Evaluator:
    """Walks a checked tree over plain data, charging every step of work to a budget."""

    def __init__(self, context: Mapping, budget: int):
        self.context = context
        self.budget = budget
        self.steps = 0
        self.optional = 0  # how many default() calls the evaluation is inside
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
            return 1 + len(value) // CHARS_PER_STEP
        if not isinstance(value, (list, dict)):
            return 1
        known = self.sizes.get(id(value))
        if known is not None and known[0] is value:
            values, chars = known[1], known[2]
        else:
            limit = (self.budget - self.steps + 1) * CHARS_PER_STEP
            values, chars = measure(value, limit, CHARS_PER_STEP // ITEMS_PER_STEP)
            if (CHARS_PER_STEP // ITEMS_PER_STEP) * values + chars <= limit:  # measured to the end
                self.sizes[id(value)] = (value, values, chars)
        return 1 + values // ITEMS_PER_STEP + chars // CHARS_PER_STEP

    def charge_membership(self, item, container) -> None:
        """``item in container`` compares the item with each element of a list."""
        if isinstance(container, list):
            each = self.cost(item) if isinstance(item, (list, dict)) else 0
            self.charge(len(container) // ITEMS_PER_STEP + len(container) * each)
        elif isinstance(container, str) and isinstance(item, str):
            self.charge(len(container) // CHARS_PER_STEP)

    def run(self, node: ast.AST, scope: dict):
        self.charge(1)
        method = getattr(self, "_" + type(node).__name__)
        return method(node, scope)

    def _Constant(self, node, scope):
        return node.value

    def _Name(self, node, scope):
        if node.id in scope:
            return scope[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in self.context:
            return self.context[node.id]
        raise ExpressionError(f"unknown name '{node.id}'")

    def _Attribute(self, node, scope):
        return self.lookup(node, self.run(node.value, scope), node.attr, scope)

    def _Subscript(self, node, scope):
        base = self.run(node.value, scope)
        if isinstance(node.slice, ast.Slice):
            need(isinstance(base, (list, str)), f"only lists and text can be sliced, not {type_name(base)}")
            lo, hi, step = (self.run(p, scope) if p else None for p in (node.slice.lower, node.slice.upper,
                                                                        node.slice.step))
            need(all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (lo, hi, step))
                  and step != 0, "slice bounds must be whole numbers")
            part = base[lo:hi:step]
            self.charge(len(part) // (CHARS_PER_STEP if isinstance(part, str) else ITEMS_PER_STEP))
            return part
        return self.lookup(node, base, self.run(node.slice, scope), scope)

    def lookup(self, node, base, key, scope):
        """``base.key`` or ``base[key]``; what is not there is a MissingValue naming the path as written."""
        if isinstance(base, dict):
            need(isinstance(key, str), f"a mapping is indexed by text, not {type_name(key)}")
            if key in base:
                return base[key]
            if self.optional:
                raise MissingValue("")
            if isinstance(node.value, ast.Name) and node.value.id == "steps" and "steps" not in scope:
                raise MissingValue(f"{_written(node)} has not run")
            fields = ", ".join(itertools.islice(base, 20)) + (", …" if len(base) > 20 else "")
            known = f"its fields: {quote(fields, 200)}" if base else "it has no fields"
            raise MissingValue(f"{_written(node.value)} has no field {_key(key)} ({known})")
        if isinstance(base, (list, str)):
            need(isinstance(key, int) and not isinstance(key, bool),
                 f"a {type_name(base)} is indexed by a whole number, not by {_key(key)}")
            if -len(base) <= key < len(base):
                return base[key]
            if self.optional:
                raise MissingValue("")
            size = _count(len(base), "item" if isinstance(base, list) else "character")
            raise MissingValue(f"{_written(node.value)}[{key}]: the {type_name(base)} has {size}")
        what = f"field {_key(key)}" if isinstance(key, str) else f"item {_key(key)}"
        if base is None:
            if self.optional:
                raise MissingValue("")
            raise MissingValue(f"{_written(node.value)} is null{self.null_because(node.value, scope)}, so it has "
                               f"no {what}")
        raise ExpressionError(f"{_written(node.value)} is {_A.get(type_name(base), type_name(base))}, so it has no "
                              f"{what}")

    def null_because(self, node, scope) -> str:
        """`` (the step was skipped)`` when ``node`` is ``steps.ID.output`` (or ``.error``) of a step
        that did not give one."""
        chain = exact_chain(node)
        if chain is None or len(chain) != 3 or chain[0] != "steps" or "steps" in scope or \
                chain[2] not in ("output", "error"):
            return ""
        status = ((self.context.get("steps") or {}).get(chain[1]) or {}).get("status")
        return f" ({_NULL_BECAUSE[status]})" if status in _NULL_BECAUSE else ""

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
        need(is_number(value), f"'-' and '+' need a number, not {type_name(value)}")
        return -value if isinstance(node.op, ast.USub) else value

    def _BinOp(self, node, scope):
        a, b = self.run(node.left, scope), self.run(node.right, scope)
        op = node.op
        if isinstance(op, ast.Add):
            if is_number(a) and is_number(b):
                return finite(a + b)
            if type(a) is type(b) and isinstance(a, str):
                self.charge((len(a) + len(b)) // CHARS_PER_STEP)
                need(len(a) + len(b) <= MAX_TEXT, "the expression builds a value that is too large")
                return a + b
            if type(a) is type(b) and isinstance(a, list):
                self.charge(self.cost(a) + self.cost(b))  # deeply: the result holds all of both
                need(len(a) + len(b) <= MAX_ITEMS, "the expression builds a value that is too large")
                return a + b
            raise ExpressionError(f"cannot add {type_name(a)} and {type_name(b)}; use string(x) or number(x)")
        need(is_number(a) and is_number(b), f"arithmetic needs numbers, not {type_name(a)} and {type_name(b)}")
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ExpressionError("division by zero")
        result = {ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.Div: lambda: a / b,
                  ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b}[type(op)]()
        return finite(result)

    def _Compare(self, node, scope):
        left = self.run(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.run(comparator, scope)
            if isinstance(op, (ast.In, ast.NotIn)):
                self.charge_membership(left, right)
            elif type(left) is type(right) and isinstance(left, (list, dict)):
                self.charge(min(self.cost(left), self.cost(right)))
            elif isinstance(left, str) and isinstance(right, str):
                self.charge(min(len(left), len(right)) // CHARS_PER_STEP)
            if not _compare(op, left, right):
                return False
            left = right
        return True

    def _IfExp(self, node, scope):
        return self.run(node.body if self.run(node.test, scope) else node.orelse, scope)

    def _Call(self, node, scope):
        name = node.func.id
        if name == "default" and len(node.args) == 2:  # the optional form: lazy, and a missing value is null
            self.optional += 1  # (nobody reads the message of what is missing in here: it is not written)
            try:
                value = self.run(node.args[0], scope)
            except MissingValue:
                value = None
            finally:
                self.optional -= 1
            return self.run(node.args[1], scope) if value is None else value
        args = [self.run(a, scope) for a in node.args]
        if name == "contains" and len(args) == 2:
            self.charge_membership(args[1], args[0])
        elif name not in CONSTANT_TIME:
            work = sum(self.cost(a) for a in args)
            if name == "sorted" and args and isinstance(args[0], list):
                work *= max(1, len(args[0]).bit_length())  # n log n comparisons
            self.charge(work)
        result = call_function(name, args)
        return finite(result) if is_number(result) else built(result)

    def _List(self, node, scope):
        return self.collect([self.run(e, scope) for e in node.elts])

    _Tuple = _List

    def collect(self, items: list) -> list:
        # an item costs its full size: [x, x] written out holds x twice, however little it costs to refer to
        self.charge(sum(self.cost(item) for item in items))
        return built(items)

    def _Dict(self, node, scope):
        result = {}
        for k, v in zip(node.keys, node.values, strict=True):
            need(k is not None, "'**' is not allowed in an expression")
            key = self.run(k, scope)
            need(isinstance(key, str), f"mapping keys must be text, not {type_name(key)}")
            value = self.run(v, scope)
            self.charge(self.cost(value) + len(key) // CHARS_PER_STEP)
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
        need(isinstance(items, (list, dict, str)), f"cannot go through {type_name(items)} item by item")
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
                        raise too_large("list")


def _written(node: ast.AST) -> str:
    """A path as the expression writes it, for messages."""
    return quote(ast.unparse(node), 80)


def _key(key) -> str:
    """A key or index as a message shows it (a long one shortened before it is copied)."""
    return quote(repr(key[:41] if isinstance(key, str) else key), 40)


def _count(n: int, noun: str) -> str:
    return "no " + noun + "s" if n == 0 else f"1 {noun}" if n == 1 else f"{n:,} {noun}s"


def _compare(op, a, b) -> bool:
    if isinstance(op, ast.Eq):
        return a == b
    if isinstance(op, ast.NotEq):
        return a != b
    if isinstance(op, ast.In):
        return inside(a, b)
    if isinstance(op, ast.NotIn):
        return not inside(a, b)
    ordered = (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))
    need(ordered, f"cannot compare {type_name(a)} with {type_name(b)}")
    return {ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b, ast.GtE: a >= b}[type(op)]


def evaluate(expr: Expr, context: Mapping, *, budget: int = MAX_STEPS, at: str = ""):
    """Evaluate one compiled expression over ``context`` (plain JSON data, never modified).

    The work it may do is ``budget`` steps; whatever goes wrong is an ExpressionError (a
    MissingValue for a field, item or step that is not there), whose message quotes the
    expression and says where it is written (``at``, e.g. ``arguments.amount``), when given."""
    where = f"(in '${{{{ {quote(expr.source)} }}}}'{' at ' + at if at else ''})"
    try:
        return _Evaluator(context, budget).run(expr.tree, {})
    except ExpressionError as e:
        raise type(e)(f"{e.message} {where}", expr.source) from None
    except RecursionError:
        raise ExpressionError(f"the expression is nested too deeply {where}", expr.source) from None
    except MemoryError:
        raise ExpressionError(f"the expression needs more memory than there is; simplify it {where}",
                              expr.source) from None
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:  # a case the checks above missed
        raise ExpressionError(f"the expression cannot be computed: {e} {where}", expr.source) from None


def render(value, context: Mapping, at: str = ""):
    """Evaluate every ``${{ }}`` inside ``value`` (text, list or mapping), returning new data.

    ``at`` is where ``value`` is written in the mission (``arguments``, ``verdict.cases[0].when``),
    so that an error says which field its expression is in."""
    if isinstance(value, str):
        template = parse_template(value)
        if template is None:
            return value
        if template.whole is not None:
            return evaluate(template.whole, context, at=at)
        pieces: list[str] = []
        size = 0
        for part in template.parts:
            result = part if isinstance(part, str) else evaluate(part, context, at=at)
            if result is None:
                piece = ""
            elif isinstance(result, str):
                piece = result
            else:
                try:
                    piece = to_json_text(result, MAX_TEXT - size)
                except MemoryError:
                    raise too_large("text") from None
            size += len(piece)
            if size > MAX_TEXT:
                raise ExpressionError("the text built from expressions is too large")
            pieces.append(piece)
        return "".join(pieces)
    if isinstance(value, list):
        return [render(v, context, f"{at}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: render(v, context, f"{at}.{k}" if at else str(k)) for k, v in value.items()}
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


def steps_read(value) -> list[str]:
    """The ids of the steps the expressions inside ``value`` read (``steps.ID...``), in order of
    first appearance; text that does not parse reads nothing (validation reports it)."""
    found: list[str] = []
    for _, text in templates_in(value):
        try:
            template = parse_template(text)
        except ExpressionError:
            continue
        for expr in template.expressions if template else []:
            for path in expr.references():
                if path[0] == "steps" and len(path) > 1 and path[1] not in found:
                    found.append(path[1])
    return found
