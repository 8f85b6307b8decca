"""What a played case is checked against: its ``expect``, each failure located in the test file."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ExpressionError
from .cases import Case, TestFile, step_id
from .running import Played

MAX_SHOWN = 120


@dataclass
class Failure:
    where: str  # invoice.test.yaml:42
    message: str

    def render(self) -> str:
        return f"{self.where}: {self.message}"


def check(tf: TestFile, case: Case, played: Played) -> list[Failure]:
    """Every expectation of the case that does not hold, in the order the file gives them."""
    expect = case.expect
    at = (*case.at, "expect")
    failures: list[Failure] = []

    def fail(path: tuple, message: str) -> None:
        failures.append(Failure(tf.where(path), message))

    wanted = expect.get("status", "succeeded")
    if played.status != wanted:
        why = played.stopped or (f": {played.error}" if played.error else "")
        why = f" ({why})" if played.stopped else why
        fail((*at, "status") if "status" in expect else case.at, f"the run {_status_words(played.status)}{why}, "
             f"expected it to have {wanted}" if wanted != "waiting" else f"the run {_status_words(played.status)}"
             f"{why}, expected it to wait for a decision")
    if "verdict" in expect and played.verdict != expect["verdict"]:
        fail((*at, "verdict"), f"the verdict is {_shown(played.verdict)}, expected {_shown(expect['verdict'])}")
    if "note" in expect and played.note != expect["note"]:
        fail((*at, "note"), f"the verdict's note is {_shown(played.note)}, expected {_shown(expect['note'])}")
    if "error" in expect and expect["error"] not in (played.error or ""):
        fail((*at, "error"), f"the run's error is {_shown(played.error)}, which does not say {_shown(expect['error'])}")
    for address, status in (expect.get("steps") or {}).items():
        found = _step(played, address)
        now = found["status"] if found else "not_run"
        if now != status:
            fail((*at, "steps", address), f"the step '{address}' {_status_words(now)}, expected {status}"
                 + (f" ({found['error']['message']})" if found and found.get("error") and now == "failed" else ""))
    for i, text in enumerate(expect.get("outputs") or []):
        message = _holds(text, played)
        if message:
            fail((*at, "outputs", i), message)
    if "decisions" in expect:
        _decisions(expect["decisions"], played, (*at, "decisions"), fail)
    for target, wanted_calls in (expect.get("calls") or {}).items():
        _calls(target, wanted_calls, played, (*at, "calls", target), fail)
    return failures


def _status_words(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "was cancelled", "waiting": "is waiting",
            "not_run": "did not run", "skipped": "was skipped", "rejected": "was rejected",
            "interrupted": "was interrupted", "not started": "did not start"}.get(status, status)


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _step(played: Played, address: str) -> dict | None:
    """A step's latest visit: by address, else the step id at the top level."""
    if address in played.steps:
        return played.steps[address]
    visits = [a for a in played.steps if a == address or a.startswith(address + "#")]
    if visits:
        return played.steps[max(visits, key=lambda a: int(a.rsplit("#", 1)[1]) if "#" in a else 1)]
    return None


def scope(played: Played) -> dict:
    """What an ``outputs`` expression reads: the steps (at the top level), inputs and the verdict."""
    steps: dict = {}
    for address in played.steps:
        if "." in address or "[" in address:
            continue
        sid = address.split("#", 1)[0]
        steps[sid] = _step(played, sid)
    return {"steps": steps, "inputs": played.inputs, "verdict": {"value": played.verdict, "note": played.note},
            "run": {"id": played.run, "status": played.status}}


def _holds(text: str, played: Played) -> str | None:
    """Why an expectation does not hold; for a comparison, what its left side was."""
    import ast

    from ..expressions import compile_expr, evaluate, parse_template, render

    data = scope(played)
    try:
        value = render(text, data)
    except ExpressionError as e:
        return f"{text} could not be computed: {e.message}"
    if value is True:
        return None
    whole = parse_template(text).whole  # type: ignore[union-attr]
    tree = whole.tree if whole is not None else None
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1:
        left = ast.get_source_segment(whole.source, tree.left)  # type: ignore[union-attr]
        try:
            found = evaluate(compile_expr(left), data) if left else None
        except ExpressionError:
            found = None
        else:
            return f"{text} does not hold: {left} is {_shown(found)}"
    return f"{text} is {_shown(value)}, expected true"


def _decisions(wanted: dict, played: Played, at: tuple, fail) -> None:
    asked = [d for d in played.decisions if not d["in_doubt"] and d.get("by") != "policy"]  # what reached a person
    for address, expected in wanted.items():
        found = [d for d in asked if address in _names(d)]
        if expected is False:
            if found:
                fail((*at, address), f"the step '{address}' reached the Decision Queue ({found[0]['action']} "
                     f"{_shown(found[0]['arguments'])}), expected it not to")
            continue
        if not found:
            fail((*at, address), f"no action of the step '{address}' reached the Decision Queue")
            continue
        if isinstance(expected, dict):
            first = found[0]
            if "action" in expected and first["action"] != expected["action"]:
                fail((*at, address, "action"), f"the step '{address}' asked to run {first['action']}, expected "
                     f"{expected['action']}")
            for name, value in (expected.get("arguments") or {}).items():
                if first["arguments"].get(name, _MISSING) != value:
                    fail((*at, address, "arguments", name), f"{first['action']} was proposed with {name} = "
                         f"{_shown(first['arguments'].get(name, _MISSING))}, expected {_shown(value)}")
    listed = set(wanted)
    extra = [d for d in asked if not listed & set(_names(d))]
    for d in extra:
        fail(at, f"the step '{d['step']}' also reached the Decision Queue ({d['action']} {_shown(d['arguments'])}); "
             "list it here, or say false")


def _names(decision: dict) -> list[str]:
    """How a case may name the step a decision was asked at: its address, its id, and within a
    sub-mission also ``VIA/ADDRESS`` (``payment/pay``)."""
    names = [decision["step"], step_id(decision["step"])]
    return names + ([f"{decision['via']}/{decision['step']}"] if decision.get("via") else [])


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _calls(target: str, wanted, played: Played, at: tuple, fail) -> None:
    made = [c for c in played.calls if c["tool"] == target]
    times = wanted if isinstance(wanted, int) else wanted.get("times")
    arguments = {} if isinstance(wanted, int) else wanted.get("arguments") or {}
    fitting = [c for c in made if all(c["arguments"].get(k, _MISSING) == v for k, v in arguments.items())]
    with_args = f" with {_shown(arguments)}" if arguments else ""
    if times is None:
        if not fitting:
            seen = f"; its calls: {', '.join(_shown(c['arguments']) for c in made[:3])}" if made else ""
            fail(at, f"{target} was not called{with_args}{seen}")
    elif len(fitting) != times:
        fail(at, f"{target} was called {_times(len(fitting))}{with_args}, expected {_times(times)}")


def _times(n: int) -> str:
    return {0: "not at all", 1: "once", 2: "twice"}.get(n, f"{n} times")
