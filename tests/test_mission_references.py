"""`validate` checks every expression of a mission, and what a reference reads from a step's
output when the shape of that output is declared (a worker's output schema, a set step's keys)."""

from __future__ import annotations

import pytest

from studiox.errors import MissionInvalid
from studiox.mission import loads

pytestmark = pytest.mark.backends(
    "local", reason="the mission's references are under test; the store is incidental")

HEAD = """\
mission: m
models: {fast: openai/gpt-4o-mini}
integrations: {erp: {command: python}}
verdict: {choices: [Paid, Rejected], value: Paid}
steps:
  - id: extract
    worker:
      instructions: Read the invoice.
      input: text
      output:
        type: object
        properties:
          total: {type: number}
          po: {type: string}
          lines:
            type: array
            items:
              type: object
              properties:
                amount: {type: number}
                sku: {type: string}
          meta:
            type: object
            additionalProperties: true
            properties: {source: {type: string}}
          choice:
            oneOf: [{type: object, properties: {a: {type: string}}}, {type: string}]
  - id: prep
    set:
      total: 3
      nested: {inner: 1, list: [{deep: 2}]}
      computed: "${{ {'x': 1} }}"
"""


def _problems(tail: str) -> list[str]:
    try:
        loads(HEAD + tail, "m.yaml")
    except MissionInvalid as e:
        return [p.message for p in e.problems]
    return []


@pytest.mark.parametrize("outcome", ["on_reject", "on_timeout"])
def test_the_note_of_an_approval_outcome_is_checked(outcome):
    tail = f"""\
  - id: pay
    tool: erp.pay
    approval:
      {outcome}: {{verdict: Rejected, note: "${{{{ steps.extrct.output.total }}}}"}}
"""
    assert _problems(tail) == ["unknown step 'extrct' — did you mean 'extract'?"]


def test_the_note_of_an_approval_outcome_is_checked_for_syntax():
    tail = """\
  - id: pay
    tool: erp.pay
    approval:
      on_reject: {verdict: Rejected, note: "${{ 1 + }}"}
"""
    assert _problems(tail) == ["the expression '1 +' is not valid: invalid syntax"]


@pytest.mark.parametrize("reference, message", [
    ("steps.extract.output.totl", "the output of the step 'extract' has no field 'totl' — did you mean 'total'?"),
    ("steps.extract.output.lines[0].amout",
     "the output of the step 'extract' has no field 'amout' under 'lines[0]' — did you mean 'amount'?"),
    ("steps.extract.output['totals']",
     "the output of the step 'extract' has no field 'totals' — did you mean 'total'?"),
    ("steps.extract.output.zzz",
     "the output of the step 'extract' has no field 'zzz'; its output schema declares total, po, lines, meta, "
     "choice"),
    ("steps.prep.output.totl", "the output of the step 'prep' has no field 'totl' — did you mean 'total'?"),
    ("steps.prep.output.nested.innr",
     "the output of the step 'prep' has no field 'innr' under 'nested' — did you mean 'inner'?"),
    ("steps.prep.output.nested.list[0].deeep",
     "the output of the step 'prep' has no field 'deeep' under 'nested.list[0]' — did you mean 'deep'?"),
])
def test_a_reference_to_an_undeclared_output_field_is_a_problem(reference, message):
    tail = f"  - id: use\n    set: {{y: \"${{{{ {reference} }}}}\"}}\n"
    assert _problems(tail) == [message]


@pytest.mark.parametrize("reference", [
    "steps.extract.output.total",
    "steps.extract.output.lines[0].amount",
    "steps.extract.output.lines[-1].sku",
    "steps.extract.output.lines[i].anything",  # a computed index: the shape is not known
    "steps.extract.output.meta.anything",  # additionalProperties: true
    "steps.extract.output.choice.anything",  # oneOf
    "steps.extract.output.total.anything",  # not an object: not this check's business
    "steps.prep.output.nested.list[0].deep",
    "steps.prep.output.computed.anything",  # the value is computed
    "steps.extract.status",
    "steps.extract.error.message",
])
def test_a_reference_whose_shape_is_unknown_or_declared_is_accepted(reference):
    tail = f"  - id: use\n    foreach: [1]\n    as: i\n    steps:\n      - id: inner\n        set: {{y: \"${{{{ {reference} }}}}\"}}\n"
    assert _problems(tail) == []


def test_a_worker_without_an_output_schema_or_with_open_properties_is_not_second_guessed():
    text = """\
mission: m
models: {fast: openai/gpt-4o-mini}
steps:
  - id: free
    worker: {instructions: Do it., input: x}
  - id: open
    worker:
      instructions: Do it.
      input: x
      output: {type: object, properties: {a: {type: string}}, patternProperties: {"^x": {type: string}}}
  - id: use
    set: {a: "${{ steps.free.output.anything }}", b: "${{ steps.open.output.xyz }}"}
"""
    loads(text, "m.yaml")


LOOP = """\
mission: m
models: {fast: openai/gpt-4o-mini}
integrations: {erp: {command: python}}
inputs:
  tickets: {type: array}
steps:
  - id: triage
    foreach: ${{ inputs.tickets }}
    as: ticket
    steps:
      - id: classify
        worker:
          instructions: Classify the ticket.
          input: ${{ ticket }}
          output:
            type: object
            properties:
              summary: {type: string}
              labels: {type: array, items: {type: object, properties: {name: {type: string}}}}
      - id: mark
        set: {seen: true}
      - id: look
        tool: erp.lookup
  - id: report
    set:
      value: ${{ EXPR }}
"""
_AT = LOOP.index("${{ EXPR }}")
LINE, COLUMN = LOOP[:_AT].count("\n") + 1, _AT - LOOP.rindex("\n", 0, _AT) + len("${{ ")  # where EXPR stands


def _located(expression: str) -> list[tuple[int, int, str]]:
    try:
        loads(LOOP.replace("EXPR", expression), "m.yaml")
    except MissionInvalid as e:
        return [(p.line, p.column, p.message) for p in e.problems]
    return []


def test_a_step_output_read_again_through_a_loop_item_is_reported_where_it_is_with_what_to_write():
    found = _located("[r.classify.output.summary for r in steps.triage.output]")
    assert found == [(LINE, COLUMN + 1, (
        "'r.classify.output' does not exist: 'r.classify' is already the output of the step 'classify' (an item "
        "of a loop's output maps each of its steps to its output) — did you mean 'r.classify.summary'?"))]


def test_validate_prints_the_loop_item_problem_with_file_line_and_column(studiox, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(LOOP.replace("EXPR", "[r.classify.output.summary for r in steps.triage.output]"))
    result = studiox("validate", path)
    assert result.returncode == 2
    assert f"m.yaml:{LINE}:{COLUMN + 1}: steps[1] (id: report).set.value: 'r.classify.output' does not exist" \
           in result.stderr
    assert "did you mean 'r.classify.summary'?" in result.stderr


@pytest.mark.parametrize("expression, message", [
    ("[r.clasify for r in steps.triage.output]",
     "the loop 'triage' has no step 'clasify', so 'r.clasify' does not exist (an item of the loop's output holds "
     "the output of each of its steps: classify, mark, look) — did you mean 'r.classify'?"),
    ("[r.nosuchstep for r in steps.triage.output]",
     "the loop 'triage' has no step 'nosuchstep', so 'r.nosuchstep' does not exist (an item of the loop's output "
     "holds the output of each of its steps: classify, mark, look)"),
    ("[r.classify.summry for r in steps.triage.output]",
     "'r.classify.summry' does not exist: the output of the step 'classify' has no field 'summry' — did you mean "
     "'r.classify.summary'?"),
    ("[r.classify.output.summry for r in steps.triage.output]",  # the field after it is checked too
     "'r.classify.output' does not exist: 'r.classify' is already the output of the step 'classify' (an item of a "
     "loop's output maps each of its steps to its output); and 'r.classify.summry' does not exist: the output of "
     "the step 'classify' has no field 'summry' — did you mean 'r.classify.summary'?"),
    ("[r.mark.sen for r in steps.triage.output if r.mark]",
     "'r.mark.sen' does not exist: the output of the step 'mark' has no field 'sen' — did you mean 'r.mark.seen'?"),
    ("[r.mark.status for r in steps.triage.output]",
     "'r.mark.status' does not exist: an item of a loop's output holds only the output of each of its steps, not "
     "its status ('r.mark' is the output of 'mark')"),
    ("[l.nme for r in steps.triage.output for l in r.classify.labels]",
     "'l.nme' does not exist: the output of the step 'classify' has no field 'nme' under 'labels[*]' — did you "
     "mean 'l.name'?"),
    ("sum([1 for r in steps.triage.output if default(r.classify.output, false)])",
     "'r.classify.output' does not exist: 'r.classify' is already the output of the step 'classify' (an item of a "
     "loop's output maps each of its steps to its output) — did you mean 'r.classify'?"),
])
def test_paths_through_a_loop_item_that_cannot_exist_are_reported(expression, message):
    assert [m for _, _, m in _located(expression)] == [message]


def test_reading_a_loop_output_as_a_mapping_is_reported():
    assert [m for _, _, m in _located("steps.triage.output.classify")] == [
        "'steps.triage.output' is a list, one item per element of the loop 'triage', so it has no field "
        "'classify'; each item holds the outputs of its steps: [r.classify for r in steps.triage.output]"]


@pytest.mark.parametrize("expression", [
    "[r.classify.summary for r in steps.triage.output]",
    "[default(r.classify.summary, '') for r in steps.triage.output if r.mark.seen]",
    "[l.name for r in steps.triage.output for l in r.classify.labels]",
    "[r.look.output for r in steps.triage.output]",  # a tool's result: its shape is not known
    "[r.look.anything.deeper for r in steps.triage.output]",
    "steps.triage.output[0].classify.summary",
    "[r[k] for r in steps.triage.output for k in ['classify']]",  # a computed index
    "[x.output for x in inputs.tickets]",  # not a step's output
    "[r.classify.summary for r in [x for x in steps.triage.output]]",  # a computed list
])
def test_paths_through_a_loop_item_that_may_exist_are_accepted(expression):
    assert _located(expression) == []
