"""The terminal prompt takes deliberate answers (in a real pty): nothing typed before the card answers it."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import TESTS, write_mission
from support.terminal import Terminal

PAYMENT = TESTS / "missions" / "payment.yaml"
# the payment mission, with a first step that takes a second: time enough to type ahead
SLOW_PAYMENT = PAYMENT.read_text().replace(
    "  - id: look\n    tool: fx.append\n    arguments: {looked: true}\n",
    "  - id: look\n    tool: fx.sleep\n    arguments: {seconds: 1.5}\n")
MENU = "defer (d)? [defer]"


@pytest.fixture
def terminal(sx):
    def start(*args, columns: int = 120):
        return Terminal([sys.executable, "-m", "support.sx", *map(str, args)], sx.env(COLUMNS=str(columns)))
    return start


def _paid(sx):
    return [e for e in sx.effects_log() if e["tool"] == "pay"]


@pytest.mark.parametrize("typed_ahead", ["a\r\r", "a\rapprove\r\r", "r\rduplicate\r"])
def test_keys_typed_before_the_card_is_drawn_never_answer_it(sx, terminal, tmp_path, typed_ahead):
    term = terminal("run", write_mission(tmp_path / "m.yaml", SLOW_PAYMENT))
    term.expect("look")  # the slow first step is running: no card yet
    term.type(typed_ahead)
    assert "decision needed" not in term.screen
    term.expect(MENU)
    screen = term.settle(1.0)
    assert "note (optional)" not in screen and "reason (required)" not in screen  # still waiting at the menu
    assert _paid(sx) == []
    term.type("\r")  # Enter alone defers
    term.expect("later:")
    assert term.wait() == 3 and _paid(sx) == []
    assert json.loads(sx("decisions", "--json").stdout)[0]["status"] == "pending"
