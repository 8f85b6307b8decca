"""Bad input never crashes the loader: mutated missions either load or give MissionInvalid."""

from __future__ import annotations

import random
import warnings

import pytest
from conftest import ROOT

from studiox.errors import MissionInvalid
from studiox.mission import loads

SOURCES = [p.read_text() for p in sorted((ROOT / "tests" / "valid").glob("*.yaml"))
           + sorted((ROOT / "missions").glob("*.yaml")) + sorted((ROOT / "tests" / "invalid").glob("*.yaml"))]
TOKENS = ["${{", "}}", "{", "}", "[", "]", ":", "- ", "\n", "  ", "null", "true", "1", "-1", "'", '"', "&a ", "*a",
          "!!str ", "steps", "id", "foreach", "branch", "goto", "when", "set", "tool", "worker", "retry", "approval",
          "verdict", "cases", "otherwise", "max_iterations", "on_error", "${{ steps.a.output }}", "${{ 1 + }}", "\t",
          "#", "|", ">", "on_reject", "finish", "fail", "as", "concurrency", "inputs", "models", "from_env", "1if"]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(text))
        roll = rng.random()
        if roll < 0.4:
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        elif roll < 0.7:
            text = text[:pos] + text[pos + rng.randint(1, 20):]
        else:
            other = rng.choice(SOURCES)
            start = rng.randint(0, len(other))
            text = text[:pos] + other[start:start + rng.randint(1, 80)] + text[pos:]
    return text


@pytest.mark.parametrize("seed", range(4))
def test_mutated_missions_load_or_are_reported_never_crash(seed):
    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak to the user's terminal either
        for _ in range(1000):
            text = mutate(rng, rng.choice(SOURCES))
            try:
                loads(text, "fuzz.yaml", check_paths=False)
            except MissionInvalid as e:
                assert e.problems and all(p.message for p in e.problems)
