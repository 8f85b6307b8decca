"""The terminal prompt takes deliberate answers (in a real pty): nothing typed before the card answers it."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import TESTS, write_mission
from support.terminal import Terminal

pytestmark = pytest.mark.backends(
    "local", reason="the decision prompt at a real terminal is under test; the store is incidental")

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


def test_approving_ends_with_a_confirmation_that_restates_the_action(sx, terminal):
    term = terminal("run", PAYMENT)
    term.expect(MENU)
    term.type("a\r")
    term.expect("note (optional):")
    term.type("\r")
    screen = term.expect("type approve to confirm")
    assert "approve: fx.pay amount 120 · to ACME GmbH" in screen
    assert _paid(sx) == []
    term.type("APPROVE \r")  # the word in full; case and surrounding spaces do not matter
    term.expect("verdict: Paid")
    assert term.wait() == 0 and len(_paid(sx)) == 1


@pytest.mark.parametrize("stray", ["y", "a", "\x20", "approved", "aprove"])
def test_a_stray_answer_at_the_confirmation_never_approves(sx, terminal, stray):
    term = terminal("run", PAYMENT)
    term.expect(MENU)
    term.type("a\r")
    term.expect("note (optional):")
    term.type("\r")
    term.expect("type approve to confirm")
    term.type(stray + "\r")
    term.expect("not confirmed")
    term.expect(MENU, times=2)  # back at the menu, where Enter alone defers
    term.type("\r")
    term.expect("later:")
    assert term.wait() == 3 and _paid(sx) == []


def test_edit_asks_again_only_the_field_that_does_not_fit_and_restates_the_change(sx, terminal):
    term = terminal("run", PAYMENT)
    term.expect(MENU)
    term.type("e\r")
    term.expect("amount [120]:")
    term.type("-1\r")
    term.expect("amount: -1 is less than the minimum of 0")
    term.type("1.700,00\r")  # a decimal comma is refused, not guessed
    term.expect("a comma only separates thousands")
    term.type("1,700.00\r")
    term.expect("to [ACME GmbH]:")
    term.type("\r")
    term.expect("note (optional):")
    assert term.screen.count("amount [120]:") == 3 and term.screen.count("to [ACME GmbH]:") == 1
    changes = term.screen.split("to [ACME GmbH]:")[1]
    assert "argument" in changes and "from" in changes and "120" in changes and "1,700.00" in changes
    term.type("corrected from the invoice\r")
    screen = term.expect("type approve to confirm")
    assert "approve: fx.pay amount 1,700.00 (was 120) · to ACME GmbH" in screen
    term.type("approve\r")
    term.expect("verdict: Paid")
    assert term.wait() == 0
    assert [e["arguments"] for e in _paid(sx)] == [{"amount": 1700.0, "to": "ACME GmbH"}]
    decision = json.loads(sx("decisions", "--all", "--json").stdout)[0]
    assert decision["outcome"]["edited"] and decision["outcome"]["note"] == "corrected from the invoice"


def test_the_card_wraps_in_a_narrow_terminal(sx, terminal, tmp_path):
    explain = ("Check the amount against the invoice, the purchase order and the delivery note before paying, "
               "so it matches what was received")
    mission = write_mission(tmp_path / "m.yaml", PAYMENT.read_text().replace(
        "explain: Check the amount against the invoice before paying.", f"explain: {explain}"))
    term = terminal("run", mission, columns=40)
    screen = term.expect(MENU)
    card = " ".join(line.strip("│ ") for line in screen.split("decision needed")[1].splitlines())
    assert " ".join(card.split()).count(explain) == 1
    term.type("\r")
    assert term.wait() == 3


def test_a_long_text_is_edited_in_the_editor(sx, tmp_path):
    memo = "Payment for invoice INV-2291: " + "office chairs, desks and lamps delivered in March. " * 3
    mission = write_mission(tmp_path / "m.yaml", PAYMENT.read_text().replace(
        "      to: ACME GmbH\n", f"      to: ACME GmbH\n      memo: '{memo}'\n"))
    editor = tmp_path / "editor.py"  # an editor that needs no person: it rewrites the file it is given
    editor.write_text("import sys\nopen(sys.argv[1], 'w').write('Paid by transfer.\\nSee INV-2291.\\n')\n")
    term = Terminal([sys.executable, "-m", "support.sx", "run", str(mission)],
                    sx.env(COLUMNS="120", EDITOR=f"{sys.executable} {editor}", VISUAL=""))
    term.expect(MENU)
    term.type("e\r")
    term.expect("amount [120]:")
    term.type("\r")
    term.expect("to [ACME GmbH]:")
    term.type("\r")
    term.expect("(e: edit it in $EDITOR):")
    term.type("e\r")
    term.expect("note (optional):")
    term.type("\r")
    screen = term.expect("type approve to confirm")
    assert 'memo "Paid by transfer.\\nSee INV-2291." (was "Payment for invoice' in screen
    term.type("approve\r")
    term.expect("verdict: Paid")
    assert term.wait() == 0
    assert _paid(sx)[0]["arguments"]["memo"] == "Paid by transfer.\nSee INV-2291."
