"""Deeply nested input is a mission problem (exit 2, with its place), never a crash (exit 70):
YAML nested a thousand levels deep, and expressions nested past what the evaluator allows."""

from __future__ import annotations

import pytest
from conftest import cli

from studiox.errors import MissionInvalid
from studiox.mission import loads, yamlread

HEAD = "mission: m\nsteps:\n  - {id: a, set: {x: 1}}\n"
DEEP = "values are nested more than 64 levels deep"


def _block_mappings(depth: int) -> str:
    return HEAD + "x:\n" + "".join(" " * i + "a:\n" for i in range(1, depth)) + " " * depth + "1\n"


def _block_sequences(depth: int) -> str:
    return HEAD + "x:\n" + "".join(" " * i + "-\n" for i in range(1, depth)) + " " * depth + "1\n"


CASES = {
    "block mappings 1,000 deep": (_block_mappings(1000), 69, 66),
    "block sequences 1,000 deep": (_block_sequences(1000), 69, 66),
    "flow lists 3,000 deep": (HEAD + "x: " + "[" * 3000 + "]" * 3000 + "\n", 4, 68),
    "flow lists 5,000 deep": (HEAD + "x: " + "[" * 5000 + "]" * 5000 + "\n", 4, 68),
    "flow mappings 3,000 deep": (HEAD + "x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", 4, 4 + 4 * 64),
    "flow lists 5,000 deep, never closed": (HEAD + "x: " + "[" * 5000 + "\n", 4, 68),
    "compact sequences on one line": (HEAD + "x:\n" + "- " * 1000 + "1\n", 5, 129),
}


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
@pytest.mark.parametrize("case", CASES)
def test_yaml_nested_too_deeply_is_reported_where_it_gets_too_deep(case, libyaml):
    text, line, column = CASES[case]
    with pytest.raises(MissionInvalid) as caught:
        yamlread.load("deep.yaml", text, libyaml=libyaml)
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (line, column)
    assert DEEP in problem.message and problem.path.startswith("x")


def test_nesting_just_within_the_limit_still_loads():
    text = HEAD + "x: " + "[" * 64 + "]" * 64 + "\n"
    located = yamlread.load("ok.yaml", text)
    assert located.problems == []


def test_validate_exits_2_with_the_place_for_deep_yaml_and_deep_expressions(tmp_path):
    files = {
        "deep_yaml.yaml": HEAD + "x: " + "[" * 4000 + "]" * 4000 + "\n",
        "deep_sum.yaml": "mission: m\nsteps:\n  - id: a\n    set:\n      x: ${{ " + "+".join(["1"] * 990) + " }}\n",
        "deep_minus.yaml": "mission: m\nsteps:\n  - id: a\n    set:\n      x: ${{ " + "-" * 1990 + "1 }}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = cli("validate", *files, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-1000:]
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    places = [line.split(": ")[0] for line in result.stderr.splitlines() if not line.startswith("✗")]
    assert places == ["deep_yaml.yaml:4:68", "deep_sum.yaml:5:14", "deep_minus.yaml:5:14"]


def test_an_expression_nested_too_deeply_is_a_mission_problem():
    text = "mission: m\nsteps:\n  - id: a\n    set:\n      x: ${{ " + "+".join(["1"] * 990) + " }}\n"
    with pytest.raises(MissionInvalid) as caught:
        loads(text, "m.yaml")
    [problem] = caught.value.problems
    assert problem.line == 5 and "nested" in problem.message
