"""Driving a case: its run in a state folder of its own, its scripted decisions, its crash variants.

A run goes in *segments*: start (or resume) and drive until it finishes or parks; between two,
the case's scripted decisions are made, as a person would make them. Under crash injection each
segment runs in a child process that the engine kills (SIGKILL) right after the chosen journal
event is on disk, exactly as ``kill -9`` would; the next segment resumes the run. A call that the
kill cut off comes back as an in-doubt decision, which the runner answers from the record of the
calls the stubs really received (it happened, with its result; or it did not, call it again),
as a person checking the other system would. Under ``real:`` integrations there is no such
record, and an in-doubt decision is where the variant stops: reported, as the engine promises.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .. import api
from ..errors import StudioxError
from ..trail import descendants
from .cases import DEFAULT_DECIDER, Case, TestFile, step_id
from .doubles import ports_for, read_calls

MAX_SEGMENTS = 50  # drives of one run (each decision, each kill, resumes it once)
# a case's run is the only run of a throwaway state folder, whatever backend the team's runs use: the
# local store, never a shared database (where a case would find other runs, and leave its own)
LOCAL = "local"


@dataclass
class Played:
    """What a case's run came to, as plain data (it crosses process boundaries as JSON)."""

    run: str | None
    status: str
    verdict: str | None = None
    note: str | None = None
    error: str | None = None
    steps: dict = field(default_factory=dict)  # address → {status, output, error}
    decisions: list = field(default_factory=list)  # [{step, action, arguments, in_doubt, status}]
    calls: list = field(default_factory=list)
    events: list = field(default_factory=list)  # [(seq, type)] of the whole run
    inputs: dict = field(default_factory=dict)
    stopped: str | None = None  # why the runner stopped before the run ended (an unscripted decision)
    killed: bool = False


class CaseError(StudioxError):
    """A case could not be played (not an expectation that failed: the run could not go on)."""


def play(tf: TestFile, case: Case, home: Path, descriptions: dict, *, kill_at: int | str | None = None,
         fork: bool = True) -> Played:
    """Run a case to its end (or to a decision it does not script), killing it after event ``kill_at``."""
    used: dict[str, int] = {}
    killed = False
    stopped = None
    for _ in range(MAX_SEGMENTS):
        kill = None if killed else kill_at
        if fork or kill is not None:
            died = _in_child(lambda k=kill: _segment(tf, case, home, descriptions, k))
            killed = killed or died
        else:
            _segment(tf, case, home, descriptions, None)
        store = api.need_store(home, backend=LOCAL)
        try:
            run_id = _the_run(store)
            state = api.run_state(store, run_id) if run_id else None
            if run_id is None or state is None or state.finished:
                break
            if state.waiting is None:
                continue  # cut off mid-way: resume
            stopped = _decide(store, run_id, case, used, home)
            if stopped:
                break
        finally:
            store.close()
    else:
        stopped = f"the run had not ended after {MAX_SEGMENTS} drives"
    return observe(home, stopped=stopped, killed=killed)


def _segment(tf: TestFile, case: Case, home: Path, descriptions: dict, kill_at: int | str | None) -> None:
    """Start the case's run, or resume it; drive it until it ends or parks."""
    from ..engine import Engine

    store = api.open_store(home, create=True, backend=LOCAL)
    assert store is not None
    try:
        engine = Engine(store, ports=ports_for(case, descriptions, home, tf.where((*case.at, "models"))),
                        kill_after_event=kill_at)
        run_id = _the_run(store)
        if run_id is None:
            run_id = engine.start(tf.mission, case.inputs, {"allow_duplicate": True})
            engine.drive(run_id, mission=tf.mission)
        elif not api.run_state(store, run_id).finished:
            engine.drive(run_id, resume=True, mission=tf.mission)
    finally:
        store.close()


def _in_child(work) -> bool:
    """Do ``work`` in a forked child; True when the child was killed (SIGKILL), as crash injection does.

    Anything else that ends the child early is a bug of studiox or of the runner, said as one."""
    errors = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (coverage does not follow a fork)
        os.close(errors[0])
        code = 0
        try:
            work()
        except BaseException:  # noqa: BLE001 - reported to the parent, whatever it is
            os.write(errors[1], traceback.format_exc().encode()[-8000:])
            code = 70
        os._exit(code)
    os.close(errors[1])
    with os.fdopen(errors[0], "rb") as pipe:
        said = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return True
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise CaseError(f"the run's process failed:\n{said.strip() or f'status {status}'}")
    return False


def _the_run(store) -> str | None:
    """The case's run: the one no other run started (its sub-missions' runs are its children)."""
    for run_id in store.run_ids():
        if not (store.event(run_id, 1) or {}).get("parent"):
            return run_id
    return None


def _decide(store, run_id: str, case: Case, used: dict[str, int], home: Path) -> str | None:
    """Make the pending decisions of the run that the case scripts; why not, when one is not."""
    pending = list(api.list_decisions(store))  # the case's run's, and its sub-missions' runs'

    if not pending:
        return None  # decided already (the kill came after the decision): resume
    for decision in pending:
        request = decision.request
        if request.get("in_doubt"):
            stop = _settle(store, decision, case, home)
            if stop:
                return stop
            continue
        address = request["step"]
        via = next((v for c, v in descendants(store, run_id) if c == decision.run_id), None)
        names = [f"{via}/{address}"] if via else []
        names += [address, step_id(address)]
        slot = next((n for n in names if n in case.decisions), names[-1])
        scripted = case.decisions.get(slot)
        index = used.get(slot, 0)
        if not scripted or index >= len(scripted):
            return f"the run waits for a decision the case does not script: {request['action']['target']} at " \
                   f"step '{address}' (add it under decisions:)"
        used[slot] = index + 1
        _apply(store, decision.id, scripted[index])
    return None


def _apply(store, decision_id: str, scripted) -> None:
    if scripted in ("approve", "reject"):
        scripted = {scripted: True} if scripted == "approve" else {"reject": "rejected by the test"}
    if "approve" in scripted:
        how = scripted["approve"] if isinstance(scripted["approve"], dict) else {}
        edits = [f"{name}={json.dumps(value) if not isinstance(value, str) else value}"
                 for name, value in (how.get("set") or {}).items()]
        api.decide(store, decision_id, "approved", by=how.get("by", DEFAULT_DECIDER), note=how.get("note"),
                   edits=edits or None, groups=how.get("groups", []))
    else:
        how = scripted["reject"] if isinstance(scripted["reject"], dict) else {"note": scripted["reject"]}
        api.decide(store, decision_id, "rejected", by=how.get("by", DEFAULT_DECIDER), note=how["note"],
                   groups=how.get("groups", []))


def _settle(store, decision, case: Case, home: Path) -> str | None:
    """An in-doubt call: did it happen? The stubs' record says; a real integration's cannot."""
    slot = decision.request.get("slot", "")
    seq = int(slot.rsplit("#", 1)[1]) if "#" in slot else None
    started = store.event(decision.run_id, seq) if seq else None
    key = (started or {}).get("key")
    target = decision.request["action"]["target"]
    if key is None or target.split(".", 1)[0] in case.real:
        return f"in doubt: the call of {target} was cut off and only a person can say whether it happened " \
               f"(decision {decision.id})"
    made = [c for c in read_calls(home) if c["key"] == key]
    if made:
        api.decide(store, decision.id, "approved", by=DEFAULT_DECIDER, resolution="happened",
                   result=json.dumps(made[-1]["result"]), groups=[])
    else:
        api.decide(store, decision.id, "approved", by=DEFAULT_DECIDER, resolution="retry", groups=[])
    return None


def observe(home: Path, *, stopped: str | None = None, killed: bool = False) -> Played:
    """What the case's state folder says about its run."""
    store = api.need_store(home, backend=LOCAL)
    try:
        run_id = _the_run(store)
        if run_id is None:
            return Played(None, "not started", stopped=stopped, killed=killed)
        events = store.events(run_id)
        from ..state.journal import derive

        state = derive(run_id, events)
        finished = state.finished or {}
        steps = {address: {"status": ev["status"], "output": ev.get("output"), "error": ev.get("error")}
                 for address, ev in state.done.items()}
        below = descendants(store, run_id)
        via = dict(below)
        decisions = [{"step": d.request["step"], "via": via.get(d.run_id), "action": d.request["action"]["target"],
                      "arguments": d.request["action"]["arguments"], "in_doubt": bool(d.request.get("in_doubt")),
                      "status": d.status, "by": (d.outcome or {}).get("by")}
                     for d in api.list_decisions(store, include_all=True) if d.run_id == run_id or d.run_id in via]
        points: list[tuple] = [(e["seq"], e["type"]) for e in events]
        for child, at in below:  # a sub-mission's events are kill points too: VIA:SEQ
            points += [(f"{at}:{e['seq']}", e["type"]) for e in store.events(child)]
        error = finished.get("error") or {}
        return Played(run_id, state.status(driven=False), state.verdict, finished.get("note"),
                      error.get("message") if isinstance(error, dict) else str(error), steps, decisions,
                      read_calls(home), points,
                      (state.started or {}).get("inputs", {}), stopped, killed)
    finally:
        store.close()


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result
