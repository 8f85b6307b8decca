"""The terminal prompt without a terminal: its doors (read, flush, editor), number parsing, and the card."""

from __future__ import annotations

import io
import sys
import time

import pytest
from conftest import TESTS
from rich.console import Console

from studiox.governance import APPROVED, Action, Decision, DecisionQueue
from studiox.state.store import Store
from studiox.ui.prompt import ask, open_editor, panel
from studiox.values import human, parse_field, parse_number

pytestmark = pytest.mark.backends(
    "local", reason="the decision prompt's dialogue is under test; the store is incidental")

PAYMENT = TESTS / "missions" / "payment.yaml"
SCHEMA = {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0}, "to": {"type": "string"},
                                           "urgent": {"type": "boolean"}}, "required": ["amount", "to"]}


# ---------------------------------------------------------------- numbers and values


@pytest.mark.parametrize("text, number", [
    ("1700", 1700), ("1,700", 1700), ("1,700.00", 1700.0), ("1 700", 1700), ("1\u202f700,5".replace(",", "."), 1700.5),
    ("12,345,678.9", 12345678.9), ("-5", -5), ("+5", 5), ("0.125", 0.125), (".5", 0.5), ("1.5e3", 1500.0),
    (" 95 ", 95), ("1700.5", 1700.5),
])
def test_numbers_are_read_as_people_write_them(text, number):
    parsed = parse_number(text)
    assert parsed == number and type(parsed) is type(number)


@pytest.mark.parametrize("text, why", [
    ("1,5", "a comma only separates thousands"),  # a decimal comma is refused, never guessed
    ("1.700,00", "a comma only separates thousands"),
    ("17,00", "a comma only separates thousands"),
    ("1,7000", "a comma only separates thousands"),
    ("1.700", "could be read two ways: write 1700 (or 1,700) for the whole number, or 1.7 for the decimal one"),
    ("12.500", "could be read two ways"),
    ("1.700.000", "is not a number"),
    ("EUR 1700", "is not a number"),
    ("abc", "is not a number"),
    ("1700 EUR", "is not a number"),
])
def test_a_number_that_could_be_misread_is_refused_with_how_to_write_it(text, why):
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_number(text)


def test_each_field_is_read_by_its_schema_type():
    assert parse_field("1,700.00", {"type": "integer"}) == 1700 and isinstance(parse_field("1,700.00", {
        "type": "integer"}), int)
    assert parse_field("1,700.50", {"type": "integer"}) == 1700.5  # left for the schema to refuse
    assert parse_field("yes", {"type": "boolean"}) is True and parse_field("False", {"type": "boolean"}) is False
    assert parse_field("null", {"type": ["number", "null"]}) is None
    assert parse_field("1,700", {"type": ["number", "string"]}) == 1700
    assert parse_field("INV-2291", {"type": ["number", "string"]}) == "INV-2291"
    assert parse_field("  1,700 ", {"type": "string"}) == "1,700"  # text as typed (trimmed)
    assert parse_field('["a", 1]', {"type": "array"}) == ["a", 1]
    assert parse_field("1,700", None, current=1780) == 1700  # no schema: the current value says it is a number
    assert parse_field("ACME", None, current="Acme") == "ACME"
    assert parse_field('{"a": 1}', None) == {"a": 1} and parse_field("plain words", None) == "plain words"
    with pytest.raises(ValueError, match="is not a number"):
        parse_field("lots", {"type": "number"})
    with pytest.raises(ValueError, match="is not valid JSON"):
        parse_field("[1,", {"type": "array"})


def test_values_read_as_people_read_them():
    assert [human(v) for v in (1780, 1700.0, 118.5, 0.125, 1234567, -1500.25)] == [
        "1,780", "1,700.00", "118.50", "0.125", "1,234,567", "-1,500.25"]
    assert [human(v) for v in (True, None, "INV-2291", "", " x", {"a": 1})] == [
        "true", "null", "INV-2291", '""', '" x"', '{"a": 1}']


# ---------------------------------------------------------------- asking, through the doors


class Doors:
    """Scripted answers; records every question asked and every flush, in order."""

    def __init__(self, *answers: str, edited: str | None = None):
        self.answers = list(answers)
        self.log: list[str] = []
        self.edited = edited

    def read(self, question: str) -> str:
        self.log.append(question)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def flush(self) -> None:
        self.log.append("<flush>")

    def edit_text(self, text: str) -> str:
        self.log.append("<editor>")
        if self.edited is None:
            raise ValueError("$EDITOR is not set")
        return self.edited


@pytest.fixture
def queue(tmp_path):
    store = Store.open(tmp_path / "home", create=True)
    yield DecisionQueue(store, time.time)
    store.close()


def _file(queue, kind="tool", target="erp.post_payment", arguments=None, schema=SCHEMA, **extra) -> Decision:
    arguments = {"amount": 1780, "to": "INV-2291"} if arguments is None else arguments
    return queue.request(run_id="r1", mission="m", step="pay", action=Action(kind, target, arguments,
                                                                            input_schema=schema),
                         evidence=[{"step": "extract", "message": "invoice INV-2291 says 1,780.00 EUR"}],
                         explain="Check the amount against the invoice.", timeout=None, **extra)


def _ask(queue, decision, doors: Doors) -> str:
    console = Console(file=io.StringIO(), width=100, highlight=False, soft_wrap=True)
    ask(decision, queue, console=console, read=doors.read, flush=doors.flush, edit_text=doors.edit_text)
    return console.file.getvalue()


def test_nothing_is_read_before_the_typed_ahead_keys_are_discarded(queue):
    doors = Doors("a", "", "approve")
    _ask(queue, _file(queue), doors)
    assert doors.log[0] == "<flush>"  # before the first question
    confirm = next(i for i, q in enumerate(doors.log) if q.startswith("type approve"))
    assert doors.log[confirm - 1] == "<flush>"  # and again right before the confirmation


def test_approve_restates_the_action_and_needs_the_word(queue):
    decision = _file(queue)
    screen = _ask(queue, decision, Doors("a", "ok", "Approve"))
    assert "approve: erp.post_payment amount 1,780 · to INV-2291" in screen
    outcome = queue.get(decision.id).outcome
    assert outcome["status"] == APPROVED and outcome["note"] == "ok" and not outcome["edited"]


@pytest.mark.parametrize("stray", ["", "y", "yes", "a", "approved", "ok"])
def test_anything_but_the_word_goes_back_to_the_menu_and_never_approves(queue, stray):
    decision = _file(queue)
    doors = Doors("a", "", stray, "")
    screen = _ask(queue, decision, doors)
    assert "not confirmed" in screen and "deferred" in screen
    assert sum(q.startswith("approve (a)") for q in doors.log) == 2
    assert queue.get(decision.id).outcome is None


def test_an_empty_answer_at_the_menu_defers_and_end_of_input_too(queue):
    decision = _file(queue)
    assert "deferred" in _ask(queue, decision, Doors(""))
    assert "end of input" in _ask(queue, decision, Doors("a", ""))  # input ends at the confirmation
    assert queue.get(decision.id).outcome is None


def test_edit_asks_again_only_the_field_that_does_not_fit(queue):
    decision = _file(queue, arguments={"amount": 1780.0, "to": "INV-2291", "urgent": False})
    doors = Doors("e", "-1", "1.700", "1,700.00", "", "maybe", "no", "", "approve")
    screen = _ask(queue, decision, doors)
    asked = [q.split(" [")[0].strip() for q in doors.log if q.startswith("  ")]
    assert asked == ["amount", "amount", "amount", "to", "urgent", "urgent"]
    assert "amount: -1 is less than the minimum of 0" in screen
    assert "amount: '1.700' could be read two ways" in screen
    assert "urgent: 'maybe' is not boolean" in screen
    assert "argument" in screen and "from" in screen  # the changes, from → to
    assert "approve: erp.post_payment amount 1,700.00 (was 1,780.00) · to INV-2291 · urgent false" in screen
    outcome = queue.get(decision.id).outcome
    assert outcome["edited"] and outcome["action"]["arguments"] == {"amount": 1700.0, "to": "INV-2291",
                                                                     "urgent": False}


def test_an_edit_that_changes_nothing_approves_the_action_as_proposed(queue):
    decision = _file(queue)
    screen = _ask(queue, decision, Doors("e", "", "", "", "approve"))
    assert "nothing changed" in screen
    assert not queue.get(decision.id).outcome["edited"]


def test_an_edit_the_whole_schema_refuses_goes_back_to_the_menu(queue):
    schema = {**SCHEMA, "additionalProperties": False}
    decision = _file(queue, arguments={"amount": 5, "to": "x", "extra": 1}, schema=schema)
    screen = _ask(queue, decision, Doors("e", "6", "", "", ""))
    assert "do not fit the tool" in screen and "deferred" in screen
    assert queue.get(decision.id).outcome is None


def test_a_long_text_can_be_edited_in_the_editor(queue):
    letter = "Dear supplier, " + "we pay the invoice as agreed. " * 5
    schema = {"type": "object", "properties": {"body": {"type": "string", "maxLength": 400}}}
    decision = _file(queue, target="mail.send", arguments={"body": letter}, schema=schema)
    doors = Doors("e", "e", "", "approve", edited="Dear supplier,\nwe pay 1,700.00 EUR.")
    _ask(queue, decision, doors)
    assert "(e: edit it in $EDITOR)" in doors.log[2]
    assert queue.get(decision.id).outcome["action"]["arguments"] == {"body": "Dear supplier,\nwe pay 1,700.00 EUR."}


def test_without_an_editor_a_long_text_is_asked_for_inline(queue):
    letter = "x " * 60
    decision = _file(queue, target="mail.send", arguments={"body": letter}, schema=None)
    screen = _ask(queue, decision, Doors("e", "e", "e", "", "approve"))  # the second 'e' is the text itself
    assert "$EDITOR is not set" in screen and "type the new value here" in screen
    assert queue.get(decision.id).outcome["action"]["arguments"] == {"body": "e"}


def test_open_editor_runs_the_editor_on_the_text(monkeypatch, tmp_path):
    script = tmp_path / "editor.py"
    script.write_text("import sys\np = sys.argv[1]\ntext = open(p).read()\nopen(p, 'w').write(text.upper() + '\\n')\n")
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    assert open_editor("a long letter") == "A LONG LETTER"  # the newline the editor adds is dropped
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c 'raise SystemExit(3)'")
    with pytest.raises(ValueError, match="exited with status 3"):
        open_editor("x")
    monkeypatch.delenv("EDITOR")
    with pytest.raises(ValueError, match=r"\$EDITOR is not set"):
        open_editor("x")


def test_a_budget_decision_edits_only_how_much_more_and_is_confirmed(queue):
    decision = _file(queue, kind="budget", target="mission budget: tokens",
                     arguments={"limit": 10000, "spent": 10240, "raise_by": 5000}, schema=None)
    doors = Doors("e", "0", "2,000", "", "approve")
    screen = _ask(queue, decision, doors)
    assert [q.strip() for q in doors.log if q.startswith("  ")] == ["raise_by [5,000]:"] * 2
    assert "raise_by: 0 is less than or equal to the minimum of 0" in screen
    assert "approve: mission budget: tokens limit 10,000 · spent 10,240 · raise_by 2,000 (was 5,000)" in screen
    assert queue.get(decision.id).outcome["action"]["arguments"]["raise_by"] == 2000


def test_a_step_approval_has_nothing_to_edit_and_is_confirmed_too(queue):
    decision = _file(queue, kind="step", target="sign", arguments={"kind": "set", "inputs": {"ok": True}},
                     schema=None)
    screen = _ask(queue, decision, Doors("e", "a", "", "sure", ""))
    assert "has no arguments to correct" in screen and "not confirmed" in screen
    assert queue.get(decision.id).outcome is None
    _ask(queue, decision, Doors("a", "", "approve"))
    assert queue.get(decision.id).outcome["status"] == APPROVED


def test_in_doubt_answers_need_their_word_too(queue):
    decision = _file(queue, in_doubt=True)
    screen = _ask(queue, decision, Doors("t", "y", "h", "{\"ok\": true}", "yes", ""))
    assert "retry: call erp.post_payment amount 1,780 · to INV-2291 again" in screen
    assert "happened: erp.post_payment happened and returned" in screen
    assert screen.count("not confirmed") == 2 and queue.get(decision.id).outcome is None
    _ask(queue, decision, Doors("h", "{\"ok\": true}", "happened"))
    outcome = queue.get(decision.id).outcome
    assert outcome["resolution"] == "happened" and outcome["result"] == {"ok": True}


def test_in_doubt_retry_is_recorded_once_confirmed(queue):
    decision = _file(queue, in_doubt=True)
    _ask(queue, decision, Doors("t", " RETRY "))
    assert queue.get(decision.id).outcome["resolution"] == "retry"


def test_a_rejection_needs_a_reason_but_no_confirmation(queue):
    decision = _file(queue)
    _ask(queue, decision, Doors("r", "", "duplicate invoice"))
    outcome = queue.get(decision.id).outcome
    assert outcome["status"] == "rejected" and outcome["note"] == "duplicate invoice"


# ---------------------------------------------------------------- the card


LONG_EXPLAIN = ("studiox stopped while calling erp.post_payment, so it may or may not have happened, and the tool "
                "does not promise that calling it again is harmless. Check the system, then say whether it happened.")
LONG_EVIDENCE = "the invoice scan reads total due one thousand seven hundred eighty euros payable within thirty days"
LONG_VALUE = "Payment for invoice INV-2291 covering the delivery of office chairs desks and lamps in March"


def _render(decision: Decision, width: int) -> str:
    """The card as the CLI prints it, its lines joined back into one text (each within ``width``)."""
    # like the CLI's console: soft wrap, which leaves plain lines unwrapped unless the card wraps them
    console = Console(file=io.StringIO(), width=width, highlight=False, soft_wrap=True)
    console.print(panel(decision))
    out = console.file.getvalue()
    assert all(len(line) <= width for line in out.splitlines()), out
    return " ".join(" ".join(line.strip("│╭╮╰╯─ ") for line in out.splitlines()).split())


def _pending(queue, **extra) -> Decision:
    decision = queue.request(run_id="r1", mission="m", step="pay", action=Action(
        "tool", "erp.post_payment", {"amount": 1780, "to": "INV-2291", "reference": LONG_VALUE},
        input_schema=SCHEMA), evidence=[{"step": "extract", "message": LONG_EVIDENCE}], explain=LONG_EXPLAIN,
        timeout=None, **extra)
    return decision


@pytest.mark.parametrize("width", [40, 80, 120])
def test_the_card_wraps_and_never_cuts_at_any_width(queue, width):
    decision = _pending(queue, in_doubt=True)
    out = _render(decision, width)
    assert LONG_EXPLAIN in out  # whole, to its end: at 80 columns it stopped at '…so it ma'
    assert LONG_EVIDENCE in out
    assert all(word in out for word in LONG_VALUE.split())  # in a table's column, between other columns
    assert "decision needed" in out and "1,780" in out and decision.id in out


def test_a_very_narrow_card_still_names_its_decision(queue):
    decision = _pending(queue)
    assert f"decision {decision.id}" in _render(decision, 20)  # in its body: a panel cuts a long title


def test_a_decided_card_says_who_when_and_shows_each_edit_from_to(queue):
    decision = _pending(queue)
    edited = Action("tool", "erp.post_payment", {"amount": 1700.0, "to": "INV-2291", "reference": LONG_VALUE})
    queue.decide(decision.id, APPROVED, by="dana", claimed="Dana (CFO)", note="the invoice says 1,700", action=edited)
    out = _render(queue.get(decision.id), 80)
    assert "decision approved" in out and "decision needed" not in out
    assert "approved by dana (claimed: Dana (CFO)) at " in out and "with edited arguments" in out
    assert "the invoice says 1,700" in out
    assert "approved arguments" in out and "1,780 → 1,700.00 (edited)" in out
    assert "INV-2291 →" not in out  # unchanged arguments read as they are


def test_a_rejected_card_shows_the_reason_and_the_proposed_arguments(queue):
    decision = _pending(queue)
    queue.decide(decision.id, "rejected", by="dana", note="duplicate of INV-2290")
    out = _render(queue.get(decision.id), 60)
    assert "decision rejected" in out and "rejected by dana" in out and "duplicate of INV-2290" in out
    assert "proposed arguments" in out and "1,780" in out


def test_an_in_doubt_card_once_decided_says_what_happened(queue):
    decision = _pending(queue, in_doubt=True)
    queue.decide(decision.id, APPROVED, by="dana", resolution="happened", result={"paid": True})
    out = _render(queue.get(decision.id), 80)
    assert 'it happened, and returned {"paid": true}' in out


# ---------------------------------------------------------------- 'studiox decision show'


def _park(sx, *args) -> str:
    result = sx("run", PAYMENT, *args)
    assert result.returncode == 3, result.stdout + result.stderr
    return result.stdout.split("waiting for a decision ")[1].split(":")[0]


def _shown(sx, decision_id: str, columns: int) -> str:
    shown = sx("decision", "show", decision_id, COLUMNS=columns)
    assert shown.returncode == 0, shown.stderr
    card = shown.stdout.split("╯")[0]  # (the outcome line after it is left to the terminal to wrap)
    assert all(len(line) <= columns for line in card.splitlines()), shown.stdout
    return " ".join(" ".join(line.strip("│╭╮╰╯─ ") for line in card.splitlines()).split())


def test_decision_show_of_an_approved_edited_decision_reads_as_decided(sx):
    decision_id = _park(sx)
    assert sx("approve", decision_id, "--set", "amount=118.5", "--note", "credit note applied",
              "--as", "Dana (CFO)").returncode == 0
    shown = _shown(sx, decision_id, 80)
    assert "decision approved" in shown and "decision needed" not in shown
    assert "(claimed: Dana (CFO))" in shown and "credit note applied" in shown
    assert "approved arguments" in shown and "120 → 118.50 (edited)" in shown


def test_decision_show_of_an_in_doubt_decision_wraps_at_80_columns(sx):

    clean = sx("run", PAYMENT, "--input", "amount=40", "-q")
    store = sx.store()
    seq = next(e["seq"] for e in store.events(clean.stdout.split()[0]) if e["type"] == "action_started")
    store.close()
    run_id = sx.process("run", PAYMENT, "--input", "amount=40", "-q",  # killed: a real process
                        STUDIOX_TEST_KILL_AFTER_EVENT=seq).stdout.split()[0]
    parked = sx("resume", run_id)
    assert parked.returncode == 3, parked.stdout + parked.stderr
    decision_id = parked.stdout.split("waiting for a decision ")[1].split(":")[0]
    shown = _shown(sx, decision_id, 80)
    assert "so it may or may not have happened" in shown  # it used to end '…so it ma'
    assert shown.count("must be called again.") == 1
