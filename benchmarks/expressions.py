"""How long the expression evaluator takes on hostile expressions, and what it answers.

    python benchmarks/expressions.py

Each case is an expression that once ran for seconds or built far more than MAX_TEXT
(issue 9, item 8). Each must now end quickly, with a value or an ExpressionError; the
table shows the time and the answer. Goal on the reference machine (2 cores): every case
under 0.5 s. Timings stay here, out of the tests.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from studiox.expressions import ExpressionError, render

GOAL_S = 0.5
BIG = list(range(20_000))
CASES = {
    "quadratic contains() over 20k items": ("[x for x in inputs.l if contains(inputs.l, x)]", {"l": BIG}),
    "quadratic 'in' over 20k items": ("[x for x in inputs.l if x in inputs.l]", {"l": BIG}),
    "join() with a 50,000-character separator": ("join(inputs.l, inputs.s)", {"l": BIG[:1000], "s": "x" * 50_000}),
    "a list of 1,000 references to 1,000 items": ("[inputs.l for x in inputs.l]", {"l": BIG[:1000]}),
    "to_json() of 20k rows": ("len(to_json(inputs.rows))", {"rows": [{"n": i, "t": "abc"} for i in BIG]}),
    "sorted() of 20k numbers": ("len(sorted(inputs.l))", {"l": BIG[::-1]}),
    "split() of 1 MB into single characters": ("len(split(inputs.t, ','))", {"t": "a," * 499_999}),
    "990 terms of 1+1+...": ("+".join(["1"] * 990), {}),
    "1,990 unary minus signs": ("-" * 1990 + "1", {}),
}


def main() -> None:
    table = Table("case", "time", "answer", title="hostile expressions", header_style="bold")
    for label, (source, inputs) in CASES.items():
        started = time.perf_counter()
        try:
            answer = repr(render("${{ " + source + " }}", {"inputs": inputs}))[:60]
        except ExpressionError as e:
            answer = e.message.split(" (in '")[0]
        elapsed = time.perf_counter() - started
        mark = "" if elapsed < GOAL_S else " [red](over goal)[/red]"
        table.add_row(label, f"{elapsed * 1000:.1f} ms{mark}", answer)
    Console().print(table)


if __name__ == "__main__":
    main()
