"""The three kinds of trigger a mission declares: what each watches, and when it fires.

- ``inbox``: a file that has stopped changing (same size and mtime for ``settle``) fires once,
  keyed by the SHA-256 of its content, so the same invoice dropped twice, or renamed, fires once.
- ``schedule``: a cron expression in a time zone (croniter); each scheduled time fires once,
  keyed by that time. At start, a time missed while the service was down fires once if
  ``catch_up`` says so; otherwise the schedule starts from now.
- ``webhook``: a POST under /hooks/ signed with HMAC-SHA256 over the body (``sha256=HEX`` in the
  header) with a secret from the environment; keyed by the body's hash, so a sender retrying the
  same delivery starts one run.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..mission import Mission
from ..units import seconds

DEFAULT_SETTLE = 2.0
SIGNATURE_HEADER = "X-Studiox-Signature"


@dataclass
class Trigger:
    """One declared trigger of one mission."""

    id: str  # MISSION/KIND/N
    mission: Mission
    kind: str
    spec: dict
    seen: dict = field(default_factory=dict)  # inbox: path → (size, mtime, first seen unchanged at)

    @property
    def describe(self) -> str:
        spec = self.spec
        if self.kind == "inbox":
            return f"files {spec.get('pattern', '*')} in {spec['path']} → input {spec['input']}"
        if self.kind == "schedule":
            return f"cron '{spec['cron']}' ({spec.get('timezone', 'UTC')})" + (", catching up" if spec.get("catch_up")
                                                                              else "")
        return f"POST {spec['path']} signed with ${spec['secret_env']}"


def of(mission: Mission) -> list[Trigger]:
    found = []
    for i, entry in enumerate(mission.triggers, 1):
        kind = next(iter(entry))
        found.append(Trigger(f"{mission.name}/{kind}/{i}", mission, kind, entry[kind]))
    return found


# ---------------------------------------------------------------------------- inbox

def folder(trigger: Trigger) -> Path:
    return (trigger.mission.base_dir / trigger.spec["path"]).resolve()


def settled_files(trigger: Trigger, now: float) -> list[Path]:
    """The inbox's files that match and have not changed for ``settle`` seconds (looked at each tick)."""
    where = folder(trigger)
    if not where.is_dir():
        return []
    pattern = trigger.spec.get("pattern", "*")
    settle = float(seconds(trigger.spec.get("settle")) or DEFAULT_SETTLE) if trigger.spec.get("settle") else DEFAULT_SETTLE
    ready, present = [], set()
    for entry in os.scandir(where):
        if not entry.is_file() or not fnmatch.fnmatch(entry.name, pattern) or entry.name.startswith("."):
            continue
        stat = entry.stat()
        present.add(entry.path)
        shape = (stat.st_size, stat.st_mtime)
        before = trigger.seen.get(entry.path)
        if before is None or before[:2] != shape:
            trigger.seen[entry.path] = (*shape, now)
            continue
        if now - before[2] >= settle and now - stat.st_mtime >= settle:
            ready.append(Path(entry.path))
    for gone in set(trigger.seen) - present:
        del trigger.seen[gone]
    return sorted(ready)


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- schedule

def due_times(trigger: Trigger, last: float | None, started: float, now: float) -> list[float]:
    """The scheduled times to fire now: those after the last firing (or the service's start) up to
    ``now``; missed ones before the service started count only with ``catch_up`` (the latest one)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    zone = ZoneInfo(trigger.spec.get("timezone", "UTC"))
    since = last if last is not None else started
    times: list[float] = []
    cursor = croniter(trigger.spec["cron"], datetime.fromtimestamp(since, zone))
    while len(times) < 1000:
        at = cursor.get_next(datetime).timestamp()
        if at > now:
            break
        times.append(at)
    missed = [t for t in times if t < started]
    on_time = [t for t in times if t >= started]
    return ([missed[-1]] if missed and trigger.spec.get("catch_up") else []) + on_time


def next_time(trigger: Trigger, after: float) -> float:
    from zoneinfo import ZoneInfo

    from croniter import croniter

    zone = ZoneInfo(trigger.spec.get("timezone", "UTC"))
    return croniter(trigger.spec["cron"], datetime.fromtimestamp(after, zone)).get_next(datetime).timestamp()


def time_key(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- webhook

def signature_ok(trigger: Trigger, body: bytes, given: str | None) -> bool:
    """Whether ``given`` (``sha256=HEX``) signs ``body`` with the trigger's secret; no secret set: never."""
    secret = os.environ.get(trigger.spec["secret_env"], "")
    if not secret or not given:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.strip())
