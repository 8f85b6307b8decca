"""Running test files: every case in a state folder of its own, side by side in child processes,
then each crash variant of the cases that ask for them; results as data for the CLI to show."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StepError, StudioxError
from .cases import Case, TestFile, load
from .doubles import describe_all
from .expect import Failure, check
from .running import CaseError, Played, play


@dataclass
class CaseResult:
    file: str
    case: str
    where: str  # invoice.test.yaml:12, where the case starts
    passed: bool
    seconds: float
    failures: list[Failure] = field(default_factory=list)
    variants: int = 0  # crash variants played
    note: str | None = None
    run: str | None = None
    home: str | None = None


@dataclass
class _Job:
    tf: TestFile
    case: Case
    descriptions: dict
    home: Path
    kill_at: int | str | None = None
    played: Played | None = None
    error: str | None = None
    seconds: float = 0.0


def run(paths: list[Path], *, keyword: str | None = None, jobs: int | None = None, keep: bool = False,
        progress: Callable[[str, int, int], None] | None = None) -> list[CaseResult]:
    """Every selected case of the test files (already found), played and checked; ``progress(what, done, total)``."""
    files = [load(path) for path in paths]  # every file's problems before anything runs (MissionInvalid)
    base = Path(tempfile.mkdtemp(prefix="studiox-test-"))
    jobs = jobs or min(4, os.cpu_count() or 1)
    _warm(files)
    sync = os.environ.get("STUDIOX_SYNC")
    os.environ["STUDIOX_SYNC"] = "off"  # throwaway folders: safe from kill -9 (crash:), no fsync
    try:
        plain: list[_Job] = []
        broken: list[CaseResult] = []
        for fi, tf in enumerate(files):
            cases = [c for c in tf.cases if keyword is None or keyword.lower() in c.name.lower()]
            if not cases:
                continue
            try:
                descriptions = _descriptions(tf, cases)
            except StudioxError as e:
                broken += [CaseResult(str(tf.path), c.name, tf.where(c.at), False, 0.0,
                                      [Failure(tf.where(c.at), str(e))]) for c in cases]
                continue
            plain += [_Job(tf, c, descriptions, base / f"{fi}-{c.index}") for c in cases]
        _play_all(plain, jobs, lambda done: progress and progress("cases", done, len(plain)))
        variants = {id(job): _variants(job) for job in plain if job.case.crash and job.played is not None}
        every = [v for vs in variants.values() for v in vs]
        _play_all(every, jobs, lambda done: progress and progress("crash variants", done, len(every)))
        results = broken + [_result(job, variants.get(id(job), [])) for job in plain]
        if keep:
            for r in results:
                r.home = str(base / r.home) if r.home else None
        return results
    finally:
        if sync is None:
            os.environ.pop("STUDIOX_SYNC", None)
        else:
            os.environ["STUDIOX_SYNC"] = sync
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _warm(files: list[TestFile]) -> None:
    """What every case's process would otherwise import for itself (litellm: seconds), done once
    here before the processes are forked, so they start with it."""
    if any(step.kind == "worker" for tf in files for step in tf.mission.walk()):
        from ..adapters.preload import warmed_litellm

        warmed_litellm()
    from .. import engine  # noqa: F401
    from ..adapters import knowledge, mcp  # noqa: F401


def _descriptions(tf: TestFile, cases: list[Case]) -> dict:
    """The real servers' descriptions of the integrations some case stubs (asked once per file)."""
    from .cases import _tools_called

    real_everywhere = set(cases[0].real).intersection(*(c.real for c in cases[1:]))
    used = {target.split(".", 1)[0] for m in tf.family for target in _tools_called(m)}
    known = tf.integrations()
    needed = sorted(name for name in used - real_everywhere if name in known)
    if not needed:
        return {}
    try:
        return asyncio.run(describe_all({name: known[name] for name in needed}))
    except StepError as e:
        raise CaseError(f"the test needs the descriptions of {', '.join(needed)} from their servers: {e.message}") \
            from None


def _play_all(jobs: list[_Job], parallel: int, done: Callable[[int], object]) -> None:
    """Play the jobs, ``parallel`` at a time in child processes (one at a time in this process when 1)."""
    if parallel <= 1:
        for i, job in enumerate(jobs, 1):
            _play(job, fork=False)
            done(i)
        return
    waiting = list(reversed(jobs))
    running: dict[int, _Job] = {}
    finished = 0
    while waiting or running:
        while waiting and len(running) < parallel:
            job = waiting.pop()
            job.home.mkdir(parents=True, exist_ok=True)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    _play(job, fork=False)
                    (job.home / "result.json").write_text(json.dumps(
                        {"played": dataclasses.asdict(job.played) if job.played else None, "error": job.error,
                         "seconds": job.seconds}, default=str))
                finally:
                    os._exit(0)
            running[pid] = job
        pid, status = os.wait()
        if pid not in running:
            continue
        job = running.pop(pid)
        try:
            data = json.loads((job.home / "result.json").read_text())
            job.played = Played(**data["played"]) if data["played"] else None
            job.error, job.seconds = data["error"], data["seconds"]
        except (OSError, ValueError):
            job.error = f"the case's process ended without a result (status {status})"
        finished += 1
        done(finished)


def _play(job: _Job, *, fork: bool) -> None:
    started = time.perf_counter()
    try:
        job.played = play(job.tf, job.case, job.home, job.descriptions, kill_at=job.kill_at, fork=fork)
    except StudioxError as e:
        job.error = str(e)
    job.seconds = time.perf_counter() - started


def _variants(job: _Job) -> list[_Job]:
    """One job per journal event of the case's run (or per event of the kinds it names)."""
    assert job.played is not None
    kinds = job.case.crash
    seqs = [seq for seq, kind in job.played.events if kinds == "every_event" or kind in (kinds or [])]
    return [_Job(job.tf, job.case, job.descriptions, job.home.with_name(f"{job.home.name}-crash-{seq}"), seq)
            for seq in seqs]


def _result(job: _Job, variants: list[_Job]) -> CaseResult:
    tf, case = job.tf, job.case
    where = tf.where(case.at)
    if job.played is None:
        return CaseResult(str(tf.path), case.name, where, False, job.seconds,
                          [Failure(where, job.error or "the case could not be played")], home=job.home.name)
    failures = check(tf, case, job.played)
    note = None
    if variants:
        failures += _crash_failures(job, variants)
        cut = sum(1 for v in variants if v.played and v.played.killed)
        doubt = sum(1 for v in variants if v.played and (v.played.stopped or "").startswith("in doubt"))
        changing = Counter(c["tool"] for c in job.played.calls if not c["read_only"])
        once = ", ".join(f"{t} {n}×" for t, n in sorted(changing.items())) or "no state-changing call"
        plural = "s" if len(variants) != 1 else ""
        note = f"{len(variants)} crash variant{plural} ({cut} killed): same verdict, {once} in each" if not doubt \
            else f"{len(variants)} crash variant{plural} ({cut} killed): {doubt} reported in doubt (a real call " \
                 f"cut off: a person says), the others the same verdict, {once} in each"
    seconds = job.seconds + sum(v.seconds for v in variants)
    return CaseResult(str(tf.path), case.name, where, not failures, seconds, failures, len(variants), note,
                      job.played.run, job.home.name)


def _crash_failures(job: _Job, variants: list[_Job]) -> list[Failure]:
    """Each variant must end as the uncrashed run did, with every state-changing call made as often."""
    assert job.played is not None
    base = job.played
    where = job.tf.where((*job.case.at, "crash"))
    kinds = dict(base.events)
    wanted = Counter(_changing(base))
    failures = []
    for v in variants:
        at = f"killed after event {v.kill_at} ({kinds.get(v.kill_at, '?')})"
        p = v.played
        if p is None:
            failures.append(Failure(where, f"{at}: {v.error}"))
            continue
        if p.stopped and p.stopped.startswith("in doubt"):
            if any(n > wanted[call] for call, n in Counter(_changing(p)).items()):
                failures.append(Failure(where, f"{at}: a state-changing call was made again before its doubt was "
                                        "settled"))
            continue  # reported in doubt, as the engine promises: a person must say
        if (p.status, p.verdict, p.note) != (base.status, base.verdict, base.note):
            failures.append(Failure(where, f"{at}: the run {p.status} with verdict {p.verdict!r} ({p.note!r}); "
                                    f"without the crash it {base.status} with {base.verdict!r} ({base.note!r})"
                                    + (f" — {p.stopped}" if p.stopped else "") + (f" — {p.error}" if p.error else "")))
            continue
        got = Counter(_changing(p))
        if got != wanted:
            diff = ", ".join(f"{call[0]} {got[call]}× (without the crash {wanted[call]}×)"
                             for call in sorted(set(got) | set(wanted)) if got[call] != wanted[call])
            failures.append(Failure(where, f"{at}: state-changing calls differ: {diff}"))
    return failures


def _changing(played: Played) -> list[tuple[str, str]]:
    return [(c["tool"], json.dumps(c["arguments"], sort_keys=True)) for c in played.calls if not c["read_only"]]
