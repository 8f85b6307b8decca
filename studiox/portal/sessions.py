"""Sessions, CSRF and the login rate limit.

A session is a cookie holding ``name``, the account's ``session_epoch``, a CSRF token and an
expiry, signed with HMAC-SHA256 under a secret kept in the state folder (``portal.secret``,
mode 0600, made on first use). It is HttpOnly and SameSite=Strict; a changed password or a
removed account (its epoch moves) ends every session of it. Every form carries the session's
CSRF token; a POST without it is refused (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import defaultdict, deque
from pathlib import Path

COOKIE = "studiox_session"
LIFETIME = 12 * 3600  # seconds a session lasts
SECRET_FILE = "portal.secret"
MAX_FAILURES = 5  # failed logins (per name, and per client) within WINDOW before they are refused
WINDOW = 15 * 60


def secret(home: Path) -> bytes:
    """The portal's signing key, made once per state folder (readable by its owner only)."""
    path = home / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode())
    finally:
        os.close(fd)
    return key


def issue(key: bytes, name: str, epoch: int) -> str:
    """A new session cookie's value for ``name``."""
    body = {"name": name, "epoch": epoch, "csrf": secrets.token_urlsafe(24), "exp": int(time.time()) + LIFETIME}
    raw = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
    return f"{raw}.{_sign(key, raw)}"


def read(key: bytes, value: str | None) -> dict | None:
    """The session a cookie holds, if it is ours, intact and not expired."""
    if not value or "." not in value:
        return None
    raw, signature = value.rsplit(".", 1)
    if not hmac.compare_digest(signature, _sign(key, raw)):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("exp", 0) < time.time():
        return None
    return body


def csrf_ok(session: dict | None, token: str | None) -> bool:
    return bool(session and token and hmac.compare_digest(str(session.get("csrf", "")), str(token)))


def _sign(key: bytes, raw: str) -> str:
    return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


class LoginLimit:
    """Failed logins, by account name and by client address: past MAX_FAILURES within WINDOW, a
    login is refused (429) until the oldest failure ages out, and each failure before that makes
    the answer slower (``delay``)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        found = self.failures[key]
        while found and found[0] < self.clock() - WINDOW:
            found.popleft()
        return found

    def wait(self, *keys: str) -> int:
        """Seconds until a login for these keys is taken again (0: now)."""
        waits = [int(found[0] + WINDOW - self.clock()) + 1 for key in keys
                 if len(found := self._recent(key)) >= MAX_FAILURES]
        return max(waits, default=0)

    def delay(self, *keys: str) -> float:
        """How long to hold a failed login's answer: 0.25 s, doubling with each recent failure, at most 4 s."""
        count = max((len(self._recent(key)) for key in keys), default=0)
        return min(0.25 * 2 ** max(count - 1, 0), 4.0) if count else 0.0

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._recent(key).append(self.clock())

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self.failures.pop(key, None)
