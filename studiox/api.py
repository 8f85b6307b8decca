"""The public library surface: what the CLI, a portal and tests call. No printing here.

Every function takes plain values and returns plain data (or raises a ``StudioxError``), so
a face only chooses how to show it and which exit code to use.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DecisionError, MissionInvalid, Problem, RunNotFound, UsageError, suggest
from .units import iso

if TYPE_CHECKING:
    from .engine import Engine, Outcome
    from .governance import Decision, DecisionQueue
    from .mission import Mission
    from .state.journal import RunState
    from .state.store import Store

# a door for embedders and tests: (mission, run id, options) -> studiox.adapters.ports.Ports
PORTS_FACTORY: Callable | None = None
# where news about the state folder goes (the CLI prints it on standard error): a migration on opening
def _unheard(text: str) -> None:
    """Where notices go when no face listens."""


NOTICE: Callable[[str], None] = _unheard


# ---------------------------------------------------------------------------- state folder


def home_path(home: Path | None = None) -> Path:
    """The state folder, found the way git finds its repository.

    ``home`` (``--home``) if given, else $STUDIOX_HOME (like GIT_DIR, an explicit choice wins), else
    the nearest ``.studiox`` state folder in the current folder or above it, else ``./.studiox``
    (created there by the first run)."""
    if home:
        return Path(home)
    if os.environ.get("STUDIOX_HOME"):
        return Path(os.environ["STUDIOX_HOME"])
    from .state.store import MARKER

    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / ".studiox" / MARKER).is_file():
            return folder / ".studiox" if folder != here else Path(".studiox")
    return Path(".studiox")


def open_store(home: Path | None = None, *, create: bool = False, backend: str | None = None) -> Store | None:
    """The store (the state folder's, or the PostgreSQL database's: see state/backends.py); None when
    a local state folder does not exist (and ``create`` is false). ``backend``: local or postgres, when
    not the process's choice (--backend, STUDIOX_BACKEND)."""
    from .state import backends

    store = backends.open_store(home_path(home), create=create, backend=backend)
    if store is not None and store.migrated is not None:
        NOTICE(migration_note(store))
    return store


def migration_note(store: Store) -> str:
    """What a migration of the state folder did, for a person."""
    done = store.migrated or {}
    kept = f"; the old files are kept in {done['kept']} and can be deleted" if done.get("kept") else ""
    return (f"migrated the state folder {store.home} to format 2 (SQLite): {done.get('runs', 0)} runs, "
            f"{done.get('events', 0)} events{kept}")


def migrate(home: Path | None = None) -> str:
    """Migrate the state folder to this studiox's format (on PostgreSQL: make the tables that are missing);
    what was done, for a person."""
    from .state import backends

    path = home_path(home)
    if backends.backend_name() == "postgres":
        store = backends.open_store(path, create=True)  # connecting makes the tables that are missing
        assert store is not None
        try:
            return f"{store.where} has this studiox's tables: nothing to migrate"
        finally:
            store.close()
    store = backends.open_store(path, create=False)
    if store is None:
        raise RunNotFound(f"there is no state folder at {path} to migrate")
    try:
        return migration_note(store) if store.migrated is not None else (
            f"the state folder {path} is already in this studiox's format (2): nothing to do")
    finally:
        store.close()


def need_store(home: Path | None = None, *, backend: str | None = None) -> Store:
    """The state folder's store; a clear error when there is none yet."""
    store = open_store(home, backend=backend)
    if store is None:
        raise RunNotFound(f"there are no runs in {home_path(home)} yet")
    return store


# ---------------------------------------------------------------------------- missions


@dataclass
class Checked:
    """One mission file checked by :func:`validate`."""

    file: str
    mission: Mission | None
    problems: list[Problem]
    cases: int | None = None  # a test file (NAME.test.yaml): how many cases it holds


def load_mission(path: str | Path, store: Store | None = None) -> Mission:
    """Read, check and type a mission file (raises MissionInvalid with every problem).

    With a store: a text this studiox version has validated before (same digest) is not checked
    again, only parsed — unless it names knowledge folders, whose existence depends on where it
    is and when; a text that passes is remembered (``validated:VERSION:DIGEST``)."""
    from .mission import digest_of, from_snapshot, loads, read_source

    text = read_source(path)
    if store is None:
        return loads(text, str(path))
    if store.record(_validated(digest_of(text))) is not None:
        mission = from_snapshot(text, str(path), digest_of(text))
        if not mission.knowledge:  # the checks of the text hold; the folders it names are checked again
            return mission
    mission = loads(text, str(path))
    remember_valid(store, mission)
    return mission


def remember_valid(store: Store, mission: Mission) -> None:
    """Remember that this studiox version validated the mission's text (its digest)."""
    store.add_record(_validated(mission.digest), {"file": mission.file, "at": time.time()})


def _validated(digest: str) -> str:
    from . import __version__

    return f"validated:{__version__}:{digest}"


def validate(files: list[Path]) -> list[Checked]:
    """Check each file; a file's problems never stop the others being checked."""
    from .testing import cases

    results = []
    for file in files:
        try:
            if file.name.endswith(cases.SUFFIXES):  # a test file, checked against its mission too
                tests = cases.load(file)
                results.append(Checked(str(file), tests.mission, [], len(tests.cases)))
            else:
                results.append(Checked(str(file), load_mission(file), []))
        except MissionInvalid as e:
            results.append(Checked(str(file), None, e.problems))
    return results


def check_replay(replay: str | Path, mission: Mission | None) -> list[Problem]:
    """Every problem of a replay file: its YAML, its answers' shape and, given the mission, whether they
    fit it (step ids and addresses, output schemas, offered tools). Unreadable: a UsageError."""
    from .replay_checks import replay_file_problems

    return replay_file_problems(replay, mission)


async def tools(mission: Mission) -> list[dict]:
    """Every tool of every integration of a mission (and of the missions its ``mission:`` steps
    run, each row naming its mission), with what studiox will do when a step calls it."""
    from .mission import descendants, loads

    family = [mission] + [loads(child["source"], path) for path, child in descendants(mission).items()]
    rows = []
    for member in family:
        found = await _tools_of(member)
        rows += [{**row, "mission": member.name} if member is not mission else row for row in found]
    return rows


async def _tools_of(mission: Mission) -> list[dict]:
    from .adapters.mcp import MCPTools, annotations_summary
    from .errors import StepError

    door = MCPTools(mission.integrations, mission.base_dir)
    used: dict[str, list] = {}
    for step in mission.walk():
        names = [step.spec] if step.kind == "tool" else (step.spec.get("tools") or []) if step.kind == "worker" else []
        for name in names:
            used.setdefault(name, []).append(step)
    rows = []
    try:
        for integration in mission.integrations:
            try:
                listing = await door.list_tools(integration)
            except StepError as e:
                rows.append({"integration": integration, "tool": None, "error": e.message})
                continue
            for target, steps in sorted(used.items()):
                name = target.split(".", 1)[1]
                if target.startswith(integration + ".") and name not in listing:
                    rows.append({"integration": integration, "tool": name, "missing": True, "used_by": [s.id for s in steps],
                                 "error": f"step {', '.join(s.id for s in steps)} calls {target}, but the server has "
                                          f"no tool '{name}'{suggest(name, listing)}"})
            for name in sorted(listing):
                info = await door.describe(integration, name)
                steps = used.get(f"{integration}.{name}", [])
                rows.append({"integration": integration, "tool": name, "annotations": annotations_summary(info),
                             "used_by": [s.id for s in steps], "studiox": _treatment(info, steps)})
    finally:
        await door.close()
    return rows


def _treatment(info: dict, steps: list) -> str:
    if any(s.approval and s.approval.required for s in steps):
        return "needs approval (the mission requires it)"
    if any(s.trust == "read_only" for s in steps):
        return "runs freely (the mission trusts it as read-only)"
    if info["read_only"]:
        return "runs freely (read-only)"
    rules = [s for s in steps if s.approval and s.approval.auto_approve_when]
    if rules:
        return f"auto-approved when {rules[0].approval.auto_approve_when}, else needs approval"
    return "needs approval" + ("; retried with its key if cut off" if info["idempotent"] else
                               "; in doubt if cut off")


# ---------------------------------------------------------------------------- runs


def engine(store: Store, *, listener: Callable[[dict], None] | None = None, prompt=None,
           kill_after_event: int | str | None = None) -> Engine:
    """An engine over ``store`` whose events go to ``listener`` and whose decisions go to ``prompt``."""
    from .engine import Engine

    return Engine(store, ports=PORTS_FACTORY, listener=listener, prompt=prompt, kill_after_event=kill_after_event)


def run_options(*, mission: Mission, model: str | None, cache: bool, replay: Path | None,
                allow_duplicate: bool = False, api_base: str | None = None) -> dict:
    """A run's settings as journaled (so that a resumed run keeps them). A replay file that does not
    fit ``mission`` is a usage error that says where, before anything runs."""
    from .engine.worker import env_api_base, env_model

    if replay and (problems := check_replay(replay, mission)):
        raise UsageError("\n".join(f"--replay: {p.render()}" for p in problems))
    options = {"model": model, "env_model": env_model(), "api_base": api_base, "env_api_base": env_api_base(),
               "cache": cache,
               "replay": str(Path(replay).resolve()) if replay else None, "allow_duplicate": allow_duplicate}
    return {k: v for k, v in options.items() if v}


def resolve_run(store: Store | None, text: str) -> str:
    """A run id from what a person typed: the whole id, or a prefix naming one run."""
    from .state.journal import resolve_run as resolve

    return resolve(store, text)


def run_state(store: Store, run_id: str) -> RunState:
    from .state.journal import derive

    return derive(run_id, store.events(run_id))


@dataclass
class RunRow:
    """One line of ``studiox runs``."""

    id: str
    mission: str
    status: str
    verdict: str | None
    started: float | None
    duration: float | None
    key: str | None = None  # the business key, once known

    def as_json(self) -> dict:
        return {**self.__dict__, "started": iso(self.started)}


def list_runs(store: Store | None, *, status: str | None = None, mission: str | None = None,
              key: str | None = None, since: float | None = None, limit: int | None = None) -> list[RunRow]:
    """Runs, newest first, at most ``limit`` of them: a page of the runs index table at a time, so
    the time taken does not grow with the number of runs stored."""
    from .state.store import FINISHED

    if store is None:
        return []
    # running, waiting and interrupted runs all have an unfinished row; which one a run is depends on
    # whether a process drives it now (its lock), so those rows are checked one by one
    states = ((status,) if status in FINISHED else ("waiting", "active") if status in ("running", "waiting")
              else ("active",) if status == "interrupted" else None)
    rows: list[RunRow] = []
    for info in _paged(lambda after, size: store.run_rows(states=states, mission=mission, key=key, since=since,
                                                         before=after, limit=size), "started", limit):
        current = info["state"]
        if current not in FINISHED:
            driven = store.driven(info["id"])
            current = "running" if driven else "waiting" if current == "waiting" else "interrupted"
        if status and current != status:
            continue
        rows.append(RunRow(info["id"], info["mission"], current, info["verdict"], info["started"],
                           info["updated"] - info["started"], info["key"]))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _paged(fetch: Callable[[tuple | None, int], list[dict]], column: str, limit: int | None) -> Iterator[dict]:
    """The rows of an index table a page at a time (keyset paging on ``column`` and id), so a listing
    reads only as far as the rows it keeps."""
    after, size = None, min(limit or 200, 200)
    while True:
        found = fetch(after, size)
        yield from found
        if len(found) < size:
            return
        after = (found[-1][column], found[-1]["id"])


def count_runs(store: Store | None) -> int:
    """How many runs the state folder holds."""
    return 0 if store is None else store.count_runs()


def usage(state: RunState) -> dict:
    """What a run's model calls used (see ``state.journal.usage_of``)."""
    from .state.journal import usage_of

    return usage_of(state.model_calls)


def run_status(store: Store, run_id: str) -> tuple[RunState, dict]:
    """One run as data: status (and, while running, which process drives it), verdict, each finished step,
    what it waits for, model usage."""

    state = run_state(store, run_id)
    current = state.status(not state.finished and store.driven(run_id))
    holder = store.holder(run_id) if current == "running" else None  # (None: a worker's queued segment, on postgres)
    return state, {
        "id": run_id, "mission": state.mission_name, "key": state.key or None, "status": current,
        "driven_by": {"pid": holder["pid"], "host": holder["host"], "command": holder["command"],
                      "since": iso(holder["since"]) if holder.get("since") else None} if holder else None,
        "verdict": state.verdict,
        "note": (state.finished or {}).get("note"), "error": (state.finished or {}).get("error"),
        "waiting_for": (state.waiting or {}).get("decision") if current == "waiting" else None,
        "started": iso(state.started["at"]) if state.started else None,
        "duration": (time.time() - state.started["at"]) if current == "running" and state.started else state.duration,
        "running": [{"step": a, "kind": e.get("kind"), "attempt": e.get("attempt", 1), "since": iso(e["at"]),
                     "elapsed": round(time.time() - e["at"], 3)} for a, e in state.running.items()]
        if current == "running" else [],
        "steps": [{"step": a, "status": e["status"], "output": e.get("output"), "error": e.get("error")}
                  for a, e in state.done.items()],
        "usage": usage(state),
    }


def outcome_json(outcome: Outcome, exit_code: int) -> dict:
    """How a drive ended, as the one JSON object ``run``/``resume``/``approve --resume`` print."""
    return {"run": outcome.run_id, "status": outcome.status, "verdict": outcome.verdict, "note": outcome.note,
            "error": outcome.error, "waiting": outcome.waiting, "mission_changed": outcome.mission_changed,
            "exit_code": exit_code, "at": iso(time.time())}


def top_run(store: Store, run_id: str) -> str:
    """The run that drives ``run_id``: itself, or for a sub-mission's run its unfinished top parent."""
    return engine(store).parent_of(run_id) or run_id


def cancel(store: Store, run_id: str, reason: str) -> str:
    """'cancelled' at once, or 'requested' when another process drives the run."""
    return engine(store).cancel(run_id, reason)


# the audit trail read back (show, follow, verify, export): see studiox/trail.py
from .trail import follow, outcome_of, show_run, verify_runs  # noqa: E402, F401


def audit_runs(store: Store, *, run_id: str | None = None, mission: str | None = None, since: float | None = None,
               until: float | None = None, approver: str | None = None) -> list[tuple[dict, list[dict]]]:
    """What ``audit export`` writes: (the run in full, its events) for each run chosen, oldest first;
    ``approver``: only runs with a decision that person made."""
    from .trail import runs_in_full, with_children

    # one run's export follows its links: the child runs of its mission steps come with it
    ids = with_children(store, run_id) if run_id else [r.id for r in reversed(list_runs(store, mission=mission,
                                                                                           since=since))]
    return runs_in_full(store, ids, until=until, approver=approver)

# ---------------------------------------------------------------------------- decisions


def queue(store: Store) -> DecisionQueue:
    from .governance import DecisionQueue

    return DecisionQueue(store, time.time)


def list_decisions(store: Store | None, *, include_all: bool = False, limit: int | None = None,
                   key: str | None = None, mission: str | None = None) -> list[Decision]:
    """The Decision Queue: pending decisions (or every one), oldest first, at most ``limit``; a page of
    the decisions index table at a time, each decision read in full only while rows are still wanted."""
    if store is None:
        return []
    decisions = queue(store)
    rows: list[Decision] = []
    for info in _paged(lambda after, size: store.decision_rows(states=None if include_all else ("pending",),
                                                              mission=mission, key=key, after=after, limit=size),
                       "requested", limit):
        decision = decisions.get(info["id"])
        if include_all or decision.status == "pending":  # (a deadline may have passed since)
            rows.append(decision)
            if limit is not None and len(rows) >= limit:
                break
    return rows


def decision_json(decision: Decision) -> dict:
    request = {**decision.request}
    for name in ("requested_at", "expires_at"):
        request[name] = iso(request.get(name))
    outcome = {**decision.outcome, "at": iso(decision.outcome["at"])} if decision.outcome else None
    # the people who approved (so far, while a quorum is pending), and how many must
    given = (decision.outcome.get("approvals") or []) if decision.outcome else decision.approvals
    approvals = [{**{k: v for k, v in a.items() if k != "action"}, "at": iso(a["at"])} for a in given]
    if outcome and "approvals" in outcome:
        outcome["approvals"] = approvals
    return {"id": decision.id, "status": decision.status, **request, "outcome": outcome,
            "quorum": decision.quorum, "approvals": approvals}


@dataclass
class Decided:
    """What :func:`decide` did: the decision as it now stands, and whether this call decided it."""

    decision: Decision
    changed: bool


def decide(store: Store, decision_id: str, status: str, *, by: str, claimed: str | None = None,
           note: str | None = None, edits: list[str] | None = None, resolution: str | None = None,
           result: str | None = None, groups: list[str] | None = None) -> Decided:
    """Approve or reject a pending decision, with edits (``NAME=VALUE``) checked before anything is recorded.

    ``by`` is the person a face has identified, with their ``groups`` (default: the OS user's Unix
    groups); who may decide is checked by ``governance.check_decider``. Under a quorum, an approval
    may leave the decision pending: ``decision.approvals`` and ``decision.quorum`` say how far it is.
    """
    from .edits import edited_action, parse_edits
    from .governance import APPROVED

    decisions = queue(store)
    decision = decisions.get(decision_id)
    if resolution is not None and not decision.request.get("in_doubt"):
        raise DecisionError(f"decision {decision_id} asks whether {decision.request['action']['target']} may run; "
                            "--happened and --retry answer only an in-doubt decision (a call cut off mid-way)")
    if decision.outcome is not None and decision.status == status and not edits:
        return Decided(decision, False)
    state = run_state(store, decision.run_id)
    if state.finished:
        raise DecisionError(f"run {decision.run_id} has already {state.finished['status']}; its decision "
                            f"{decision_id} can no longer be made")
    action = edited_action(decision, parse_edits(edits, decision)) if edits else None
    entered: Any = None
    if result is not None:
        try:
            entered = json.loads(result)
        except ValueError:
            entered = result  # plain text is a result too
    before = decision.outcome
    decision = decisions.decide(decision_id, status, by=by, claimed=claimed, note=note, action=action,
                                resolution=resolution, result=entered, groups=groups)
    # changed: this call's answer is the one recorded (not a person's who answered at the same moment and won)
    ours = decision.outcome is None or decision.outcome.get("by") == by
    return Decided(decision, before is None and ours and (decision.status == status or status == APPROVED))
