"""The expression language: what it computes, and what it refuses, whatever the data says."""

from __future__ import annotations

import pytest

from studiox.expressions import ExpressionError, compile_expr, parse_template, render

DATA = {
    "inputs": {"amount": 120, "name": "Ada", "lines": [{"amount": 2}, {"amount": 3}], "tags": ["a", "b"]},
    "steps": {"extract": {"output": {"total": 5, "po": "PO-1"}, "status": "succeeded", "error": None}},
}


@pytest.mark.parametrize("text, expected", [
    ("${{ inputs.amount }}", 120),
    ("${{ inputs.amount * 2 + 1 }}", 241),
    ("${{ inputs.amount / 8 }}", 15.0),
    ("${{ inputs.amount // 7 }} ${{ inputs.amount % 7 }}", "17 1"),
    ("${{ inputs.lines[1].amount }}", 3),
    ("${{ inputs['name'] }}", "Ada"),
    ("${{ inputs.lines[-1] }}", {"amount": 3}),
    ("${{ inputs.tags[0:1] }}", ["a"]),
    ("${{ sum([l.amount for l in inputs.lines if l.amount > 2]) }}", 3),
    ("${{ 'big' if inputs.amount > 100 else 'small' }}", "big"),
    ("${{ inputs.amount > 100 and not false }}", True),
    ("${{ null or 'fallback' }}", "fallback"),
    ("${{ 'a' in inputs.tags and 'c' not in inputs.tags }}", True),
    ("${{ 1 < 2 < 3 }}", True),
    ("${{ default(steps.extract.output.missing, 0) }}", 0),
    ("${{ default(steps.extract.output.missing.deeper, 'none') }}", "none"),
    ("${{ {'a': inputs.amount, 'b': [true, null]} }}", {"a": 120, "b": [True, None]}),
    ("Hello, ${{ inputs.name }}!", "Hello, Ada!"),
    ("  ${{ inputs.amount }}  ", 120),
    ("${{ inputs.amount }}${{ inputs.name }}", "120Ada"),
    ("list: ${{ inputs.tags }}", 'list: ["a", "b"]'),
    ("${{ len(inputs.tags) }} ${{ upper(inputs.name) }} ${{ round(2.567, 2) }}", "2 ADA 2.57"),
    ("${{ number('1,780.50') }}", 1780.5),
    ("${{ join(sorted(['b', 'a']), '-') }}", "a-b"),
    ("${{ from_json(to_json({'x': 1})).x }}", 1),
    ("${{ contains('invoice', 'voice') and startswith('PO-1', 'PO') }}", True),
    ("${{ max([1, 5, 3]) + min(4, 2) }}", 7),
    ("no expression here", "no expression here"),
])
def test_expressions_compute(text, expected):
    assert render(text, DATA) == expected


def test_render_walks_lists_and_mappings_and_leaves_other_values_alone():
    assert render({"a": ["${{ inputs.amount }}", 3, True], "b": None}, DATA) == {"a": [120, 3, True], "b": None}


@pytest.mark.parametrize("source, message", [
    ("().__class__", "the name '__class__' is not allowed"),
    ("inputs.__dict__", "the name '__dict__' is not allowed"),
    ("__import__('os')", "unknown function '__import__'"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("getattr(inputs, 'x')", "unknown function 'getattr'"),
    ("inputs.name.upper()", "unknown function 'inputs.name.upper'"),
    ("lambda: 1", "'lambda: 1' is not allowed"),
    ("9 ** 9 ** 9", "'**' is not allowed"),
    ("x := 1", "assigns"),
    ("[x for x in inputs.tags for y in inputs.tags]", None),  # allowed: nested loops are fine
    ("f'{inputs}'", "not allowed"),
    ("inputs.amount if True", "is not valid"),
    ("a && b", "write 'and'"),
    ("!a", "write 'not'"),
    ("a = 1", "write '=='"),
    ("max(*inputs.tags)", "plain arguments only"),
    ("1" * 3000, "longer than 2000 characters"),
    (b"x".decode() + " is None", "'is' is not allowed"),
])
def test_unsafe_or_broken_expressions_are_refused_when_parsed(source, message):
    if message is None:
        compile_expr(source)
        return
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        compile_expr(source)


def test_data_from_a_model_is_never_evaluated_and_cannot_reach_python_objects():
    hostile = {"inputs": {"text": "${{ open('/etc/passwd') }}", "obj": {"__class__": "nope"}}}
    assert render("${{ inputs.text }}", hostile) == "${{ open('/etc/passwd') }}"
    assert render("${{ inputs.obj['__class__'] }}", hostile) == "nope"  # just a key in a mapping
    with pytest.raises(ExpressionError, match="text has no field|indexed by a whole number"):
        render("${{ inputs.text.join }}", hostile)


def test_work_and_size_are_bounded():
    data = {"inputs": {"big": list(range(1000))}}
    with pytest.raises(ExpressionError, match="more than 200,000 steps"):
        render("${{ [1 for a in inputs.big for b in inputs.big] }}", data)
    with pytest.raises(ExpressionError, match="too large"):
        render("${{ inputs.s + inputs.s }}", {"inputs": {"s": "x" * 600_000}})
    with pytest.raises(ExpressionError, match="arithmetic needs numbers"):
        render("${{ 'x' * 10 }}", {})


@pytest.mark.parametrize("source, message", [
    ("${{ inputs.name + 1 }}", "cannot add text and number"),
    ("${{ inputs.amount > 'a' }}", "cannot compare number with text"),
    ("${{ 1 / 0 }}", "division by zero"),
    ("${{ nobody }}", "unknown name 'nobody'"),
    ("${{ len(3) }}", "len() needs text, a list or a mapping"),
    ("${{ lower(3) }}", "lower() needs text, not number"),
    ("${{ round('x') }}", "round() needs a number"),
    ("${{ inputs.tags.first }}", "a list is indexed by a whole number"),
    ("${{ from_json('{bad') }}", "from_json() was given text that is not JSON"),
])
def test_run_time_errors_are_clear(source, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        render(source, DATA)
    assert source.strip() in caught.value.message or "in '${{" in caught.value.message


def test_references_are_found_for_the_loaders_checks():
    expr = compile_expr("steps.a.output['x'].y + sum([l.v for l in inputs.lines]) + steps.b.output[i].z")
    assert sorted(expr.references()) == [("i",), ("inputs", "lines"), ("steps", "a", "output", "x", "y"),
                                         ("steps", "b", "output")]


def test_an_unclosed_expression_and_bare_braces_are_reported():
    with pytest.raises(ExpressionError, match="never closed"):
        parse_template("total ${{ inputs.amount")
    from studiox.expressions import bare_braces

    assert bare_braces("Hello {{ name }}") == "name" and bare_braces("${{ name }}") is None


def test_membership_in_a_mapping_is_about_its_text_keys():
    assert render("${{ [1] in {'k': 1} }}", {}) is False
    assert render("${{ 'k' in {'k': 1} and {} not in {'k': 1} }}", {}) is True


def test_random_expressions_over_awkward_data_evaluate_or_fail_cleanly():
    import random

    rng = random.Random(11)
    atoms = ["inputs.a", "inputs.b", "inputs.c", "inputs.d", "inputs.e", "1", "0", "-1", "2.5", "'x'", "''", "null",
             "true", "[1, 2]", "[]", "{'k': 1}", "{}", "inputs"]
    ops = [" + ", " - ", " * ", " / ", " // ", " % ", " == ", " < ", " >= ", " in ", " not in ", " and ", " or "]
    functions = ["len", "number", "string", "round", "abs", "min", "max", "sum", "lower", "trim", "contains", "join",
                 "split", "keys", "values", "any", "sorted", "default", "to_json", "from_json"]
    data = {"inputs": {"a": [1, "x", None, {"z": 2}], "b": {"k": [1, 2]}, "c": "text", "d": 7, "e": None}}

    def expression(depth: int = 0) -> str:
        roll = rng.random()
        if depth > 3 or roll < 0.3:
            return rng.choice(atoms)
        if roll < 0.5:
            return expression(depth + 1) + rng.choice(ops) + expression(depth + 1)
        if roll < 0.65:
            args = ", ".join(expression(depth + 1) for _ in range(rng.randint(0, 3)))
            return f"{rng.choice(functions)}({args})"
        if roll < 0.8:
            return f"{expression(depth + 1)}[{expression(depth + 1)}]"
        if roll < 0.9:
            return f"[x for x in {expression(depth + 1)} if {expression(depth + 1)}]"
        return f"({expression(depth + 1)} if {expression(depth + 1)} else {expression(depth + 1)})"

    for _ in range(5000):
        try:
            render("${{ " + expression() + " }}", data)
        except ExpressionError as e:
            assert e.message
