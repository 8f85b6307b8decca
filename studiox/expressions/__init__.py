"""The one expression language of missions: ``${{ ... }}``, safe by construction.

An expression is a small subset of Python's expression syntax (names, ``a.b``, ``a[0]``,
arithmetic, comparisons, ``and``/``or``/``not``, ``x if c else y``, list comprehensions and a
short list of functions), parsed with :mod:`ast` and evaluated by our own interpreter over
plain JSON data. Attribute access is key lookup on mappings, never ``getattr``: nothing can
reach Python objects, files or the network, whatever the data says (it may come from a model).
Work is bounded by size (``limits``), so a hostile expression cannot hang or exhaust a run.

``syntax`` parses templates and expressions and finds the data paths they read; ``functions``
holds the built-ins; ``evaluate`` interprets.
"""

from ..errors import ExpressionError, MissingValue
from .evaluate import evaluate, render, steps_read, templates_in
from .functions import FUNCTIONS, call_function, type_name
from .limits import MAX_ITEMS, MAX_NESTING, MAX_SOURCE, MAX_STEPS, MAX_TEXT
from .syntax import Expr, Path, Template, bare_braces, compile_expr, known_path, parse_template

__all__ = [
    "FUNCTIONS", "MAX_ITEMS", "MAX_NESTING", "MAX_SOURCE", "MAX_STEPS", "MAX_TEXT", "Expr", "ExpressionError",
    "MissingValue", "Path", "Template", "bare_braces", "call_function", "compile_expr", "evaluate", "known_path",
    "parse_template", "render", "steps_read", "templates_in", "type_name",
]
