"""Secrets never leak: values studiox reads from the environment for integrations (``from_env``)
and the environment's credentials (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*PASSWORD*``…)
are remembered for the life of the process and replaced by ``***`` wherever studiox writes or
prints: the journal (before an event is chained), records and decision cards, the rail, error
messages, logs. A server that echoes a token back in its error text is redacted the same way.
"""

from __future__ import annotations

import json
import os
import re

MASK = "***"
MIN_LENGTH = 6  # shorter values ('1', 'true', 'dev') would mask ordinary text, and guard nothing
_CREDENTIAL = re.compile(r"(api[-_]?key|token|secret|password|passwd|credential|authorization|cookie)", re.I)
_known: list[str] = []  # longest first, so a secret inside a longer one is masked as part of it


def remember(value: str | None) -> None:
    """Mask ``value`` from now on (and its JSON-escaped form, as it appears inside JSON text)."""
    if not value or len(value) < MIN_LENGTH:
        return
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    new = [f for f in forms if f not in _known]
    if new:
        _known.extend(new)
        _known.sort(key=len, reverse=True)


def remember_environment(environ: dict[str, str] | None = None) -> None:
    """Mask the values of the environment variables whose names say they are credentials."""
    for name, value in (environ if environ is not None else os.environ).items():
        if _CREDENTIAL.search(name):
            remember(value)


def active() -> bool:
    return bool(_known)


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by ***."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value):
    """A JSON value with every remembered secret inside its text (keys too) replaced by ***."""
    if not _known:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value
