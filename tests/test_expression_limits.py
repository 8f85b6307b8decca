"""The evaluator's bounds are real: work is charged by the size of the data a built-in goes
through, every text and list an expression builds is capped, and no input — however deep,
large or hostile — makes the evaluator raise anything but ExpressionError."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
from conftest import ROOT

from studiox.expressions import (
    MAX_ITEMS,
    MAX_TEXT,
    ExpressionError,
    compile_expr,
    evaluate,
    parse_template,
    render,
)

BIG = list(range(20_000))


def _evaluate(source: str, data: dict, budget: int):
    return evaluate(compile_expr(source), data, budget=budget)


def test_a_quadratic_contains_over_20k_items_is_stopped_by_the_work_bound():
    with pytest.raises(ExpressionError, match="steps of work"):
        render("${{ [x for x in inputs.l if contains(inputs.l, x)] }}", {"inputs": {"l": BIG}})


def test_a_quadratic_in_over_20k_items_is_stopped_by_the_work_bound():
    with pytest.raises(ExpressionError, match="steps of work"):
        render("${{ [x for x in inputs.l if x not in inputs.l] }}", {"inputs": {"l": BIG}})


def test_join_refuses_to_build_text_past_the_limit_before_building_it():
    data = {"inputs": {"l": list(range(1000)), "s": "x" * 50_000}}
    with pytest.raises(ExpressionError, match="too large"):
        render("${{ join(inputs.l, inputs.s) }}", data)
    with pytest.raises(ExpressionError, match="too large"):
        render("${{ join([inputs.s for x in inputs.l[:30]], '') }}", data)


def test_a_list_that_repeats_big_data_costs_the_size_of_that_data():
    data = {"inputs": {"l": list(range(1000))}}
    with pytest.raises(ExpressionError, match="steps of work"):
        render("${{ [inputs.l for x in inputs.l] }}", data)


def test_data_repeated_through_a_comprehension_variable_costs_its_full_size():
    tree = "inputs.l"
    for _ in range(12):  # a tree of 4,096 references to the same 1,000 numbers: 4 million when written out
        tree = f"[[y, y] for y in [{tree}]][0]"
    with pytest.raises(ExpressionError, match="steps of work"):
        render("${{ " + tree + " }}", {"inputs": {"l": list(range(1000))}})


@pytest.mark.parametrize("source", [
    "len(to_json(inputs.big))",
    "len(string(inputs.big))",
    "len(join(inputs.texts, ','))",
    "len(sorted(inputs.numbers))",
    "contains(inputs.numbers, -1)",
    "-1 in inputs.numbers",
    "inputs.numbers == inputs.numbers2",
    "sum(inputs.numbers)",
    "max(inputs.numbers)",
    "len(split(inputs.text, ','))",
    "len(upper(inputs.text))",
    "contains(inputs.text, 'zz')",
    "len(from_json(inputs.json))",
    "len(keys(inputs.mapping))",
    "len(values(inputs.mapping))",
    "any(inputs.numbers)",
    "len(inputs.numbers + inputs.numbers)",
    "len(inputs.text + inputs.text)",
    "len(inputs.numbers[1:])",
    "inputs.text < inputs.text2",
])
def test_every_built_in_is_charged_by_the_size_of_its_data(source):
    def data(n: int) -> dict:
        numbers = list(range(n))
        return {"inputs": {"big": {"rows": [{"n": i, "t": "abc"} for i in range(n)]}, "texts": ["abc"] * n,
                           "numbers": numbers, "numbers2": list(numbers), "text": "a," * (n * 20),
                           "text2": "a," * (n * 20), "json": "[" + ",".join(["1"] * n) + "]",
                           "mapping": {f"k{i}": i for i in range(n)}}}

    _evaluate(source, data(10), budget=1_000)  # small data: cheap
    with pytest.raises(ExpressionError, match="more than 1,000 steps of work"):
        _evaluate(source, data(50_000), budget=1_000)


def test_built_lists_are_capped():
    with pytest.raises(ExpressionError, match="too large"):
        render("${{ split(inputs.t, ',') }}", {"inputs": {"t": "," * (MAX_ITEMS + 10)}})


def test_built_texts_are_capped():
    with pytest.raises(ExpressionError, match="too large"):
        render("${{ to_json(inputs.l) }}", {"inputs": {"l": ["x" * 1000] * 2000}})
    assert len(render("${{ inputs.t + inputs.t }}", {"inputs": {"t": "x" * (MAX_TEXT // 2)}})) == MAX_TEXT


@pytest.mark.parametrize("source", [
    "number('nan')", "number('inf')", "number('-Infinity')", "from_json('NaN')", "from_json('[1e999]')",
    "1e308 + 1e308", "-1e308 - 1e308", "sum([1e308, 1e308])", "abs(-1e308) * 10", "1e999", "9" * 400,
    "99999999999999999999 * 99999999999999999999 * 99999999999999999999 * 99999999999999999999 * 9" + "9" * 300,
])
def test_numbers_stay_finite_json_numbers(source):
    with pytest.raises(ExpressionError):
        render("${{ " + source + " }}", {})


@pytest.mark.parametrize("source", [
    "+".join(["1"] * 990),
    "-" * 1990 + "1",
    "not " * 490 + "true",
    "-" * 1500 + "(" * 200 + "1" + ")" * 200,  # ast.parse itself runs out of parser stack
    "inputs" + ".a" * 990,
    "inputs" + "[0]" * 600,
    "[" * 150 + "]" * 150,
    "[x for x in " * 100 + "[]" + "]" * 100,
])
def test_expressions_nested_too_deeply_are_refused_when_parsed(source):
    with pytest.raises(ExpressionError, match="nested") as caught:
        compile_expr(source)
    assert len(caught.value.message) < 300


def test_an_expression_of_moderate_depth_parses_and_reads_its_references():
    source = " + ".join(f"inputs.a{i}" for i in range(60))
    assert len(compile_expr(source).references()) == 60
    assert render("${{ " + source + " }}", {"inputs": {f"a{i}": 1 for i in range(60)}}) == 60


def test_running_out_of_memory_while_evaluating_is_an_expression_error(tmp_path):
    # A real address-space limit in a child process, so that a MemoryError is real too.
    script = tmp_path / "limited.py"
    script.write_text(
        "import resource, sys\n"
        "from studiox.expressions import ExpressionError, render\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 40 * 1024 * 1024,) * 2)\n"
        "data = {'inputs': {'l': list(range(3000)), 's': 'x' * 50_000, 't': 'y' * 400_000}}\n"
        "for source in ['join(inputs.l, inputs.s)', 'to_json([inputs.s for x in inputs.l])',\n"
        "               'len(join([inputs.t for x in inputs.l], inputs.t))', 'split(inputs.t, \"\")']:\n"
        "    try:\n"
        "        render('${{ ' + source + ' }}', data)\n"
        "    except ExpressionError:\n"
        "        pass\n"
        "print('no MemoryError escaped')\n")
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "no MemoryError escaped", result.stderr[-2000:]


# ---------------------------------------------------------------------------- fuzzing

FUNCTIONS = ["len", "number", "string", "round", "abs", "min", "max", "sum", "lower", "upper", "trim", "startswith",
             "endswith", "contains", "join", "split", "keys", "values", "any", "all", "sorted", "default", "to_json",
             "from_json"]
OPERATORS = [" + ", " - ", " * ", " / ", " // ", " % ", " == ", " != ", " < ", " <= ", " > ", " >= ", " in ",
             " not in ", " and ", " or "]
TOKENS = ["(", ")", "[", "]", "{", "}", ":", ",", ".", "'", '"', "\\", "-", "not ", " if ", " else ", " for ",
          " in ", "1e999", "nan", "__class__", "${{", "}}", "0", "x", "9" * 30]


def _random_data(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice([None, True, False, 0, 1, -7, 2.5, 1e308, -1e308, "", "x", "1,234.5", "NaN", "[1, 2]",
                           '{"a": 1}', "a,b,c", "Ünïcode ✓", "x" * rng.choice([1, 100, 5000]), 10**30])
    if roll < 0.75:
        size = rng.choice([0, 1, 3, 8, 200])
        return [_random_data(rng, depth + 1 if size < 200 else 99) for _ in range(size)]
    return {rng.choice(["a", "b", "k", "total", "", "__class__"]) + str(i): _random_data(rng, depth + 1)
            for i in range(rng.choice([0, 1, 3, 6]))}


def _random_expression(rng: random.Random, names: list[str], depth: int = 0) -> str:
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice([*names, "1", "0", "-3", "2.5", "'a'", "''", "null", "true", "[]", "{}", "[1, 'b', null]",
                           "{'k': [1, {'j': 2}]}", "'}}'", "'a,b'", "1e308", "-1e308", "'nan'", "'-inf'", "'1e999'",
                           "'NaN'", "'[1e999]'", "'[[[[1]]]]'", "9" * 400])
    if roll < 0.5:
        return _random_expression(rng, names, depth + 1) + rng.choice(OPERATORS) + _random_expression(rng, names,
                                                                                                      depth + 1)
    if roll < 0.65:
        args = ", ".join(_random_expression(rng, names, depth + 1) for _ in range(rng.randint(0, 3)))
        return f"{rng.choice(FUNCTIONS)}({args})"
    if roll < 0.75:
        return f"{_random_expression(rng, names, depth + 1)}[{_random_expression(rng, names, depth + 1)}]"
    if roll < 0.8:
        return f"{_random_expression(rng, names, depth + 1)}[{rng.choice(['1:', ':-1', '::2', '::-1'])}]"
    if roll < 0.9:
        return (f"[x for x in {_random_expression(rng, [*names, 'x'], depth + 1)} "
                f"if {_random_expression(rng, [*names, 'x'], depth + 1)}]")
    return (f"({_random_expression(rng, names, depth + 1)} if {_random_expression(rng, names, depth + 1)} "
            f"else {_random_expression(rng, names, depth + 1)})")


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        pos = rng.randint(0, len(text))
        if rng.random() < 0.6:
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        else:
            text = text[:pos] + text[pos + rng.randint(1, 5):]
    return text


def _is_plain_json(value, depth: int = 0) -> bool:
    if depth > 200:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


@pytest.mark.parametrize("seed", range(3))
def test_random_and_mutated_expressions_over_random_data_give_json_or_an_expression_error(seed):
    rng = random.Random(seed)
    for _ in range(1200):
        data = {"inputs": {name: _random_data(rng) for name in "abcd"}}
        names = ["inputs", "inputs.a", "inputs.b", "inputs.c", "inputs.d", "inputs.a[0]", "inputs.b.a0"]
        text = "${{ " + _random_expression(rng, names) + " }}"
        if rng.random() < 0.4:
            text = _mutate(rng, text)
        try:
            template = parse_template(text)
            if template is None:
                continue
            for expr in template.expressions:
                expr.references()
                assert _is_plain_json(evaluate(expr, data, budget=20_000)), text
            assert _is_plain_json(render(text, data)), text
        except ExpressionError as e:
            assert e.message, text
