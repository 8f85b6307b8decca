"""How long the expression evaluator takes on hostile expressions, and what it answers.

    python benchmarks/expressions.py [--before REV] [--quick]

Each case is an expression that once ran for seconds or built far more than MAX_TEXT
(issue 9, item 8). Each must now end quickly, with a value or an ExpressionError; the
table shows the time and the answer. Every round is a new process importing the tree
measured, 5 rounds (--quick: 3), the trees taking turns with --before REV (see _versions.py).
Goal on the reference machine (2 cores): every case under 0.5 s. Timings stay here, out of
the tests.
"""

from __future__ import annotations

import time

import _versions as versions
from _versions import Row
from rich.markup import escape

GOAL_S = 0.5
CASES = {  # label → (expression, inputs, built in the child: name → what)
    "quadratic contains() over 20k items": ("[x for x in inputs.l if contains(inputs.l, x)]", {"l": "big"}),
    "quadratic 'in' over 20k items": ("[x for x in inputs.l if x in inputs.l]", {"l": "big"}),
    "join() with a 50,000-character separator": ("join(inputs.l, inputs.s)", {"l": "big[:1000]", "s": "x*50000"}),
    "a list of 1,000 references to 1,000 items": ("[inputs.l for x in inputs.l]", {"l": "big[:1000]"}),
    "to_json() of 20k rows": ("len(to_json(inputs.rows))", {"rows": "rows"}),
    "sorted() of 20k numbers": ("len(sorted(inputs.l))", {"l": "big reversed"}),
    "split() of 1 MB into single characters": ("len(split(inputs.t, ','))", {"t": "a,*499999"}),
    "990 terms of 1+1+...": ("+".join(["1"] * 990), {}),
    "1,990 unary minus signs": ("-" * 1990 + "1", {}),
}


def _value(what: str):
    big = list(range(20_000))
    return {"big": big, "big[:1000]": big[:1000], "big reversed": big[::-1], "x*50000": "x" * 50_000,
            "rows": [{"n": i, "t": "abc"} for i in big], "a,*499999": "a," * 499_999}[what]


def cases() -> dict:
    """In the child: each case's time and answer."""
    from studiox.expressions import ExpressionError, render

    answers = {}
    for label, (source, inputs) in CASES.items():
        given = {name: _value(what) for name, what in inputs.items()}
        started = time.perf_counter()
        try:
            answer = repr(render("${{ " + source + " }}", {"inputs": given}))[:60]
        except ExpressionError as e:
            answer = e.message.split(" (in '")[0]
        answers[label] = [time.perf_counter() - started, answer]
    return answers


def main() -> None:
    args = versions.arguments(__doc__)
    if args.child:
        return versions.serve({"cases": cases}, args.child)
    rounds = 3 if args.quick else 5
    with versions.trees(args.before) as trees:
        found = versions.interleave(trees, rounds, lambda tree: versions.child(tree, "cases"), "cases,")
    rows = []
    for label in CASES:
        said = {tree.name: found[tree.name][-1][label][1] for tree in trees}
        answer = said["after" if "after" in said else trees[0].name]
        if len(set(said.values())) > 1:
            answer = " → ".join(said[tree.name] for tree in trees)
        rows.append(Row(label, {t: [r[label][0] * 1000 for r in runs] for t, runs in found.items()},
                        "{:.1f} ms".format, f"< {GOAL_S * 1000:.0f} ms", GOAL_S * 1000, [escape(answer)]))
    versions.table(trees, f"hostile expressions, a new process each round, median of {rounds}", "case", rows,
                   ["answer"])


if __name__ == "__main__":
    main()
