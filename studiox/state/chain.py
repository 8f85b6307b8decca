"""Tamper evidence: each event of a run carries a hash chained to the event before it.

``chain`` of event N is SHA-256 over the chain of event N-1 and event N's canonical encoding:
its compact JSON text as stored (UTF-8, keys in the order written), without ``chain``, which is
stored last (see ``sealed``). With ``STUDIOX_AUDIT_KEY`` set
when the run starts, it is an HMAC-SHA256 under that key instead, so someone who can rewrite the
whole database still cannot forge a chain without the key; ``run_started`` says which
(``chain: sha256 | hmac-sha256`` in its ``audit`` field) and never holds the key.

The chain finds an edited, inserted, deleted or reordered event; the runs index keeps each run's
head (its last seq and chain), so a journal cut short is found too. Someone with the database and
the key could still roll a run back to an earlier head: archive the heads (``audit verify --all
--json``) where they cannot reach, to close that too. Runs written before chaining existed are
"not chained", never "tampered".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from ..errors import StoreError

KEY_ENV = "STUDIOX_AUDIT_KEY"
PLAIN, KEYED = "sha256", "hmac-sha256"


def audit_key() -> bytes | None:
    """The chain key from the environment, if one is set."""
    key = os.environ.get(KEY_ENV)
    return key.encode() if key else None


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_SUFFIX = len(',"chain":"') + 64 + 2  # what sealing adds at the end of an event's text


def _mac(previous: str, data: bytes, key: bytes | None) -> str:
    if key is not None:
        return hmac.new(key, previous.encode() + b"\n" + data, hashlib.sha256).hexdigest()
    digest = hashlib.sha256(previous.encode())
    digest.update(b"\n")
    digest.update(data)
    return digest.hexdigest()


def sealed(previous: str, event: dict, key: bytes | None) -> tuple[str, str]:
    """``event`` chained after ``previous``: (its chain value, the JSON text to store).

    The canonical encoding is the event's compact JSON text (UTF-8, keys in the order written, no
    NaN) without ``chain``; the stored text is that text with ``"chain":"…"`` added last, so the
    bytes hashed are the bytes kept, and the event is encoded once."""
    text = _ENCODER.encode(event)
    value = _mac(previous, text.encode(), key)
    return value, text[:-1] + ("," if len(text) > 2 else "") + f'"chain":"{value}"}}'


def unsealed(body: str) -> tuple[str, str] | None:
    """(the canonical text, the chain value) of a stored event's text; None when it is not sealed."""
    if len(body) <= _SUFFIX or not body.endswith('"}') or body[-_SUFFIX:-66] != ',"chain":"':
        return None
    return body[:-_SUFFIX] + "}", body[-66:-2]


def kind_of(first: dict | None) -> str | None:
    """How a run's journal is chained, from its run_started event: sha256, hmac-sha256, or None."""
    return ((first or {}).get("audit") or {}).get("chain")


def key_for(run_id: str, kind: str | None) -> bytes | None:
    """The key to extend (or verify) a run's chain: a StoreError when the run is keyed and it is not set."""
    if kind != KEYED:
        return None
    key = audit_key()
    if key is None:
        raise StoreError(f"the journal of run {run_id} is chained with a key ({KEY_ENV}), which is not set here; "
                         f"set it to the key the run was started with")
    return key


@dataclass
class Verdict:
    """What ``audit verify`` found about one run."""

    run: str
    state: str  # intact · tampered · not chained · no key
    chain: str | None = None  # sha256 · hmac-sha256
    events: int = 0
    seq: int | None = None  # the first event found wrong
    problem: str | None = None
    head: str | None = None  # the last event's chain, to archive

    def as_json(self) -> dict:
        return dict(self.__dict__)


def verify(run_id: str, rows: list[tuple[int, str]], head: tuple[int | None, str | None] | None) -> Verdict:
    """Check a run's stored events (``(seq, body text)`` in seq order) against its chain and its index head."""
    if not rows:
        return Verdict(run_id, "tampered", seq=1, problem="the run is in the index, but its journal is empty")
    first = None
    for position, (seq, body) in enumerate(rows, start=1):
        try:
            event = json.loads(body)
        except ValueError:
            return Verdict(run_id, "tampered", seq=seq, problem=f"event {seq} is not JSON")
        if seq != position:
            return Verdict(run_id, "tampered", seq=position, problem=f"event {position} was deleted")
        if not isinstance(event, dict) or event.get("seq") != seq:
            return Verdict(run_id, "tampered", seq=seq, problem=f"event {seq} is out of order (it says it is "
                           f"event {event.get('seq') if isinstance(event, dict) else '?'})")
        first = first or event
    return links(run_id, first, [body for _, body in rows], head)


def links(run_id: str, first: dict | None, bodies: list[str], head: tuple[int | None, str | None] | None) -> Verdict:
    """Check the chain over a run's stored event texts (already known to be in place, ``first``
    decoded) and where the index says the journal ends."""
    if not bodies:
        return Verdict(run_id, "tampered", seq=1, problem="the run is in the index, but its journal is empty")
    kind = kind_of(first)
    if kind is None:
        return Verdict(run_id, "not chained", events=len(bodies),
                       problem="written before studiox chained its journals")
    if kind == KEYED and audit_key() is None:
        return Verdict(run_id, "no key", chain=kind, events=len(bodies),
                       problem=f"chained with a key: set {KEY_ENV} to verify it")
    key = audit_key() if kind == KEYED else None
    previous = ""
    for seq, body in enumerate(bodies, start=1):
        found = unsealed(body)
        if found is None or not hmac.compare_digest(found[1], _mac(previous, found[0].encode(), key)):
            return Verdict(run_id, "tampered", chain=kind, events=len(bodies), seq=seq, problem=(
                f"event {seq} was edited, inserted or replaced: its chain does not follow from event {seq - 1}"
                if seq > 1 else "event 1 was edited: its chain does not match"))
        previous = found[1]
    if head is not None and head[0] is not None and (head[0] != len(bodies) or head[1] != previous):
        if head[0] > len(bodies):
            problem = f"events {len(bodies) + 1}–{head[0]} were removed (the journal was cut short)"
            seq = len(bodies) + 1
        else:
            problem = f"the index says the journal ends at event {head[0]}, but it goes on to {len(bodies)}"
            seq = head[0] + 1
        return Verdict(run_id, "tampered", chain=kind, events=len(bodies), seq=seq, problem=problem)
    return Verdict(run_id, "intact", chain=kind, events=len(bodies), head=previous)
