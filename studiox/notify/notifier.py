"""The notifier: notifications derived from the journal, delivered from outside the run.

A run never sends anything: it journals ``waiting`` and ``run_finished`` as it always does. A
long-running process (``studiox serve``) calls :meth:`Notifier.tick` about once a second; each
tick reads what was journaled since the last one, files a delivery per event and target in the
ledger, and sends the deliveries that are due. So delivery never blocks or fails a run, and a
notifier stopped for a while catches up where it left off.

Where to look is found cheaply: the runs index keeps each run's last seq and the time of its last
event; only runs updated since the newest update seen (less :data:`SLACK`, for commits that land
after a later one of another process) are compared with the ledger's cursors, and only their new
events are read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StudioxError
from .ledger import Ledger
from .messages import about_decision, about_run_end
from .senders import send
from .targets import SETTINGS, address, before, channel, read_settings, target_id, targets

if TYPE_CHECKING:
    from ..mission import Mission
    from ..state.store import Store

__all__ = ["SLACK", "Delivery", "Notifier"]

log = logging.getLogger("studiox.notify")

# seconds: a run's update is looked for this long before the newest one seen (the time of an event is
# taken before its commit, so a commit may land after a later one of another process; runs' clocks
# must not go back by more than this)
SLACK = 600.0
SENDERS = 8  # deliveries sent at once in a tick


@dataclass(frozen=True)
class Delivery:
    """One attempt to tell one target about one event, as the ledger recorded it."""

    event: str  # the ledger's key: decision_waiting:ID, decision_expiring:ID, run_finished:RUN#SEQ
    kind: str  # what the target is told: decision_waiting · decision_expiring · run_failed · run_finished
    target: str  # the target's id (targets.target_id)
    channel: str  # webhook · command · email
    address: str  # where, for people
    run: str | None
    decision: str | None
    mission: str | None
    status: str  # delivered · pending (tried again at next_at) · failed (given up)
    attempts: int
    error: str | None
    next_at: float | None


class Notifier:
    """Tells the targets of ``missions`` (name → Mission, as served; a run of a mission not among them
    is told with the mission it started with) and of the state folder's settings.yaml.

    ``clock`` is the time of the notifier (deadlines, backoff, the ledger's times); ``sleep`` waits
    between ticks in :meth:`run`. Opening it reads settings.yaml, so a broken one is reported
    (MissionInvalid) before the first tick; one broken later is logged and the last good one kept.
    """

    def __init__(self, home: Path, missions: Mapping[str, Mission], clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.home = Path(home)
        self.missions = dict(missions)  # may be replaced while it runs (missions reloaded)
        self.clock = clock
        self.sleep = sleep
        self.settings = read_settings(self.home)
        self._settings_seen = self._settings_stamp()
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._ledger: Ledger | None = None
        self._cursors: dict[str, int] = {}
        self._runs: dict[str, tuple[str, str | None, str | None]] = {}  # run → (mission, parent run, digest)
        self._snapshots: dict[str, Mission | None] = {}  # digest → the Mission a run started with
        self._looked = False  # a tick found no state folder: its first events are not history
        self._unreadable: dict[str, int] = {}  # run → the head at which its journal could not be read

    # ------------------------------------------------------------------ the loop

    def tick(self) -> list[Delivery]:
        """Look at what was journaled since the last tick, file what it means to tell, and send what is
        due. Returns the attempts made in this tick. Call it about once a second, from one thread at a
        time; it takes as long as the slowest sender (at most 30 s) when some are due, milliseconds
        otherwise."""
        with self._lock:
            if not self._open():
                return []
            self._reread_settings()
            now = self.clock()
            self._look(now)
            return self._deliver(now)

    def run(self, stop: Callable[[], bool], every: float = 1.0) -> None:
        """Tick every ``every`` seconds until ``stop()`` says so. A tick that fails (the store or the
        ledger unreadable for a moment) is logged, and the next one tries again."""
        while not stop():
            try:
                self.tick()
            except StudioxError as e:
                log.warning("notifications: %s", e.render())
            self.sleep(every)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            if self._ledger is not None:
                self._ledger.close()
            self._store = self._ledger = None

    def _open(self) -> bool:
        if self._store is None:
            from ..state.backends import open_store

            self._store = open_store(self.home, create=False)  # the runs' store: local, or PostgreSQL
            if self._store is None:
                self._looked = True  # no state folder yet: whatever it will hold happens after this look
                return False
        if self._ledger is None:
            from ..state.store import make_state_folder

            make_state_folder(self.home)  # (runs kept in a database need not have made it: the ledger does)
            self._ledger = Ledger(self.home)
            self._cursors = self._ledger.cursors()
        return True

    def _settings_stamp(self) -> tuple | None:
        try:
            info = (self.home / SETTINGS).stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _reread_settings(self) -> None:
        stamp = self._settings_stamp()
        if stamp == self._settings_seen:
            return
        self._settings_seen = stamp
        try:
            self.settings = read_settings(self.home)
        except StudioxError as e:
            log.warning("notifications: %s is not used until it is fixed; the last good one still is:\n%s",
                        self.home / SETTINGS, e.render())

    # ------------------------------------------------------------------ finding what to tell

    def _look(self, now: float) -> None:
        """Read every run's new events and the pending decisions; file deliveries for what they mean.
        A fresh ledger starts from now: its first look skips what was journaled before, except the
        decisions still pending."""
        assert self._store is not None and self._ledger is not None
        marks = self._ledger.marks()
        first = "first_look" not in marks and not self._looked
        newest = marks.get("updated")
        moved: dict[str, int] = {}
        rows: list[dict] = []
        for run_id, head, updated in self._store.run_heads(updated_since=None if newest is None else newest - SLACK):
            newest = updated if newest is None else max(newest, updated)
            seen = self._cursors.get(run_id, 0)
            if head <= seen or self._unreadable.get(run_id) == head:
                continue
            if first:
                moved[run_id] = head
                continue
            try:
                events = self._store.events(run_id, seen + 1)
            except StudioxError as e:  # a damaged journal: said once, looked at again when it grows
                self._unreadable[run_id] = head
                log.warning("notifications: run %s is not read: %s", run_id, e)
                continue
            for event in events:
                rows += self._told_of(run_id, event, now)
            moved[run_id] = events[-1]["seq"] if events else seen
        if first:
            rows += self._pending(now)
        rows += self._expiring(now)
        new_marks = {"first_look": marks.get("first_look", now), **({"updated": newest} if newest is not None else {})}
        if moved or rows or new_marks != marks:  # (a quiet tick writes nothing)
            self._ledger.record_look(moved, new_marks, rows)
            self._cursors.update(moved)

    def _told_of(self, run_id: str, event: dict, now: float) -> list[dict]:
        """The deliveries one journal event calls for."""
        if event.get("type") == "waiting" and event.get("decision"):
            decision = self._decision(event["decision"])  # (its run is a child's when this run waits on one)
            return [] if decision is None else \
                self._about_decision("decision_waiting", decision.id, decision.run_id, now, decision=decision)
        if event.get("type") != "run_finished":
            return []
        from ..state.keys import key_of

        assert self._store is not None
        mission = self._run(run_id)[0]
        failed = event.get("status") == "failed"
        rows = []
        for entry in targets(self._mission_of(run_id), self.settings):
            kind = "run_failed" if failed and "run_failed" in entry["on"] else \
                "run_finished" if "run_finished" in entry["on"] else None
            if kind is not None:
                message = about_run_end(kind, run_id, mission, key_of(self._store, run_id), event)
                rows.append(_row(f"run_finished:{run_id}#{event['seq']}", kind, entry, message, now,
                                 run=run_id, mission=mission))
        return rows

    def _pending(self, now: float) -> list[dict]:
        """decision_waiting for every decision still pending (a fresh ledger's first look)."""
        assert self._store is not None
        rows = []
        for info in self._store.decision_rows(states=("pending",), limit=10_000):
            rows += self._about_decision("decision_waiting", info["id"], info["run"], now)
        return rows

    def _expiring(self, now: float) -> list[dict]:
        """decision_expiring for each pending decision whose deadline is nearer than a target's ``before``."""
        assert self._store is not None
        known = [*self.settings.get("notify", ()), *(e for m in [*self.missions.values(), *self._snapshots.values()]
                                                      for e in getattr(m, "notify", ()))]
        horizon = max((before(e) for e in known if "decision_expiring" in e["on"]), default=None)
        if horizon is None:
            return []
        rows = []
        for info in self._store.decision_rows(states=("pending",), expires_by=now + horizon, limit=10_000):
            if now < info["expires"]:
                rows += self._about_decision("decision_expiring", info["id"], info["run"], now,
                                             expires=info["expires"])
        return rows

    def _about_decision(self, kind: str, decision_id: str, run_id: str, now: float, *, expires: float | None = None,
                        decision=None) -> list[dict]:
        """Deliveries about a pending decision to the targets of its run's mission and of the missions of the
        runs above it (a sub-mission's decision is its parent's too), each target once. The decision is
        read only when some target is still to be told (``expires``: its deadline, for decision_expiring)."""
        assert self._ledger is not None
        event = f"{kind}:{decision_id}"
        wanted = {target: entry for target, entry in self._entries(run_id).items()
                  if kind in entry["on"] and not self._ledger.known(event, target)
                  and (expires is None or now >= expires - before(entry))}
        if wanted and decision is None:
            decision = self._decision(decision_id)
        if not wanted or decision is None:
            return []
        message = about_decision(kind, decision, now)
        return [_row(event, kind, entry, message, now, run=decision.run_id, decision=decision.id,
                     mission=decision.request.get("mission")) for entry in wanted.values()]

    def _entries(self, run_id: str | None) -> dict[str, dict]:
        """The targets of a run's mission and of the runs above it, by id."""
        entries: dict[str, dict] = {}
        for _ in range(10):  # (mission steps go at most a few levels deep)
            if run_id is None:
                break
            for entry in targets(self._mission_of(run_id), self.settings):
                entries.setdefault(target_id(entry), entry)
            run_id = self._run(run_id)[1]
        return entries

    def _decision(self, decision_id: str):
        """The decision, if it is still pending (one decided meanwhile is not worth telling)."""
        from ..governance import PENDING, DecisionQueue

        assert self._store is not None
        try:
            decision = DecisionQueue(self._store, self.clock).get(decision_id)
        except StudioxError:
            return None
        return decision if decision.status == PENDING else None

    def _run(self, run_id: str) -> tuple[str, str | None, str | None]:
        """(mission name, parent run, mission digest) of a run, from its first event."""
        found = self._runs.get(run_id)
        if found is None:
            assert self._store is not None
            started = self._store.event(run_id, 1) or {}
            found = (str(started.get("mission", "?")), (started.get("parent") or {}).get("run"), started.get("digest"))
            if len(self._runs) > 100_000:
                self._runs.clear()
            self._runs[run_id] = found
        return found

    def _mission_of(self, run_id: str):
        """The Mission whose notify entries a run's events go to: the one served under its name, else the
        one the run started with (None when neither can be had)."""
        from ..mission import from_snapshot

        name, _, digest = self._run(run_id)
        if name in self.missions:
            return self.missions[name]
        if digest is None:
            return None
        if digest not in self._snapshots:
            assert self._store is not None
            started = self._store.event(run_id, 1) or {}
            try:
                self._snapshots[digest] = from_snapshot(started["source"], started.get("file") or name, digest)
            except (StudioxError, KeyError) as e:
                log.warning("notifications: the mission of run %s cannot be read: %s", run_id, e)
                self._snapshots[digest] = None
        return self._snapshots[digest]

    # ------------------------------------------------------------------ sending

    def _deliver(self, now: float) -> list[Delivery]:
        """Send every due delivery (several at once), and record how each went."""
        assert self._ledger is not None
        due = self._ledger.claim_due(now)
        if not due:
            return []
        with ThreadPoolExecutor(max_workers=min(SENDERS, len(due)), thread_name_prefix="studiox-notify") as pool:
            errors = list(pool.map(lambda row: send(row["entry"], row["message"]), due))
        done = []
        for row, error in zip(due, errors, strict=True):
            after = self._ledger.attempted(row, error, self.clock())
            if after["status"] == "failed":
                log.warning("notifications: %s to %s given up after %d attempts: %s", row["kind"], row["address"],
                            after["attempts"], error)
            done.append(Delivery(row["event"], row["kind"], row["target"], row["channel"], row["address"],
                                 row["run"], row["decision"], row["mission"], after["status"], after["attempts"], error,
                                 after["next_at"]))
        return done


def _row(event: str, kind: str, entry: dict, message: dict, now: float, **about) -> dict:
    return {"event": event, "kind": kind, "target": target_id(entry), "channel": channel(entry),
            "address": address(entry), "entry": entry, "message": message, "created": now, **about}
