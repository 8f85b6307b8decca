"""The ``Service``: triggers that fire, timers that expire, runs the service resumes."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .. import api
from ..dispatch import queued
from ..errors import InputsInvalid, StudioxError
from ..mission import Mission
from . import triggers as kinds
from .ledger import Firing, open_ledger
from .triggers import Trigger

log = logging.getLogger("studiox.service")


class Service:
    """One state folder's triggers and timers; ``tick()`` about once a second (``clock`` injectable).
    ``notifier`` (a ``notify.Notifier``) is ticked in a thread of its own by ``runner.Ticking``: a
    slow receiver never holds up a trigger."""

    def __init__(self, home: Path, missions: list[Mission], drive: Callable[[str], None],
                 clock: Callable[[], float] = time.time, notifier=None):
        self.home = home
        self.missions = {m.name: m for m in missions}
        self.triggers = [t for m in missions for t in kinds.of(m)]
        self.drive = drive
        self.clock = clock
        self.notifier = notifier
        self.ledger = open_ledger(home)
        self.started = clock()
        self.fired_at: dict[str, float] = {}  # schedule trigger → its last scheduled time fired

    def close(self) -> None:
        self.ledger.close()
        if self.notifier is not None:
            self.notifier.close()

    # ------------------------------------------------------------------ start and tick

    def recover(self) -> None:
        """At start: firings whose run never started are started; runs cut off by a crash go on."""
        while True:
            with self.ledger.turn() as mine:
                if mine:
                    self._recover()
                    return
            time.sleep(0.2)  # another service (postgres backend) is looking at the triggers: after it

    def _recover(self) -> None:
        for firing in self.ledger.unsettled():
            mission = self.missions.get(firing.mission)
            if mission is not None:
                self._start(firing, mission)
        store = api.need_store(self.home)
        try:
            cut_off = [row.id for row in api.list_runs(store, status="interrupted")]
        finally:
            store.close()
        for run_id in cut_off:
            log.info(json.dumps({"service": "resume", "run": run_id, "why": "interrupted"}))
            self.drive(run_id)

    def tick(self) -> None:
        with self.ledger.turn() as mine:
            if mine:  # (else another service, on another machine, is looking at them this moment)
                self._tick()

    def _tick(self) -> None:
        now = self.clock()
        for trigger in self.triggers:
            try:
                if trigger.kind == "inbox":
                    self._inbox(trigger, now)
                elif trigger.kind == "schedule":
                    self._schedule(trigger, now)
            except Exception as e:  # noqa: BLE001 - one trigger's trouble never stops the others
                log.warning(json.dumps({"service": "trigger failed", "trigger": trigger.id,
                                        "error": f"{type(e).__name__}: {e}"}))
        if not queued():  # (on the postgres backend the workers wake late decisions: dispatch/worker.py)
            self._deadlines(now)

    # ------------------------------------------------------------------ triggers

    def _inbox(self, trigger: Trigger, now: float) -> None:
        spec = trigger.spec
        for path in kinds.settled_files(trigger, now):
            data = path.read_bytes()
            key = kinds.content_key(data)
            if self.ledger.get(trigger.id, key) is None:
                text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
                schema = trigger.mission.inputs.get(spec["input"], {})
                value = text
                if isinstance(schema, dict) and schema.get("type") not in (None, "string"):
                    from ..mission.inputs import _parse_structured

                    value = _parse_structured(text, path.name, f"the inbox file {path.name}")
                replay = spec.get("replay")
                options: dict = {}
                if replay:
                    scripted = trigger.mission.base_dir / replay.replace("{stem}", path.stem).replace("{name}", path.name)
                    if scripted.is_file():
                        options["replay"] = str(scripted.resolve())
                self.fire(trigger, key, {"file": path.name, "inputs": {**(spec.get("inputs") or {}),
                                                                       spec["input"]: value}, "options": options})
            if spec.get("then", {}).get("move_to"):
                _move(path, trigger.mission.base_dir / spec["then"]["move_to"])

    def _schedule(self, trigger: Trigger, now: float) -> None:
        last = self.fired_at.get(trigger.id)
        if last is None:
            found = self.ledger.last(trigger.id)
            last = found[0].detail.get("time") if found else None
        for at in kinds.due_times(trigger, last, self.started, now):
            self.fire(trigger, kinds.time_key(at), {"time": at, "inputs": trigger.spec.get("inputs") or {},
                                                     "options": {}}, at=at)
            self.fired_at[trigger.id] = at
        self.fired_at.setdefault(trigger.id, last if last is not None else self.started)

    def webhook(self, path: str, body: bytes, signature: str | None) -> tuple[int, dict]:
        """A POST under /hooks/: (HTTP status, answer). A wrong or missing signature starts nothing."""
        trigger = next((t for t in self.triggers if t.kind == "webhook" and t.spec["path"] == path), None)
        if trigger is None:
            return 404, {"error": f"no webhook at {path}"}
        if not kinds.signature_ok(trigger, body, signature):
            return 401, {"error": "the signature is missing or wrong"}
        try:
            inputs = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "the body must be a JSON object of inputs"}
        if not isinstance(inputs, dict):
            return 400, {"error": "the body must be a JSON object of inputs"}
        firing = self.fire(trigger, kinds.content_key(body), {"inputs": inputs, "options": {}})
        if firing.outcome not in (None, "started"):
            return 409, {"error": firing.outcome, "run": None}
        return (201 if firing.new else 200), {"run": firing.run, "new": firing.new}

    # ------------------------------------------------------------------ runs

    def fire(self, trigger: Trigger, key: str, detail: dict, *, at: float | None = None) -> Firing:
        """Record a firing in the ledger, then start its run (once: a second firing with the key is the first)."""
        firing = self.ledger.fire(trigger.id, key, mission=trigger.mission.name, kind=trigger.kind, detail=detail,
                                  at=self.clock() if at is None else at)
        if firing.outcome is None:
            log.info(json.dumps({"service": "fired", "trigger": trigger.id, "key": key, "run": firing.run}))
            return self._start(firing, trigger.mission)
        return firing

    def _start(self, firing: Firing, mission: Mission) -> Firing:
        store = api.need_store(self.home)
        try:
            if store.last_seq(firing.run) == 0:
                from ..engine import Engine
                from ..mission.inputs import check

                inputs = check(mission, firing.detail.get("inputs") or {})  # defaults applied, as --input does
                options = api.run_options(mission=mission, model=None, cache=False,
                                          replay=Path(firing.detail["options"]["replay"])
                                          if firing.detail.get("options", {}).get("replay") else None)
                Engine(store, ports=api.PORTS_FACTORY).start(mission, inputs, options, run_id=firing.run,
                                                            user=f"trigger {firing.kind}")
        except (InputsInvalid, StudioxError) as e:  # the inputs do not fit, or the business key has a live run
            outcome = f"not started: {e}"
            self.ledger.settle(firing, outcome)
            log.warning(json.dumps({"service": "not started", "trigger": firing.trigger, "why": str(e)}))
            return Firing(**{**firing.__dict__, "outcome": outcome})
        finally:
            store.close()
        self.ledger.settle(firing, "started")
        self.drive(firing.run)
        return Firing(**{**firing.__dict__, "outcome": "started"})

    def _deadlines(self, now: float) -> None:
        """A decision past its deadline: its run is resumed, and the engine applies ``on_timeout``."""
        store = api.need_store(self.home)
        try:  # only undecided ones whose limit has passed: the index says so (it is written with the outcome)
            late = set()
            for row in store.decision_rows(states=("pending",), expires_by=now, limit=10_000):
                if row["run"] in late or (store.last_event(row["run"]) or {}).get("type") == "run_finished":
                    continue
                if not store.driven(row["run"]):  # (a process driving it applies on_timeout itself: no
                    late.add(row["run"])          # resume that would only be refused, each second)
        finally:
            store.close()
        for run_id in late:
            self.drive(run_id)


def _move(path: Path, target: Path) -> None:
    """Move a processed inbox file aside (a name already there gets a number)."""
    target.mkdir(parents=True, exist_ok=True)
    destination = target / path.name
    n = 1
    while destination.exists():
        destination = target / f"{path.stem}-{n}{path.suffix}"
        n += 1
    try:
        shutil.move(str(path), destination)
    except OSError as e:
        log.warning(json.dumps({"service": "could not move", "file": str(path), "error": str(e)}))
