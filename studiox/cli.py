"""The ``studiox`` command: parse arguments, call one function below, print, choose the exit code.

Exit codes (the contract, see README): 0 finished with a verdict · 1 the run failed ·
2 bad usage or an invalid mission · 3 paused, waiting for a decision · 130 interrupted.
Nothing here imports litellm or mcp: commands that do not run a model or a tool stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import MissionInvalid, StudioxError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED, EXIT_BUG = 0, 1, 2, 3, 130, 70

app = typer.Typer(
    name="studiox",
    help="Run Missions: durable, governed, observable multi-step processes written in YAML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}

Home = Annotated[
    Path | None,
    typer.Option("--home", help="The state folder (default: $STUDIOX_HOME, else ./.studiox).", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"studiox {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


def home_path(home: Path | None) -> Path:
    """The state folder: --home, else $STUDIOX_HOME, else ./.studiox."""
    return home or Path(os.environ.get("STUDIOX_HOME") or ".studiox")


# ---------------------------------------------------------------------------- missions


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Mission files to check.", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Check mission files and show each valid one's plan. Exit 0 when all are valid, else 2."""
    from .mission import Mission, load
    from .plan import plan

    results: list[tuple[str, Mission | None, list]] = []
    for file in files:
        try:
            mission = load(file)
        except MissionInvalid as e:
            results.append((str(file), None, e.problems))
        else:
            results.append((str(file), mission, []))
    if as_json:
        payload = [{"file": f, "valid": m is not None, "mission": m.name if m else None,
                    "problems": [p.as_json() for p in problems]} for f, m, problems in results]
        out.print_json(json.dumps({"files": payload}))
    else:
        for name, found, problems in results:
            if found is None:
                for problem in problems:
                    err.print(problem.render(), markup=False)
                err.print(f"[red]✗[/] {name}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
                continue
            out.print(f"[green]✓[/] {name}: mission [bold]{found.name}[/], {len(found.steps)} steps")
            table = Table("#", "step", "kind", "touches", "notes", box=None, pad_edge=False)
            for row in plan(found):
                table.add_row(row.number, row.step.id, row.step.kind, row.touches, row.notes)
            out.print(table)
    raise typer.Exit(EXIT_OK if all(m is not None for _, m, _ in results) else EXIT_USAGE)


# ---------------------------------------------------------------------------- runs

PORTS_FACTORY = None  # a door for embedders and tests: Mission -> studiox.ports.Ports


def _store(home: Path | None, *, create: bool):
    from .store import Store

    return Store.open(home_path(home), create=create)


NoInput = Annotated[bool, typer.Option(
    "--no-input", help="Never ask at the terminal: a decision parks the run (exit 3) to be decided later.")]


def _interactive(no_input: bool) -> bool:
    return not no_input and sys.stdin.isatty() and sys.stdout.isatty()


def _engine(store, *, quiet: bool = False, interactive: bool = False):
    from .engine import Engine
    from .rail import live_line

    def show(event: dict) -> None:
        if quiet:
            line = event.get("run") if event["type"] == "run_started" else \
                live_line(event) if event["type"] == "run_finished" else None
        else:
            line = live_line(event)
        if line:
            out.print(line)
            out.file.flush()  # a live view: each line is out before the next step starts
        if event["type"] == "run_resumed" and event.get("mission_changed"):
            err.print("note: the mission file has changed since this run started; the run goes on with the "
                      "version it started with (start a new run to use the new one)")

    prompt = None
    if interactive:
        from .prompt import ask

        def prompt(decision, queue):
            ask(decision, queue, console=out)

    kill = os.environ.get("STUDIOX_TEST_KILL_AFTER_EVENT")  # test door: see tests/test_crash.py
    kill_after = (int(kill) if kill.isdigit() else kill) if kill else None  # an event's number, or its type
    return Engine(store, ports=PORTS_FACTORY, listener=show, kill_after_event=kill_after,
                  prompt=prompt)


def _finish(outcome) -> None:
    """Choose the exit code of a drive, and say what to do next when the run did not finish."""
    if outcome.status == "succeeded":
        raise typer.Exit(EXIT_OK)
    if outcome.status == "waiting":
        from .rail import short

        waiting = outcome.waiting
        did, action = waiting["decision"], waiting["action"]
        out.print(f"[yellow]waiting for a decision[/] {did}: step {waiting['step']} wants "
                  f"{action['target']} {short(action['arguments'], 80)}", markup=True)
        if waiting.get("in_doubt"):
            out.print(f"  [bold]in doubt[/]: studiox stopped during this call; it may or may not have happened.\n"
                      f"  it happened:  studiox approve {did} --happened --result JSON --resume\n"
                      f"  call again:   studiox approve {did} --retry --resume\n"
                      f"  give up:      studiox reject {did} --reason TEXT --resume\n"
                      f"  see it:       studiox decision show {did}")
            raise typer.Exit(EXIT_WAITING)
        out.print(f"  approve:  studiox approve {did} --resume   (add --note TEXT, or --set NAME=VALUE to correct)\n"
                  f"  reject:   studiox reject {did} --reason TEXT --resume\n"
                  f"  see it:   studiox decision show {did}\n"
                  f"  later:    studiox resume {outcome.run_id}", markup=False)
        raise typer.Exit(EXIT_WAITING)
    raise typer.Exit(EXIT_FAILED)


def _drive(engine, run_id: str, *, resume: bool, retry_failed: bool = False) -> None:
    try:
        outcome = engine.drive(run_id, resume=resume, retry_failed=retry_failed)
    except KeyboardInterrupt:
        err.print(f"run {run_id} stopped; continue it with: studiox resume {run_id}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _finish(outcome)


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
    cache: Annotated[bool, typer.Option("--cache", help="Answer identical model requests from the store.")] = False,
    replay: Annotated[Path | None, typer.Option(
        "--replay", metavar="FILE", help="Answer model calls from a file of scripted answers (offline; see "
                                         "docs/workers.md).")] = None,
) -> None:
    """Run a mission from its first step. Prints the run id first, then each step, then the verdict."""
    from .doors import env_model
    from .inputs import collect
    from .mission import load

    mission = load(mission_file)
    values = collect(mission, input_pairs, input_files)
    options = {"model": model, "env_model": env_model(), "cache": cache,
               "replay": str(replay.resolve()) if replay else None}
    if replay:
        from .models import Replay

        Replay.load(replay)  # a broken replay file is a usage error before anything runs
    store = _store(home, create=True)
    engine = _engine(store, quiet=quiet, interactive=_interactive(no_input))
    run_id = engine.start(mission, values, {k: v for k, v in options.items() if v})
    _drive(engine, run_id, resume=False)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    home: Home = None,
    no_input: NoInput = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry", help="Take up a failed run again from the step that failed (once its cause is fixed).")] = False,
) -> None:
    """Continue a paused or interrupted run from its first unfinished step."""
    from .journal import resolve_run

    store = _store(home, create=False)
    run_id = resolve_run(store, run_id)
    _drive(_engine(store, interactive=_interactive(no_input)), run_id, resume=True, retry_failed=retry_failed)


# ---------------------------------------------------------------------------- decisions

decision_app = typer.Typer(help="Look at one decision.", no_args_is_help=True)
app.add_typer(decision_app, name="decision")


def _queue(home: Path | None):
    import time

    from .governance import DecisionQueue
    from .journal import resolve_run  # noqa: F401 - the same store rules as runs

    store = _store(home, create=False)
    if store is None:
        from .errors import RunNotFound

        raise RunNotFound(f"no decisions: there are no runs in {home_path(home)} yet")
    return store, DecisionQueue(store, time.time)


@app.command()
def decisions(
    home: Home = None,
    as_json: AsJson = False,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Decided, expired and void ones too (void: the run ended without them).")] = False,
) -> None:
    """The Decision Queue: pending decisions across all runs, oldest first."""
    from .rail import decisions_table

    store = _store(home, create=False)
    if store is None:
        rows = []
    else:
        _, queue = _queue(home)
        rows = [d for d in queue.all() if show_all or d.status == "pending"]
    if as_json:
        out.print_json(json.dumps([{"id": d.id, "status": d.status, **d.request, "outcome": d.outcome}
                                   for d in rows]))
    elif not rows:
        out.print("no pending decisions" if not show_all else "no decisions")
    else:
        out.print(decisions_table(rows))


@decision_app.command("show")
def decision_show(
    decision_id: Annotated[str, typer.Argument(metavar="ID", help="The decision's id.")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Show one decision: the action, its arguments, the evidence, and the outcome if made."""
    from .prompt import panel
    from .rail import outcome_line

    _, queue = _queue(home)
    decision = queue.get(decision_id)
    if as_json:
        out.print_json(json.dumps({"id": decision.id, "status": decision.status, **decision.request,
                                   "outcome": decision.outcome}))
        return
    out.print(panel(decision))
    out.print(outcome_line(decision))


def _decide(decision_id: str, status: str, home: Path | None, *, note: str | None, claimed: str | None,
            edits: list[str], resume_now: bool, no_input: bool, resolution: str | None = None,
            result: str | None = None) -> None:
    from .governance import APPROVED, DecisionError, edited_action, os_user, parse_edits
    from .journal import derive
    from .rail import outcome_line

    store, queue = _queue(home)
    decision = queue.get(decision_id)
    if decision.outcome is not None and decision.status == status and not edits:
        out.print(f"{decision_id} was already {status}; nothing changed ({outcome_line(decision)})")
        return
    state = derive(decision.run_id, store.events(decision.run_id))
    if state.finished:
        raise DecisionError(f"run {decision.run_id} has already {state.finished['status']}; its decision "
                            f"{decision_id} can no longer be made")
    action = edited_action(decision, parse_edits(edits)) if edits else None
    entered = None
    if result is not None:
        try:
            entered = json.loads(result)
        except ValueError:
            entered = result  # plain text is a result too
    before = decision.outcome
    decision = queue.decide(decision_id, status, by=os_user(), claimed=claimed, note=note, action=action,
                            resolution=resolution, result=entered)
    if before is not None:
        out.print(f"{decision_id} was already {decision.status}; nothing changed")
    else:
        out.print(outcome_line(decision))
    if decision.status == APPROVED or status != APPROVED:
        if resume_now:
            _drive(_engine(store, interactive=_interactive(no_input)), decision.run_id, resume=True)
        else:
            out.print(f"continue the run with: studiox resume {decision.run_id}")


@app.command()
def approve(
    decision_id: Annotated[str, typer.Argument(metavar="ID", help="The decision's id (see 'studiox decisions').")],
    note: Annotated[str | None, typer.Option("--note", help="Why; kept in the audit trail.")] = None,
    claimed: Annotated[str | None, typer.Option(
        "--as", help="Approve in this name (recorded as a claim, beside your OS user).")] = None,
    edits: Annotated[list[str], typer.Option(
        "--set", metavar="NAME=VALUE", help="Correct an argument before approving; checked again.")] = [],  # noqa: B006
    resume_now: Annotated[bool, typer.Option("--resume", help="Continue the run at once.")] = False,
    happened: Annotated[bool, typer.Option(
        "--happened", help="For an in-doubt call: it did take effect (give what it returned with --result).")] = False,
    result: Annotated[str | None, typer.Option(
        "--result", metavar="JSON", help="With --happened: the call's result, as JSON (or text).")] = None,
    retry: Annotated[bool, typer.Option(
        "--retry", help="For an in-doubt call: it did not take effect; call it again.")] = False,
    home: Home = None,
    no_input: NoInput = False,
) -> None:
    """Approve a pending action; the run carries it out exactly as approved."""
    from .governance import APPROVED, DecisionError

    if happened and retry:
        raise DecisionError("choose one: --happened (it took effect) or --retry (call it again)")
    if result is not None and not happened:
        raise DecisionError("--result goes with --happened")
    resolution = "happened" if happened else "retry" if retry else None
    _decide(decision_id, APPROVED, home, note=note, claimed=claimed, edits=edits, resume_now=resume_now,
            no_input=no_input, resolution=resolution, result=result)


@app.command()
def reject(
    decision_id: Annotated[str, typer.Argument(metavar="ID", help="The decision's id (see 'studiox decisions').")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required); kept in the audit trail.")],
    claimed: Annotated[str | None, typer.Option(
        "--as", help="Reject in this name (recorded as a claim, beside your OS user).")] = None,
    resume_now: Annotated[bool, typer.Option("--resume", help="Continue the run at once.")] = False,
    home: Home = None,
    no_input: NoInput = False,
) -> None:
    """Reject a pending action: it never runs, and the mission follows its on_reject."""
    from .governance import REJECTED, DecisionError

    if not reason.strip():
        raise DecisionError("a rejection needs a reason: --reason TEXT")
    _decide(decision_id, REJECTED, home, note=reason, claimed=claimed, edits=[], resume_now=resume_now,
            no_input=no_input)


@app.command()
def runs(
    home: Home = None,
    as_json: AsJson = False,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only runs with this status (succeeded, failed, waiting, running, interrupted, cancelled).")
    ] = None,
    mission: Annotated[str | None, typer.Option("--mission", help="Only runs of this mission.")] = None,
) -> None:
    """List runs, newest first."""
    from .rail import list_runs, runs_table

    store = _store(home, create=False)
    rows = list_runs(store) if store else []
    rows = [r for r in rows if (not status or r.status == status) and (not mission or r.mission == mission)]
    if as_json:
        out.print_json(json.dumps([r.as_json() for r in rows]))
    elif not rows:
        out.print(f"no runs{' match' if status or mission else ''} in {home_path(home)}")
    else:
        out.print(runs_table(rows))


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Show one run: its status, verdict and each step so far."""
    from .journal import derive, resolve_run
    from .locks import is_driven
    from .rail import STATUS_STYLE, finished_line, seconds, steps_table, usage_totals, when

    store = _store(home, create=False)
    run_id = resolve_run(store, run_id)
    state = derive(run_id, store.events(run_id))
    current = state.status(is_driven(store.home, run_id))
    if as_json:
        out.print_json(json.dumps({
            "id": run_id, "mission": state.mission_name, "status": current, "verdict": state.verdict,
            "note": (state.finished or {}).get("note"), "error": (state.finished or {}).get("error"),
            "waiting_for": (state.waiting or {}).get("decision") if current == "waiting" else None,
            "started": state.started["at"] if state.started else None, "duration": state.duration,
            "steps": [{"step": a, "status": e["status"], "output": e.get("output"), "error": e.get("error")}
                      for a, e in state.done.items()],
            "usage": usage_totals(state.model_calls),
        }))
        return
    style = STATUS_STYLE.get(current, "")
    out.print(f"run [bold]{run_id}[/] · mission {state.mission_name} · [{style}]{current}[/] · "
              f"started {when(state.started['at'] if state.started else None)} · {seconds(state.duration)}")
    out.print(steps_table(state))
    from .rail import usage_table

    usage = usage_table(state)
    if usage is not None:
        out.print(usage)
    if state.finished:
        out.print(finished_line(state.finished))
    elif current == "waiting" and state.waiting:
        did = state.waiting["decision"]
        out.print(f"[yellow]waiting for decision {did}[/] on step {state.waiting['step']}: "
                  f"see it with 'studiox decision show {did}', then 'studiox approve {did} --resume' or "
                  f"'studiox reject {did} --reason TEXT --resume'")
    elif current == "interrupted":
        out.print(f"continue it with: studiox resume {run_id}")


@app.command()
def log(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every event as one JSON line (the raw audit trail).")]
    = False,
) -> None:
    """The run's Observations rail, from the start: every step, observation, decision and outcome."""
    from .journal import resolve_run
    from .rail import rail_lines

    store = _store(home, create=False)
    run_id = resolve_run(store, run_id)
    events = store.events(run_id)
    if as_json:
        for event in events:
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        return
    for line in rail_lines(events):
        out.print(line)


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run (or the start of its id).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the audit trail.")] = "cancelled by a user",
    home: Home = None,
) -> None:
    """Cancel a run for good: a cancelled run never resumes."""
    from .journal import resolve_run

    store = _store(home, create=False)
    run_id = resolve_run(store, run_id)
    if _engine(store, quiet=True).cancel(run_id, reason) == "cancelled":
        out.print(f"run {run_id} is cancelled")
    else:
        out.print(f"run {run_id} is being driven by another process; it will stop as cancelled before its next step")


# ---------------------------------------------------------------------------- integrations


@app.command()
def tools(
    mission_file: Annotated[Path, typer.Argument(metavar="MISSION.yaml", help="The mission whose tools to list.")],
    as_json: AsJson = False,
) -> None:
    """Start each integration of a mission and list its tools, their annotations, and what studiox will do."""
    import asyncio

    from .integrations import inventory
    from .mission import load

    mission = load(mission_file)
    rows = asyncio.run(inventory(mission))
    if as_json:
        out.print_json(json.dumps(rows))
        return
    from .rail import tools_table

    out.print(tools_table(rows))
    if any(r.get("error") for r in rows):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def schema() -> None:
    """Print the mission JSON Schema (for editors: see docs/missions.md)."""
    from .schema import schema_path

    sys.stdout.write(schema_path().read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become a message and an exit code, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except StudioxError as e:
        err.print(e.render(), markup=False)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except typer.Abort:
        return EXIT_INTERRUPTED
    except typer.TyperException as e:  # a usage error found while parsing the arguments
        e.show()  # type: ignore[attr-defined]
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - the one place that turns a crash into a message
        if _state["debug"]:
            raise
        err.print(f"studiox hit an internal error (a bug): {type(e).__name__}: {e}\n"
                  "Run the same command with --debug for the traceback, and please report it.", markup=False)
        return EXIT_BUG
    return code if isinstance(code, int) else EXIT_OK


def entry() -> None:
    sys.exit(main())
