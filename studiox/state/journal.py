"""A run's journal: append events in order, and derive everything else from them.

The journal is the run. Its status, the outputs that expressions read, the attempts made so
far and the decisions waited for are all computed here from the events, never stored beside
them, so nothing can disagree with the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import secrets
from . import chain
from .store import Store, to_json

TERMINAL = {"run_finished"}
JOURNAL_FORMAT = 1  # what run_started says; a newer format is never driven by an older studiox
EVENT_TYPES = (
    "run_started",       # mission snapshot (source, digest), inputs, who started it
    "run_resumed",       # a process took the run up again (after a pause, a crash or Ctrl-C)
    "run_interrupted",   # Ctrl-C: the run stopped cleanly and can be resumed
    "run_reopened",      # a failed run is tried again from its failed step (resume --retry)
    "step_started",      # an attempt of a step begins (journaled before the step acts)
    "step_failed",       # an attempt failed; says whether and when it is retried
    "step_finished",     # the step's final outcome: succeeded, failed (handled) or skipped, with output
    "item_finished",     # one item of a foreach finished, with its outputs
    "observation",       # what a step saw or did, and why (the Observations rail)
    "action_started",    # a state-changing call is about to be made (journaled before it), with its key
    "action_finished",   # that call's result (or its reported failure)
    "model_call",        # one model turn of a worker: the reply, tokens, cost, latency (the conversation)
    "waiting",           # the run parks until a decision is made
    "decision_applied",  # the decision the run acted on
    "key_set",           # the run's business key, once the steps it is computed from have run
    "run_finished",      # succeeded (with a verdict), failed (with an error) or cancelled
)


GROUP_WINDOW = 0.002  # seconds: events queued this close together share one commit (see Journal.append_soon)


class Journal:
    """Appends events to one run; the only writer of that run while its lock is held.

    Three ways to write, by what the event means for the outside world:

    - :meth:`append` commits now (with anything queued before it): on disk when it returns. For
      what must be durable before studiox goes on: an action announced before its call, its
      result, a model's answer, a decision, a step's result.
    - :meth:`note` queues an event that announces nothing to the outside world (a step starting):
      it goes to disk with the next commit, so a step with no outside effect costs one commit, not
      two. Lost in a crash, it changes nothing: resume redoes that step, which had no effect.
    - :meth:`append_soon` (group commit) queues the event and waits until a commit holds it: the
      concurrent items of a ``foreach`` that finish together share one commit, made by the first of
      them once a turn of the event loop brings no new event (and within :data:`GROUP_WINDOW`). Nothing is acted on before the commit that records what it rests on.

    The listener (the live rail, test doors) hears of each event once it is on disk, in order, in
    the run's own task; an exception it raises stops the run, and the journal takes nothing more.
    """

    def __init__(self, store: Store, run_id: str, *, clock: Callable[[], float],
                 after_append: Callable[[dict], None] | None = None):
        self.store = store
        self.run_id = run_id
        self.clock = clock
        last = store.last_event(run_id)
        self.seq = last["seq"] if last else 0
        # the hash chain (see chain.py): a new run is chained (keyed when STUDIOX_AUDIT_KEY is set);
        # a run journaled before chains existed stays unchained
        self.chain = (chain.KEYED if chain.audit_key() else chain.PLAIN) if last is None else \
            chain.kind_of(store.event(run_id, 1) if self.seq > 1 else last)
        self.key = chain.key_for(run_id, self.chain)
        self.head = (last or {}).get("chain", "")
        self.after_append = after_append
        self.pending: list[dict] = []
        self._texts: dict[int, str] = {}  # seq → the sealed JSON text of a pending chained event
        self._group: asyncio.Future | None = None
        self._broken: BaseException | None = None  # what stopped the journal: every later call raises it

    def _queue(self, type_: str, fields: dict) -> dict:
        if self._broken is not None:
            raise self._broken
        event = {"seq": self.seq + 1, "type": type_, "at": round(self.clock(), 6), **fields}
        if secrets.active():  # masked before it is chained: the journal never holds a secret
            event = secrets.redact_value(event)
        if self.chain is not None:
            if event["seq"] == 1:
                event["audit"] = {"chain": self.chain}
            try:
                self.head, text = chain.sealed(self.head, event, self.key)
            except ValueError:  # NaN or a lone surrogate: said the way the store says it
                to_json(event, f"the {type_} event of run {self.run_id}", "the run stopped here — fix where this "
                        "value comes from, then start a new run")
                raise
            event["chain"] = self.head
            self._texts[event["seq"]] = text  # (the store keeps this text: the event is encoded once)
        self.seq += 1
        self.pending.append(event)
        return event

    def append(self, type_: str, **fields) -> dict:
        """Commit an event (and any queued before it) to disk, then tell the listener."""
        event = self._queue(type_, fields)
        self.flush()
        return event

    def note(self, type_: str, **fields) -> dict:
        """Queue an event that may wait for the next commit (see the class's docstring)."""
        return self._queue(type_, fields)

    async def append_soon(self, type_: str, **fields) -> dict:
        """Queue an event and return once it is on disk, in a commit shared with what else was queued meanwhile."""
        event = self._queue(type_, fields)
        if self._group is not None:  # a commit is being gathered: wait for it
            await asyncio.shield(self._group)
            return event
        loop = asyncio.get_running_loop()
        group = self._group = loop.create_future()
        try:  # gather while siblings keep queueing (each turn of the loop lets them), for GROUP_WINDOW at most
            deadline, seen = loop.time() + GROUP_WINDOW, 0
            while len(self.pending) != seen and loop.time() < deadline and not group.done():
                seen = len(self.pending)
                await asyncio.sleep(0)
        finally:  # (cancelled while gathering: what was gathered is still committed)
            if not group.done():
                self.flush()
        group.result()  # another commit took the group's events: it raised if it failed
        return event

    def flush(self) -> None:
        """Commit every queued event in one transaction, then tell the listener of each, in order."""
        if self._broken is not None:
            raise self._broken
        group, self._group = self._group, None
        batch, self.pending = self.pending, []
        try:
            if batch:
                texts, self._texts = self._texts, {}
                self.store.append_all(self.run_id, [(e["seq"], e) for e in batch], texts)
            if group is not None:
                group.set_result(None)
            if self.after_append:
                for event in batch:
                    self.after_append(event)
        except BaseException as e:
            self._broken = e  # events lost, or a listener stopped the run: nothing may be journaled after
            if group is not None and not group.done():
                group.set_exception(e)
                group.exception()  # (its waiters see it; nobody else needs to)
            raise

    def flush_quietly(self) -> None:
        """Commit what is queued when a drive stops; a failure here is the one that stopped it, said already."""
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class RunState:
    """What a run's events say about it."""

    run_id: str
    started: dict | None = None
    finished: dict | None = None
    waiting: dict | None = None  # the open 'waiting' event, if the run is parked
    last: dict | None = None
    done: dict[str, dict] = field(default_factory=dict)  # step address → its step_finished event
    running: dict[str, dict] = field(default_factory=dict)  # step address → its step_started, while unfinished
    items: dict[tuple[str, int], dict] = field(default_factory=dict)  # (foreach address, index) → item_finished
    attempts: dict[str, int] = field(default_factory=dict)  # step address → attempts that failed
    waiting_by_step: dict[str, dict] = field(default_factory=dict)  # step address → its 'waiting' event
    decided: dict[str, dict] = field(default_factory=dict)  # step address → its 'decision_applied' event
    observations: list[dict] = field(default_factory=list)
    actions: dict[str, dict] = field(default_factory=dict)  # step address → its last action_* event
    action_keys: dict[str, dict] = field(default_factory=dict)  # idempotency key → its last action_* event
    model_calls: list[dict] = field(default_factory=list)  # every model_call event, in order
    resumed: int = 0
    key: str | None = None  # the business key (the mission's ``key``), once known

    def note_action(self, event: dict) -> dict:
        """Take in an action_started/action_finished event (as derive does, and as a drive appends them)."""
        key = event.get("key") or (self.actions.get(event["step"]) or {}).get("key")
        self.actions[event["step"]] = event
        if key:
            self.action_keys[key] = event
        return event

    @property
    def mission_name(self) -> str:
        return (self.started or {}).get("mission", "?")

    def status(self, driven: bool) -> str:
        """succeeded · failed · cancelled · waiting · running · interrupted."""
        return run_status(self.finished or self.last, driven=driven, waiting=self.waiting is not None)

    @property
    def verdict(self) -> str | None:
        return (self.finished or {}).get("verdict")

    @property
    def duration(self) -> float | None:
        if not self.started or not self.last:
            return None
        return self.last["at"] - self.started["at"]


def run_status(last: dict | None, *, driven: bool, waiting: bool | None = None) -> str:
    """The one rule for a run's status, from its last event (and, when known, whether a decision is open).

    A listing reads only the last event: a run is waiting when it parked (``waiting``) or was
    interrupted at the decision prompt (``run_interrupted`` naming the decision it waits for).
    """
    if last is not None and last["type"] in TERMINAL:
        return last["status"]
    if driven:
        return "running"
    if waiting is None:
        waiting = last is not None and (last["type"] == "waiting" or bool(last.get("waiting")))
    return "waiting" if waiting else "interrupted"


def usage_of(calls: list[dict]) -> dict:
    """What model calls used: replayed and cached calls are counted apart, and tokens and dollars
    are summed only where known (null when no call has them: replayed turns invent none)."""

    def known(key: str):
        values = [e[key] for e in calls if e.get(key) is not None]
        return round(sum(values), 6) if values else None

    return {"model_calls": len(calls), "replayed": sum(1 for e in calls if e.get("replayed")),
            "cached": sum(1 for e in calls if e.get("cached")), "input_tokens": known("input_tokens"),
            "output_tokens": known("output_tokens"), "cost_usd": known("cost_usd")}


def derive(run_id: str, events: list[dict]) -> RunState:
    """Fold a run's events into its state; an event that is not as studiox writes it is a StoreError."""
    state = RunState(run_id)
    for ev in events:
        try:
            _fold(state, ev)
        except (KeyError, TypeError, AttributeError):
            from ..errors import StoreError

            raise StoreError(f"event {ev.get('seq', '?')} of run {run_id} is malformed, so the run's journal cannot be "
                             "trusted; the state folder was left untouched") from None
    return state


def _fold(state: RunState, ev: dict) -> None:
    kind = ev["type"]
    state.last = ev
    if kind == "run_started":
        state.started = ev
        state.key = ev.get("key")
    elif kind == "key_set":
        state.key = ev["key"]
    elif kind == "step_started":
        state.running[ev["step"]] = ev
    elif kind == "step_finished":
        state.done[ev["step"]] = ev
        state.running.pop(ev["step"], None)
    elif kind == "step_failed":
        state.attempts[ev["step"]] = max(state.attempts.get(ev["step"], 0), ev["attempt"])
    elif kind == "item_finished":
        state.items[(ev["step"], ev["index"])] = ev
    elif kind == "waiting":
        state.waiting = ev
        state.waiting_by_step[ev["step"]] = ev
    elif kind == "decision_applied":
        state.decided[ev["step"]] = ev
        if state.waiting and state.waiting.get("decision") == ev["decision"]:
            state.waiting = None
    elif kind == "observation":
        state.observations.append(ev)
    elif kind in ("action_started", "action_finished"):
        state.note_action(ev)
    elif kind == "model_call":
        state.model_calls.append(ev)
    elif kind == "run_resumed":
        state.running.clear()  # what the process before was doing stopped with it
        state.resumed += 1
    elif kind == "run_interrupted":
        state.running.clear()
    elif kind == "run_reopened":  # a failed run taken up again: its failed step gets fresh attempts
        state.finished = None
        state.attempts.clear()
    elif kind in TERMINAL:
        state.finished = ev
        state.running.clear()


def summary(store: Store, run_id: str) -> tuple[dict | None, dict | None]:
    """The first and last events of a run, read in two lookups: enough for a listing."""
    last = store.last_event(run_id)
    if last is None:
        return None, None
    return store.event(run_id, 1), last


def resolve_run(store: Store | None, text: str) -> str:
    """A run id from what a person typed: the whole id, or a prefix that names one run."""
    from ..errors import RunNotFound

    if store is None:
        raise RunNotFound(f"no run '{text}': there are no runs here yet")
    if store.record(f"run:{text}") is not None:
        return text
    matches = [k.removeprefix("run:") for k, _ in store.records(f"run:{text}")] if text else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunNotFound(f"'{text}' matches several runs ({', '.join(matches[:5])}); type more of the id")
    if store.count_runs() == 0:  # (a PostgreSQL database always has a store: it may be just as empty)
        raise RunNotFound(f"no run '{text}': there are no runs here yet")
    raise RunNotFound(f"no run '{text}' in {store.where} (see 'studiox runs')")
