"""No silent nulls: reading what is not there is an error naming the path, unless written with default()."""

from __future__ import annotations

import json

import pytest

from studiox.errors import ExpressionError, MissingValue
from studiox.expressions import render

pytestmark = pytest.mark.backends(
    "local", reason="expression semantics are under test; the store is incidental")

DATA = {
    "inputs": {"lines": [{"amount": 2}, {"amount": 3}], "empty": {}, "word": "abc"},
    "steps": {
        "extract": {"output": {"invoice_number": "INV-1", "po_number": "PO-1", "total": 5}, "status": "succeeded",
                    "error": None},
        "pay": {"output": None, "status": "skipped", "error": None},
        "look": {"output": None, "status": "failed", "error": {"kind": "tool_error", "message": "down"}},
        "triage": {"output": [{"classify": {"label": "spam"}}, {"classify": None}], "status": "succeeded",
                   "error": None},
    },
}


@pytest.mark.parametrize("text, message", [
    ("${{ steps.extract.output.summary }}",
     "steps.extract.output has no field 'summary' (its fields: invoice_number, po_number, total) "
     "(in '${{ steps.extract.output.summary }}')"),
    ("${{ steps.budget.output.available }}",
     "steps.budget has not run (in '${{ steps.budget.output.available }}')"),
    ("${{ steps['budget'] }}", "steps['budget'] has not run (in '${{ steps['budget'] }}')"),
    ("${{ steps.pay.output.payment_id }}",
     "steps.pay.output is null (the step was skipped), so it has no field 'payment_id' "
     "(in '${{ steps.pay.output.payment_id }}')"),
    ("${{ steps.look.output.total }}",
     "steps.look.output is null (the step failed), so it has no field 'total' (in '${{ steps.look.output.total }}')"),
    ("${{ steps.extract.error.message }}",
     "steps.extract.error is null (the step succeeded), so it has no field 'message' "
     "(in '${{ steps.extract.error.message }}')"),
    ("${{ inputs.lines[5].amount }}", "inputs.lines[5]: the list has 2 items (in '${{ inputs.lines[5].amount }}')"),
    ("${{ inputs.lines[len(inputs.lines)] }}",
     "inputs.lines[2]: the list has 2 items (in '${{ inputs.lines[len(inputs.lines)] }}')"),
    ("${{ inputs.word[-4] }}", "inputs.word[-4]: the text has 3 characters (in '${{ inputs.word[-4] }}')"),
    ("${{ inputs.empty.x }}", "inputs.empty has no field 'x' (it has no fields) (in '${{ inputs.empty.x }}')"),
    ("${{ [r.classify.label for r in steps.triage.output] }}",
     "r.classify is null, so it has no field 'label' (in '${{ [r.classify.label for r in steps.triage.output] }}')"),
])
def test_reading_what_is_not_there_is_an_error_naming_the_path_as_written(text, message):
    with pytest.raises(MissingValue) as caught:
        render(text, DATA)
    assert caught.value.message == message


def test_the_error_says_which_field_of_the_mission_the_expression_is_in():
    with pytest.raises(MissingValue) as caught:
        render({"note": ["ok", "${{ steps.extract.output.summary }}"]}, DATA, "arguments")
    assert caught.value.message.endswith("(in '${{ steps.extract.output.summary }}' at arguments.note[1])")


def test_the_fields_named_beside_a_missing_one_are_the_first_few_and_a_long_key_is_shortened():
    data = {"inputs": {"m": {f"k{i}": i for i in range(100_000)}, "long": "z" * 50_000}}
    with pytest.raises(MissingValue) as caught:
        render("${{ inputs.m[inputs.long] }}", data)
    assert caught.value.message.startswith("inputs.m has no field 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz… "
                                           "(its fields: k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, "
                                           "k14, k15, k16, k17, k18, k19, …)")


def test_default_over_many_missing_values_does_not_spend_time_describing_them():
    data = {"inputs": {"m": {f"k{i}": i for i in range(100_000)}, "keys": ["z" * 50_000] * 5_000}}
    assert render("${{ len([default(inputs.m[k], 0) for k in inputs.keys]) }}", data) == 5_000


def test_a_field_of_a_number_is_still_a_plain_expression_error():
    with pytest.raises(ExpressionError) as caught:
        render("${{ steps.extract.output.total.cents }}", DATA)
    assert not isinstance(caught.value, MissingValue)
    assert caught.value.message.startswith("steps.extract.output.total is a number, so it has no field 'cents'")


@pytest.mark.parametrize("text, expected", [
    ("${{ default(steps.extract.output.summary, 'none') }}", "none"),
    ("${{ default(steps.budget.output.remaining.after[3].amount, 0) }}", 0),
    ("${{ default(steps.pay.output.payment_id, 'not paid') }}", "not paid"),
    ("${{ default(inputs.lines[9].amount, -1) }}", -1),
    ("${{ default(steps.extract.output.total, 0) }}", 5),
    ("${{ default(null, 'was null') }}", "was null"),
    ("${{ [default(r.classify.label, 'unread') for r in steps.triage.output] }}", ["spam", "unread"]),
    ("${{ default(steps.extract.output.total, 1 / 0) }}", 5),  # the fallback is computed only when needed
    ("${{ 'summary' in steps.extract.output }}", False),  # a presence test
    ("${{ 'budget' in steps }}", False),
])
def test_default_is_the_optional_form_for_a_value_that_may_be_missing(text, expected):
    assert render(text, DATA) == expected


def test_default_catches_only_a_missing_value_not_other_errors():
    with pytest.raises(ExpressionError, match="division by zero"):
        render("${{ default(steps.extract.output.total / 0, 1) }}", DATA)
    with pytest.raises(ExpressionError, match="cannot add text and number"):
        render("${{ default(inputs.word + 1, 1) }}", DATA)


# ---------------------------------------------------------------------------- in a run


def _run(studiox, tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    result = studiox("run", path)
    run_id = studiox.run_ids()[0]
    return result, studiox.state(run_id)


MISSING_FIELD = """\
mission: missing-field
inputs:
  doc: {type: object, default: {number: INV-7}}
steps:
  - id: read
    set: {summary: "${{ inputs.doc.summary }}"}
    on_error: {goto: recover}
  - id: jumped_over
    set: {x: 1}
  - id: recover
    set: {why: "${{ default(steps.read.error.message, 'nothing went wrong') }}"}
verdict:
  choices: [Read, Recovered]
  cases:
    - when: "${{ steps.read.status == 'failed' }}"
      value: Recovered
      note: "${{ steps.recover.output.why }}"
  otherwise: {value: Read}
"""


def test_a_step_whose_expression_reads_a_missing_field_fails_and_its_on_error_goto_applies(studiox, tmp_path):
    result, state = _run(studiox, tmp_path, MISSING_FIELD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (state["status"], state["verdict"]) == ("succeeded", "Recovered")
    read = next(s for s in state["steps"] if s["step"] == "read")
    assert read["status"] == "failed" and read["error"]["kind"] == "expression"
    assert read["error"]["message"] == ("inputs.doc has no field 'summary' (its fields: number) "
                                        "(in '${{ inputs.doc.summary }}' at set.summary)")
    assert [s["step"] for s in state["steps"]] == ["read", "recover"]
    assert state["note"] == read["error"]["message"]


def test_a_condition_that_reads_a_missing_field_fails_the_step(studiox, tmp_path):
    result, state = _run(studiox, tmp_path, MISSING_FIELD.replace(
        "    set: {summary:", "    when: ${{ inputs.doc.ready }}\n    set: {summary:"))
    read = next(s for s in state["steps"] if s["step"] == "read")
    assert read["error"]["message"] == ("inputs.doc has no field 'ready' (its fields: number) "
                                        "(in '${{ inputs.doc.ready }}' at when)")
    assert state["verdict"] == "Recovered"


def test_a_verdict_that_reads_a_step_that_did_not_run_fails_the_run_clearly(studiox, tmp_path):
    result, state = _run(studiox, tmp_path, MISSING_FIELD.replace(
        "steps.read.status == 'failed'", "steps.jumped_over.output.x == 1"))
    assert result.returncode == 1
    assert state["status"] == "failed"
    assert state["error"] == {"step": "verdict", "kind": "expression", "message": (
        "steps.jumped_over has not run (in '${{ steps.jumped_over.output.x == 1 }}' at verdict.cases[0].when)")}
    assert "failed at verdict: steps.jumped_over has not run" in result.stdout


def test_the_optional_form_lets_a_run_go_on_where_a_field_may_be_absent(studiox, tmp_path):
    text = MISSING_FIELD.replace("inputs.doc.summary", "default(inputs.doc.summary, 'no summary')")
    result, state = _run(studiox, tmp_path, text)
    assert state["verdict"] == "Read"
    assert [s["step"] for s in state["steps"]] == ["read", "jumped_over", "recover"]
    assert json.dumps(state["steps"][0]["output"]) == '{"summary": "no summary"}'


def test_the_expense_example_reads_a_line_without_a_receipt_as_having_none(studiox, tmp_path):
    from conftest import ROOT

    report = tmp_path / "report.yaml"
    report.write_text("report:\n  employee: Ada\n  lines:\n    - {category: meals, amount: 30}\n", encoding="utf-8")
    result = studiox("run", ROOT / "missions" / "expenses.yaml", "--inputs", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        "verdict: Approved with note — 1 line(s) over 25 EUR without a receipt; total 30 EUR")
