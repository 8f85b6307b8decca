"""Templates: a ``${{ }}`` ends at the first ``}}`` outside strings and brackets, and an
expression's mistake is reported at its own column on the YAML line."""

from __future__ import annotations

import pytest

from studiox.errors import MissionInvalid
from studiox.expressions import ExpressionError, parse_template, render
from studiox.mission import loads


@pytest.mark.parametrize("text, expected", [
    ("${{ {'a': {'b': 1}} }}", {"a": {"b": 1}}),
    ("${{ {'a': {'b': 1}}.a.b }}", 1),
    ("${{ {'a': {'b': {'c': 1}}} }}", {"a": {"b": {"c": 1}}}),
    ("${{ '}}' }}", "}}"),
    ('${{ "a }} b" }}', "a }} b"),
    ("${{ 'it\\'s }}' }}", "it's }}"),
    ('${{ "say \\"}}\\"" }}', 'say "}}"'),
    ("${{ ['}}', {'k': '{{'}] }}", ["}}", {"k": "{{"}]),
    ("x ${{ {'k': 1}.k }} y ${{ '}}' }} z", "x 1 y }} z"),
    ("${{ 1 }}}", "1}"),
    ("${{ [[1, 2], [3]][1] }}", [3]),
])
def test_an_expression_ends_at_the_first_closing_braces_outside_strings_and_brackets(text, expected):
    assert render(text, {}) == expected


@pytest.mark.parametrize("text, message", [
    ("total ${{ inputs.amount", "never closed"),
    ("${{ {'a': 1 }}", "never closed"),
    ("${{ 'a }}", "never closed"),
    ("${{ 1 }} and ${{ 2", "never closed"),
])
def test_an_expression_that_is_never_closed_is_an_error(text, message):
    with pytest.raises(ExpressionError, match=message):
        parse_template(text)


@pytest.mark.parametrize("text, offset", [
    ("total ${{ inputs.amount", 6),
    ("a ${{ 1 + }}", 6),  # Python cannot say where: the expression's start
    ("a ${{ 1 = 2 }}", 8),
    ("${{ open('x') }}", 4),
    ("ab ${{ inputs.__class__ }}", 14),
    ("${{ 1 }} ${{ 9 ** 2 }}", 15),
])
def test_a_template_error_says_where_in_the_text_it_is(text, offset):
    with pytest.raises(ExpressionError) as caught:
        parse_template(text)
    assert caught.value.offset == offset


def _problem(text: str):
    with pytest.raises(MissionInvalid) as caught:
        loads(text, "m.yaml")
    [problem] = caught.value.problems
    return problem


def test_an_expression_error_in_a_plain_value_points_at_its_column_on_the_line():
    line = "      x: total ${{ inputs.amount + * 2 }} EUR"
    problem = _problem("mission: m\ninputs: {amount: {type: number}}\nsteps:\n  - id: a\n    set:\n" + line + "\n")
    assert (problem.line, problem.column) == (6, line.index("* 2") + 1)
    assert "not valid" in problem.message


def test_an_expression_error_in_a_quoted_value_points_at_its_column_on_the_line():
    line = "  - {id: a, set: {x: 'n ${{ open(1) }}'}}"
    problem = _problem("mission: m\nsteps:\n" + line + "\n")
    assert (problem.line, problem.column) == (3, line.index("open") + 1)
    assert "unknown function 'open'" in problem.message


def test_an_expression_error_in_a_block_text_points_at_the_value_when_the_column_is_unknown():
    text = "mission: m\nsteps:\n  - id: a\n    fail: |\n      first line\n      ${{ 1 + }}\n"
    problem = _problem(text)
    assert (problem.line, problem.column) == (4, 11)


def test_an_unclosed_expression_points_at_its_opening_braces():
    line = "      x: 'a ${{ 1 + 2'"
    problem = _problem("mission: m\nsteps:\n  - id: a\n    set:\n" + line + "\n")
    assert (problem.line, problem.column) == (4 + 1, line.index("${{") + 1)
    assert "never closed" in problem.message
