"""Durations as missions write them: ``"1h30m"``, ``"500ms"``, or a number of seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value) -> float | None:
    """A duration (``"1h30m"`` or a number of seconds) in seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
