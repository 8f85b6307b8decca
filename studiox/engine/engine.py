"""The durable engine: starts runs and drives them, one process per run, holding its lock."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import __version__, expressions
from .. import mission as missions
from ..adapters import otel
from ..adapters.ports import Ports
from ..errors import (
    DuplicateRun,
    InputsInvalid,
    RunLocked,
    RunNotFound,
    RunNotResumable,
    StepError,
    StudioxError,
)
from ..governance import Decision, DecisionQueue, os_user
from ..mission import Mission
from ..state import chain, keys
from ..state.journal import JOURNAL_FORMAT, Journal, RunState, derive
from ..state.store import Store
from .control import Outcome
from .walk import Run, key_text

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


class Engine:
    """Starts and drives runs in one state folder. Time, randomness and ids come in as doors."""

    def __init__(
        self,
        store: Store,
        *,
        ports: Callable[[Mission, str, dict], Ports] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        new_id: Callable[[], str] | None = None,
        listener: Callable[[dict], None] | None = None,
        kill_after_event: int | str | None = None,
        prompt: Callable[[Decision, DecisionQueue], None] | None = None,
    ):
        self.store = store
        self.ports = ports or self._default_ports
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.new_id = new_id or (lambda: "".join(secrets.choice(_ID_ALPHABET) for _ in range(8)))
        self.listener = listener
        self.kill_after_event = kill_after_event
        self.telemetry = None  # spans of the drive under way, when OpenTelemetry is on (adapters/otel.py)
        self.prompt = prompt  # asks a person at a terminal; None parks the run instead
        self.decisions = DecisionQueue(store, clock)

    def start(self, mission: Mission, inputs: dict, options: dict | None = None, *, run_id: str | None = None,
              parent: dict | None = None, via: str | None = None, user: str | None = None) -> str:
        """Create a run: register it and journal its start (with the mission snapshot).

        ``options`` are the run's settings from the command line (``model``, ``cache``,
        ``replay``); they are journaled so that a resumed run keeps them. A child run (see
        :meth:`child_run`) comes with its claimed ``run_id``, its ``parent`` (run and step) and
        the ``via`` its events are marked with on the parent's rail. ``user``: who starts it, when a
        face has identified them (the portal's logged-in person); else the OS user of this process.
        """
        options = dict(options or {})
        children = options.pop("children", None)  # a child run: its parent's snapshot of the missions below
        if children is None and any(step.kind == "mission" for step in mission.walk()):
            children = missions.descendants(mission)
        key = start_key(mission, inputs)
        if key is not None and not options.get("allow_duplicate"):
            self._refuse_duplicate(key, keys.live_runs(self.store, mission.name, key, other_than=""))
        if run_id is not None:
            self.store.add_record(f"run:{run_id}", {"mission": mission.name, "created": self.clock()})
        for _ in range(0 if run_id is not None else 20):
            run_id = self.new_id()
            if self.store.add_record(f"run:{run_id}", {"mission": mission.name, "created": self.clock()}):
                break
        else:
            if run_id is None:  # pragma: no cover - 31^8 ids
                raise StudioxError("could not find a free run id")
        assert run_id is not None
        self._journal(run_id, via=via).append(
            "run_started", run=run_id, mission=mission.name, version=mission.version, file=mission.file,
            path=str(Path(mission.file).resolve()),
            digest=mission.digest, source=mission.source, inputs=inputs, studiox=__version__,
            journal_format=JOURNAL_FORMAT, pid=os.getpid(), host=socket.gethostname(), user=user or os_user(),
            options=options, **({"key": key} if key is not None else {}),
            **({"parent": parent} if parent is not None else {}),
            **({"children": children} if children else {}),
        )
        if key is not None:
            keys.register(self.store, mission.name, key, run_id, self.clock())
            if not options.get("allow_duplicate"):
                # another process may have started one for the key since the check above. Registered
                # first, checked after: of two racing starts at least one sees the other (both may)
                earlier = keys.live_runs(self.store, mission.name, key, other_than=run_id)
                if earlier:
                    self._journal(run_id, via=via).append("run_finished", status="cancelled", user=os_user(), reason=(
                        f"{key} already had a run that had not finished: {earlier[0]['run']}"))
                    self._refuse_duplicate(key, earlier)
        return run_id

    @staticmethod
    def _refuse_duplicate(key: str, live: list[dict]) -> None:
        if live:
            raise DuplicateRun(
                f"{key} already has a run that has not finished: {live[0]['run']} ({live[0]['status']}); finish "
                f"or cancel it (studiox status {live[0]['run']}), or start another with --allow-duplicate")

    def drive(self, run_id: str, *, resume: bool = False, retry_failed: bool = False,
              mission: Mission | None = None) -> Outcome:
        """Run (or resume) a run until it finishes, fails, parks or is cancelled; holds its lock.

        ``retry_failed`` takes up a failed run again from the step that failed (after, say, the
        system it called was repaired); steps that finished are still never run again. ``mission``:
        the run's mission when the caller has it already (the run was just started with it); it is
        used only if it is the journaled snapshot (same digest), else the snapshot is parsed.

        A sub-mission's run (a ``mission:`` step's child) is driven by its parent: resuming it
        resumes the parent run, which takes the child up where it stopped.
        """
        parent = self.parent_of(run_id)
        if parent is not None and not retry_failed:
            return self.drive(parent, resume=True)
        return asyncio.run(self.drive_async(run_id, resume=resume, retry_failed=retry_failed, mission=mission))

    def child_run(self, parent: str, address: str, mission: Mission, inputs: dict, options: dict,
                  via: str | None = None, user: str | None = None) -> tuple[str, bool]:
        """The run of a parent's ``mission:`` step at ``address``: claimed (``child:PARENT:ADDRESS``)
        before it is started, so a parent resumed after a crash at any point takes up that same
        child and never starts a second. Returns its id, and whether it had started already. ``user``:
        who started the parent, who is the child's starter too (four eyes hold across the link)."""
        claim = f"child:{parent}:{address}"
        found = self.store.record(claim)
        if found is None:
            for _ in range(20):
                candidate = self.new_id()
                if self.store.record(f"run:{candidate}") is None:
                    break
            if not self.store.add_record(claim, {"run": candidate, "at": self.clock()}):
                found = self.store.record(claim)
        run_id = found["run"] if found is not None else candidate
        if self.store.last_seq(run_id) > 0:
            return run_id, True
        self.start(mission, inputs, options, run_id=run_id, parent={"run": parent, "step": address}, via=via or address,
                   user=user)
        return run_id, False

    def parent_of(self, run_id: str) -> str | None:
        """The unfinished run a child run serves (its ``mission:`` step), if any; the top one."""
        first = self.store.event(run_id, 1) or {}
        parent = (first.get("parent") or {}).get("run")
        if parent is None:
            return None
        last = self.store.last_event(parent) or {}
        if last.get("type") == "run_finished":
            return None
        return self.parent_of(parent) or parent

    async def drive_async(self, run_id: str, *, resume: bool = False, retry_failed: bool = False,
                          mission: Mission | None = None, via: str | None = None) -> Outcome:
        """:meth:`drive` inside an event loop. A parent run awaits its child's drive: ``via`` names
        the parent's step (``payment``; ``payment/pay`` a level further down)."""
        nested = via is not None
        with self.store.lock(run_id):
            state = self._resumable(run_id, retry_failed=retry_failed)
            started = state.started
            assert started is not None  # checked by _resumable
            if mission is None or mission.digest != started["digest"] or mission.source != started["source"]:
                snapshot_file = started.get("path") or started["file"]
                mission = missions.from_snapshot(started["source"], snapshot_file, started["digest"])
            changed = _file_changed(started)
            journal = self._journal(run_id, via=via)
            if not nested:
                self.telemetry = otel.from_environment(run_id, mission.name)  # (None unless asked for)
            try:
                if resume:
                    journal.append("run_resumed", pid=os.getpid(), host=socket.gethostname(), user=os_user(),
                                   mission_changed=changed)
                outcome = await Run(self, mission, state, journal, via=via).main()
            finally:
                if self.telemetry is not None and not nested:
                    self.telemetry.end()
                    self.telemetry = None
            outcome.mission_changed = changed
            return outcome

    def _resumable(self, run_id: str, *, retry_failed: bool) -> RunState:
        """The run's state, if this studiox may drive it on (called with the lock held)."""
        events = self.store.events(run_id)
        state = derive(run_id, events)
        if state.started is None:
            raise RunNotFound(f"no run '{run_id}' in {self.store.home}")
        found = chain.verify(run_id, self.store.event_rows(run_id), self.store.run_head(run_id))
        if found.state == "tampered":
            raise RunNotResumable(f"the journal of run {run_id} was altered ({found.problem}), so it is not driven "
                                  f"on: nothing was changed (see 'studiox audit verify {run_id}')")
        written = state.started.get("journal_format", 1)
        if not isinstance(written, int) or written > JOURNAL_FORMAT:
            raise RunNotResumable(
                f"run {run_id} was started by studiox {state.started.get('studiox', '?')}, whose journal "
                f"(format {written}) this studiox {__version__} (format {JOURNAL_FORMAT}) cannot drive; "
                "resume it with that version or newer")
        if state.finished and state.finished["status"] == "failed":
            error = state.finished.get("error") or {}
            if not retry_failed:
                raise RunNotResumable(
                    f"run {run_id} has failed at {error.get('step', '?')}: {error.get('message', '')}; once the "
                    f"cause is fixed, try again from that step with: studiox resume {run_id} --retry")
            if error.get("kind") == "duplicate" and state.key and not (state.started.get("options") or {}).get(
                    "allow_duplicate"):  # stopped for a live run about the same key: is there one still?
                self._refuse_duplicate(state.key, keys.live_runs(self.store, state.mission_name, state.key,
                                                                 other_than=run_id))
            self._journal(run_id).append("run_reopened", user=os_user(), failed_at=error.get("step"))
            state = derive(run_id, self.store.events(run_id))
        if state.finished:
            raise RunNotResumable(f"run {run_id} has already {state.finished['status']}"
                                  f"{' (' + state.verdict + ')' if state.verdict else ''}; there is nothing to resume")
        return state

    def cancel(self, run_id: str, reason: str) -> str:
        """Cancel a run: at once if no process drives it, else at that process's next step.

        The run's state is read with its lock held, so a run that finished meanwhile is never
        marked cancelled after its end.
        """
        try:
            with self.store.lock(run_id):
                self._state_for_cancel(run_id)
                self._journal(run_id).append("run_finished", status="cancelled", reason=reason, user=os_user())
                return "cancelled"
        except RunLocked:
            self._state_for_cancel(run_id)  # a run that already ended says so
            self.store.add_record(f"cancel:{run_id}", {"reason": reason, "user": os_user(), "at": self.clock()})
            return "requested"

    def _state_for_cancel(self, run_id: str) -> RunState:
        events = self.store.events(run_id)
        state = derive(run_id, events)
        if state.started is None:
            raise RunNotFound(f"no run '{run_id}' in {self.store.home}")
        found = chain.verify(run_id, self.store.event_rows(run_id), self.store.run_head(run_id))
        if found.state == "tampered":
            raise RunNotResumable(f"the journal of run {run_id} was altered ({found.problem}), so it is not driven "
                                  f"on: nothing was changed (see 'studiox audit verify {run_id}')")
        if state.finished:
            raise RunNotResumable(f"run {run_id} has already {state.finished['status']}; it cannot be cancelled")
        return state

    def _default_ports(self, mission: Mission, run_id: str, options: dict) -> Ports:
        from ..adapters.knowledge import Knowledge
        from ..adapters.mcp import MCPTools
        from ..adapters.models import LiteLLMModels, Replay

        log_dir = self.store.home / "logs" / run_id
        replay = Replay.load(options["replay"]) if options.get("replay") else None
        return Ports(tools=MCPTools(mission.integrations, mission.base_dir, log_dir),
                     models=LiteLLMModels(replay, sleep=self.sleep),
                     knowledge=Knowledge(mission.knowledge, mission.base_dir, self.store.home / "knowledge"))

    def _journal(self, run_id: str, *, via: str | None = None) -> Journal:
        if via is not None:
            return Journal(self.store, run_id, clock=self.clock,
                           after_append=lambda event: self._child_event(event, run_id, via))
        return Journal(self.store, run_id, clock=self.clock, after_append=self._after_append)

    def _child_event(self, event: dict, run_id: str, via: str) -> None:
        """A child run's event: on the parent's rail, marked as the child's; ``VIA:SEQ`` is a kill point."""
        if self.listener:
            self.listener({**event, "child": run_id, "via": via})
        if self.kill_after_event in (f"{via}:{event['seq']}", event["type"]):
            os.kill(os.getpid(), signal.SIGKILL)  # test door, as for the run's own events

    def _after_append(self, event: dict) -> None:
        if self.telemetry is not None:
            self.telemetry.on_event(event)
        if self.listener:
            self.listener(event)
        if self.kill_after_event in (event["seq"], event["type"]):
            os.kill(os.getpid(), signal.SIGKILL)  # test door: die right after this event is on disk


def start_key(mission: Mission, inputs: dict) -> str | None:
    """The run's business key when the mission's ``key`` reads only inputs (else it is set once its steps ran)."""
    if mission.key is None or expressions.steps_read(mission.key):
        return None
    try:
        return key_text(mission.key, {"inputs": inputs, "mission": {"name": mission.name, "version": mission.version}})
    except StepError as e:
        raise InputsInvalid(f"{mission.file}: {e.message}") from None


def _file_changed(started: dict) -> bool:
    path = Path(started.get("path") or started.get("file", ""))
    try:
        return missions.digest_of(path.read_text(encoding="utf-8")) != started.get("digest")
    except (OSError, UnicodeDecodeError):
        return False

