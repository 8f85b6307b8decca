"""Who is told, and how: the ``notify:`` entries of a mission and of the state folder's ``settings.yaml``.

An entry (see ``notify`` in schemas/mission.schema.json) names the events it is for (``on``), one
way to tell (``webhook``, ``command`` or ``email``) and, for ``decision_expiring``, how long
``before`` the deadline. ``settings.yaml`` holds entries for every mission under a top-level
``notify:`` list of the same shape; its other keys belong to other parts of studiox and are left
alone here.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import MissionInvalid, Problem, UsageError
from ..units import seconds

__all__ = ["DEFAULT_BEFORE", "EVENTS", "SETTINGS", "address", "before", "channel", "read_settings", "target_id",
           "targets"]

EVENTS = ("decision_waiting", "decision_expiring", "run_failed", "run_finished")
SETTINGS = "settings.yaml"  # in the state folder
DEFAULT_BEFORE = 3600.0  # decision_expiring: an hour before the deadline, unless the entry says


def read_settings(home: Path) -> dict:
    """The state folder's ``settings.yaml`` as data ({} when there is none); its ``notify`` list is
    checked against the mission schema's, each problem located (MissionInvalid, exit 2)."""
    from ..mission import schema, yamlread

    path = Path(home) / SETTINGS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    name = str(path)
    text = yamlread.read_text(name, raw)
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return {}
    located = yamlread.load(name, text)
    if not isinstance(located.data, dict):
        raise MissionInvalid([Problem(name, 1, 1, "", "the settings file must be a mapping of keys such as "
                                                      "'notify:'")])
    problems = located.problems or schema.check(located, _settings_validator())
    if problems:
        raise MissionInvalid(problems)
    return located.data


@cache
def _settings_validator():
    import jsonschema

    from ..mission.schema import mission_schema

    whole = mission_schema()
    settings = {"type": "object", "properties": {"notify": whole["properties"]["notify"]}, "$defs": whole["$defs"]}
    return jsonschema.Draft202012Validator(settings)


def targets(mission, settings: dict) -> list[dict]:
    """The entries that hear about runs of ``mission`` (a Mission, or None when it is not known): its
    own ``notify`` entries, then those of the settings, each once."""
    found: dict[str, dict] = {}
    for entry in [*(mission.notify if mission is not None else ()), *(settings.get("notify") or ())]:
        found.setdefault(target_id(entry), entry)
    return list(found.values())


def target_id(entry: dict) -> str:
    """A stable name for an entry: the same entry, written anywhere in any key order, has the same id."""
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def before(entry: dict) -> float:
    """How long before a decision's deadline the entry is told it is expiring, in seconds."""
    value = seconds(entry.get("before"))
    return DEFAULT_BEFORE if value is None else value


def channel(entry: dict) -> str:
    return next(way for way in ("webhook", "command", "email") if way in entry)


def address(entry: dict) -> str:
    """Where an entry sends, for people to read: a webhook's path is left out (a Slack or Teams webhook's
    path is its secret), a command is its program, mail its recipients."""
    if "webhook" in entry:
        parts = urlsplit(entry["webhook"])
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"  # (user:password@ left out too)
    if "command" in entry:
        return entry["command"][0]
    return ", ".join(entry["email"]["to"])
