"""`validate` checks every expression of a mission, and what a reference reads from a step's
output when the shape of that output is declared (a worker's output schema, a set step's keys)."""

from __future__ import annotations

import pytest

from studiox.errors import MissionInvalid
from studiox.mission import loads

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
