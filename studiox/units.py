"""Units people write and read: durations (``"1h30m"``, ``"500ms"``, seconds) and sizes (``5.0 MB``)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value) -> float | None:
    """A duration (``"1h30m"`` or a number of seconds) in seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))


def human_size(n: int) -> str:
    """A size in bytes as people say it: 812 bytes, 12.3 kB, 5.0 MB."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} byte{'s' if n != 1 else ''}"


def when(ts: float | None) -> str:
    """A moment as people read it, in local time: ``2026-11-25 09:14:03`` (``—`` when unknown)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "—"


def iso(ts: float | None) -> str | None:
    """A time as ISO 8601 in UTC (what every JSON output carries)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def since_time(text: str, what: str = "since") -> float:
    """A time from what a person wrote: a duration back from now ('2h', '3d') or an ISO 8601 date or
    time; a UsageError naming ``what`` otherwise."""
    from .errors import UsageError

    back = seconds(text) if text[:1].isdigit() and text[-1:].isalpha() else None
    if back:
        return time.time() - back
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"{what} {text}: write a duration back from now (30m, 2h, 3d) or an ISO 8601 date or "
                         "time (2026-11-25, 2026-11-25T09:00)") from None
