"""Commands that start, continue, stop and show runs: ``run``, ``resume``, ``cancel``, ``runs``,
``status``, ``log``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import api
from ..dispatch import queued
from .app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_WAITING,
    AsJson,
    Home,
    NoInput,
    app,
    remember_home,
)
from .output import err, escape, out, plain, print_json

Json = Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON object (and no live rail).")]


def interactive(no_input: bool, as_json: bool = False) -> bool:
    """Ask at the terminal only when a person is there (and no script reads JSON)."""
    return not no_input and not as_json and sys.stdin.isatty() and sys.stdout.isatty()


def make_engine(store, *, quiet: bool = False, ask: bool = False, silent: bool = False, live: bool = False):
    """An engine whose events are printed as the live rail (unless ``silent``); ``live``: with a
    spinner and progress bars below it, when the rail goes to a terminal (see ui/progress.py)."""
    from ..ui.progress import Board
    from ..ui.rail import live_line

    # on a terminal, a spinner for slow steps and a bar per foreach below the rail; piped: plain lines
    board = Board(out) if live and not (silent or quiet) and out.is_terminal else None

    def show(event: dict) -> None:
        if silent or (quiet and event.get("via")):
            return
        if board is not None and not event.get("via"):
            board.on_event(event)
            board.start()
        if quiet:
            line = escape(event["run"]) if event["type"] == "run_started" else \
                live_line(event) if event["type"] == "run_finished" else None
        else:
            line = live_line(event)
        if line:
            out.print(line)
            out.file.flush()  # a live view: each line is out before the next step starts
        if event["type"] == "run_resumed" and event.get("mission_changed"):
            err.print("note: the mission file has changed since this run started; the run goes on with the "
                      "version it started with (start a new run to use the new one)", markup=False)

    prompt = None
    if ask:
        from ..ui.prompt import ask as ask_at_terminal

        def prompt(decision, queue):
            if board is not None:
                board.hold()  # a person is asked: nothing moves below the question
            try:
                ask_at_terminal(decision, queue, console=out)
            finally:
                if board is not None:
                    board.release()

    kill = os.environ.get("STUDIOX_TEST_KILL_AFTER_EVENT")  # test door: see tests/test_crash.py
    kill_after = (int(kill) if kill.isdigit() else kill) if kill else None  # an event's number, or its type
    if board is not None:
        _boards.append(board)  # stopped by drive() when the drive ends, however it ends
    return api.engine(store, listener=show, prompt=prompt, kill_after_event=kill_after)


_boards: list = []


def _stop_boards() -> None:
    while _boards:
        _boards.pop().stop()


def exit_code(outcome) -> int:
    return {"succeeded": EXIT_OK, "waiting": EXIT_WAITING}.get(outcome.status, EXIT_FAILED)


def say_what_next(outcome, store=None) -> None:
    """After a drive that did not finish: what the run waits for, and the commands to go on."""
    if outcome.status != "waiting":
        return
    from ..ui.rail import short

    waiting = outcome.waiting
    did, action = waiting["decision"], waiting["action"]
    out.print(f"[yellow]waiting for a decision[/] {did}: step {escape(waiting['step'])} wants "
              f"{escape(action['target'])} {escape(short(action['arguments'], 80))}")
    if waiting.get("in_doubt"):
        plain(f"  in doubt: studiox stopped during this call; it may or may not have happened.\n"
              f"  it happened:  studiox approve {did} --happened --result JSON --resume\n"
              f"  call again:   studiox approve {did} --retry --resume\n"
              f"  give up:      studiox reject {did} --reason TEXT --resume\n"
              f"  see it:       studiox decision show {did}")
        return
    rules = (api.queue(store).get(did).request.get("rules") or {}) if store is not None else {}
    if rules.get("four_eyes"):
        plain(f"  four eyes: {rules.get('started_by')} started this run, so someone else approves it")
    plain(f"  approve:  studiox approve {did} --resume   (add --note TEXT, or --set NAME=VALUE to correct)\n"
          f"  reject:   studiox reject {did} --reason TEXT --resume\n"
          f"  see it:   studiox decision show {did}\n"
          f"  later:    studiox resume {outcome.run_id}")


def drive(store, run_id: str, *, resume: bool, retry_failed: bool = False, ask: bool = False,
          quiet: bool = False, as_json: bool = False, mission=None) -> None:
    """Drive a run and exit with the code its outcome calls for (printing JSON when asked)."""
    engine = make_engine(store, quiet=quiet, ask=ask, silent=as_json, live=True)
    try:
        outcome = engine.drive(run_id, resume=resume, retry_failed=retry_failed, mission=mission)
    except KeyboardInterrupt:
        _stop_boards()
        err.print(f"run {run_id} stopped; continue it with: studiox resume {run_id}", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        _stop_boards()
    code = exit_code(outcome)
    if as_json:
        print_json(api.outcome_json(outcome, code))
    else:
        say_what_next(outcome, store)
    raise typer.Exit(code)


Wait = Annotated[bool, typer.Option("--wait", help=(
    "On the postgres backend: follow the run's rail as a worker drives it, until it finishes or parks "
    "(the exit code then says which, as when the run is driven here)."))]


def hand_over(store, run_id: str, *, retry: bool = False, wait: bool, quiet: bool = False,
              as_json: bool = False) -> None:
    """The postgres backend: ask the workers for the segment the run needs next (its first, or one
    that resumes it; ``retry``: a failed run taken up again), then follow its rail if asked to wait,
    else say where it went. Exits."""
    from ..dispatch import Dispatcher

    run_id = api.top_run(store, run_id)  # (a sub-mission's run is driven by its parent's)
    seq = store.last_seq(run_id)
    dispatcher = Dispatcher()
    try:
        segment = dispatcher.resume(run_id, seq, retry=True) if retry else dispatcher.drive(run_id, seq)
        alive = dispatcher.workers()
    finally:
        dispatcher.close()
    if not alive and not as_json:
        err.print(f"note: no worker is running; run {run_id} waits in the queue until one starts (studiox worker)",
                  markup=False)
    if not wait:
        if as_json:
            print_json({"run": run_id, "status": "queued", "segment": segment, "exit_code": EXIT_OK})
        elif quiet:
            plain(run_id)
        else:
            plain(f"run {run_id} is queued for a worker (studiox worker); follow it with: "
                  f"studiox log {run_id} --follow")
        raise typer.Exit(EXIT_OK)
    follow_until_parked(store, run_id, quiet=quiet, as_json=as_json)


def follow_until_parked(store, run_id: str, *, quiet: bool = False, as_json: bool = False) -> None:
    """Print a run's rail as another process drives it, from its next event, until it finishes or
    parks; exit with the code its outcome calls for. ``run_id``: the top run (a sub-mission's run is
    driven by its parent's)."""
    from ..ui.rail import live_line

    seen = store.last_seq(run_id)
    try:
        for event in api.follow(store, run_id, start=seen, settle=2.0):
            if as_json or (quiet and event.get("via")):
                continue
            line = live_line(event) if not quiet or event["type"] == "run_finished" else None
            if line:
                out.print(line)
                out.file.flush()
    except KeyboardInterrupt:
        err.print(f"stopped following run {run_id}; a worker drives it on (studiox log {run_id} --follow)",
                  markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    outcome = api.outcome_of(store, run_id)
    code = exit_code(outcome) if outcome.status != "interrupted" else EXIT_FAILED
    if as_json:
        print_json(api.outcome_json(outcome, code))
    elif outcome.status == "interrupted":
        err.print(f"run {run_id} is no longer driven (is a worker running?); it goes on when one takes it up "
                  f"(studiox resume {run_id})", markup=False)
    else:
        say_what_next(outcome, store)
    raise typer.Exit(code)


def _find(home: Path | None, text: str):
    """The store and the run a person named (the whole id or its start)."""
    store = api.open_store(remember_home(home))
    run_id = api.resolve_run(store, text)
    assert store is not None  # resolve_run found the run in it
    return store, run_id


@app.command()
def run(
    mission_file: Annotated[Path, typer.Argument(metavar="MISSION.yaml", help="The mission to run.")],
    input_pairs: Annotated[list[str], typer.Option(
        "--input", "-i", metavar="NAME=VALUE",
        help="An input: NAME=VALUE (JSON values are parsed), or NAME=@FILE to read it from a file.")] = [],  # noqa: B006
    input_files: Annotated[list[str], typer.Option(
        "--inputs", metavar="FILE", help="A JSON or YAML file of inputs by name.")] = [],  # noqa: B006
    home: Home = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run id and the outcome.")] = False,
    no_input: NoInput = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="The model for workers that name none (a name from the mission, or a litellm model); "
                        "overrides STUDIOX_MODEL and the mission's default.")] = None,
    api_base: Annotated[str | None, typer.Option(
        "--api-base", metavar="URL", help="The server of --model (or STUDIOX_MODEL): a local llama.cpp, vLLM, LM "
                                          "Studio or any OpenAI-compatible endpoint; overrides STUDIOX_API_BASE.")]
    = None,
    cache: Annotated[bool, typer.Option("--cache", help="Answer identical model requests from the store.")] = False,
    replay: Annotated[Path | None, typer.Option(
        "--replay", metavar="FILE", help="Answer model calls from a file of scripted answers (offline; see "
                                         "docs/workers.md).")] = None,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate", help="Start even if a run for the same business key (the mission's key) has not "
                                  "finished.")] = False,
    as_json: Json = False,
    wait: Wait = False,
) -> None:
    """Run a mission from its first step. Prints the run id first, then each step, then the verdict.
    On the postgres backend the run is queued for the workers (--wait follows it)."""
    from ..mission.inputs import collect

    known = api.open_store(remember_home(home))  # a mission validated before by this version is not checked again
    mission = api.load_mission(mission_file, known)
    values = collect(mission, input_pairs, input_files)
    options = api.run_options(mission=mission, model=model, cache=cache, replay=replay,
                              allow_duplicate=allow_duplicate, api_base=api_base)
    store = known or api.open_store(home, create=True)
    assert store is not None  # created when missing
    if known is None:  # the first run in a new state folder: remember this mission as validated
        api.remember_valid(store, mission)
    run_id = make_engine(store, quiet=quiet, silent=as_json).start(mission, values, options)
    if queued():
        hand_over(store, run_id, wait=wait, quiet=quiet, as_json=as_json)
    drive(store, run_id, resume=False, ask=interactive(no_input, as_json), quiet=quiet, as_json=as_json,
          mission=mission)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    home: Home = None,
    no_input: NoInput = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry", help="Take up a failed run again from the step that failed (once its cause is fixed).")] = False,
    as_json: Json = False,
    wait: Wait = False,
) -> None:
    """Continue a paused or interrupted run from its first unfinished step. On the postgres backend a
    worker continues it (--wait follows it)."""
    store, run_id = _find(home, run_id)
    if queued():
        hand_over(store, run_id, retry=retry_failed, wait=wait, as_json=as_json)
    drive(store, run_id, resume=True, retry_failed=retry_failed, ask=interactive(no_input, as_json),
          as_json=as_json)


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the audit trail.")] = "cancelled by a user",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Cancel a run for good: a cancelled run never resumes."""
    store, run_id = _find(home, run_id)
    result = api.cancel(store, run_id, reason)
    if as_json:
        print_json({"run": run_id, "status": "cancelled" if result == "cancelled" else "cancel_requested",
                    "reason": reason})
    elif result == "cancelled":
        plain(f"run {run_id} is cancelled")
    else:
        plain(f"run {run_id} is being driven by another process; it will stop as cancelled before its next step")


@app.command()
def runs(
    home: Home = None,
    as_json: AsJson = False,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only runs with this status (succeeded, failed, waiting, running, interrupted, cancelled).")
    ] = None,
    mission: Annotated[str | None, typer.Option("--mission", help="Only runs of this mission.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only runs about this business key.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="WHEN", help="Only runs started since then: a duration back from now (2h, 3d) or an "
                                        "ISO 8601 date or time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many, newest first.")] = 50,
    show_all: Annotated[bool, typer.Option("--all", help="Show every run (no limit).")] = False,
) -> None:
    """List runs, newest first (the newest 50 unless --limit or --all)."""
    from ..ui.rail import runs_table

    store = api.open_store(remember_home(home))
    rows = api.list_runs(store, status=status, mission=mission, key=key, since=_since(since),
                         limit=None if show_all else limit)
    if as_json:
        print_json([r.as_json() for r in rows])
        return
    filtered = status or mission or key or since
    if not rows:
        plain(f"no runs{' match' if filtered else ''} in {api.home_path(home)}")
        return
    out.print(runs_table(rows))
    if not show_all and len(rows) == limit and (total := api.count_runs(store)) > limit:  # counted only then
        plain(f"the newest {limit} of {total:,} runs{' that match' if filtered else ''}; "
              "--limit N or --all for more")


def _since(text: str | None) -> float | None:
    """--since as a time (see units.since_time)."""
    from ..units import since_time

    return since_time(text, "--since") if text is not None else None


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Show one run: its status, verdict and each step so far."""
    from ..ui.rail import STATUS_STYLE, finished_line, seconds, steps_table, usage_table, when

    store, run_id = _find(home, run_id)
    state, data = api.run_status(store, run_id)
    if as_json:
        print_json(data)
        return
    current = data["status"]
    style = STATUS_STYLE.get(current, "")
    out.print(f"run [bold]{run_id}[/] · mission {escape(state.mission_name)} · [{style}]{current}[/] · "
              f"started {when(state.started['at'] if state.started else None)} · {seconds(data['duration'])}")
    out.print(steps_table(state))
    driver = data["driven_by"]
    if driver:
        plain(f"driven by process {driver['pid']} on {driver['host']}")
    elif current == "running" and queued():
        plain("queued for a worker (studiox worker): none has taken it up yet")
    for now in data["running"]:
        attempt = f", attempt {now['attempt']}" if now["attempt"] > 1 else ""
        out.print(f"[cyan]▶ running now[/]: {escape(now['step'])} ({escape(str(now['kind']))}{attempt}) for "
                  f"{seconds(now['elapsed'])}")
    usage = usage_table(state)
    if usage is not None:
        out.print(usage)
    if state.finished:
        out.print(finished_line(state.finished))
    elif current == "waiting" and state.waiting:
        did = state.waiting["decision"]
        out.print(f"[yellow]waiting for decision {did}[/] on step {escape(state.waiting['step'])}: "
                  f"see it with 'studiox decision show {did}', then 'studiox approve {did} --resume' or "
                  f"'studiox reject {did} --reason TEXT --resume'")
    elif current == "interrupted":
        plain(f"continue it with: studiox resume {run_id}")


@app.command()
def log(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every event as one JSON line (the raw audit trail).")]
    = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing as another process drives the run, "
                                         "until it finishes or parks.")] = False,
) -> None:
    """The run's Observations rail, from the start: every step, observation, decision and outcome."""
    from ..ui.rail import rail_lines

    store, run_id = _find(home, run_id)
    events = api.follow(store, run_id) if follow else store.events(run_id)
    for event in events:
        if as_json:
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            for line in rail_lines([event]):
                out.print(line)
    if follow and not as_json:
        _, data = api.run_status(store, run_id)
        if data["status"] == "waiting":
            plain(f"run {run_id} is parked, waiting for decision {data['waiting_for']}: see 'studiox decisions'")
        elif data["status"] == "interrupted":
            plain(f"run {run_id} is no longer driven by any process; continue it with: studiox resume {run_id}")


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    step: Annotated[str | None, typer.Option("--step", metavar="ADDRESS", help="Only this step (e.g. 'pay' or "
                                             "'each[2].touch').")] = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """One run in full: header (mission, key, inputs, status, verdict, cost), then each step's inputs,
    prompts and model answers, tool calls and results, attempts and errors, timings and decisions."""
    from ..ui.inspect import render

    store, run_id = _find(home, run_id)
    data = api.show_run(store, run_id, step)
    if as_json:
        print_json(data)
    else:
        out.print(render(data))
