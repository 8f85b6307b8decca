"""The Decision Queue from the shell: ``decisions``, ``decision show``, ``approve``, ``reject``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from ..dispatch import queued
from ..errors import DecisionError, RunLocked
from .app import AsJson, Home, NoInput, app, remember_home
from .output import err, out, plain, print_json
from .runs import drive, follow_until_parked, interactive

decision_app = typer.Typer(help="Look at one decision.", no_args_is_help=True,
                           context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(decision_app, name="decision")


@app.command()
def decisions(
    home: Home = None,
    as_json: AsJson = False,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Decided, expired and void ones too (void: the run ended without them).")] = False,
    key: Annotated[str | None, typer.Option("--key", help="Only decisions about this business key.")] = None,
    mission: Annotated[str | None, typer.Option("--mission", help="Only decisions of this mission's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many, oldest first.")] = 50,
) -> None:
    """The Decision Queue: pending decisions across all runs, oldest first (at most 50 unless --limit)."""
    from ..ui.rail import decisions_table

    rows = api.list_decisions(api.open_store(remember_home(home)), include_all=show_all, limit=limit, key=key,
                              mission=mission)
    if as_json:
        print_json([api.decision_json(d) for d in rows])
    elif not rows:
        plain("no pending decisions" if not show_all else "no decisions")
    else:
        out.print(decisions_table(rows))
        if len(rows) == limit:
            plain(f"the oldest {limit}; there may be more: --limit N")


@decision_app.command("show")
def decision_show(
    decision_id: Annotated[str, typer.Argument(metavar="ID", help="The decision's id.")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Show one decision: the action, its arguments, the evidence, and the outcome if made."""
    from ..ui.prompt import panel

    decision = api.queue(api.need_store(remember_home(home))).get(decision_id)
    if as_json:
        print_json(api.decision_json(decision))
        return
    out.print(panel(decision))  # a decided decision's card says who, when and how


def _decide(decision_id: str, status: str, home: Path | None, *, note: str | None, claimed: str | None,
            edits: list[str], resume_now: bool, no_input: bool, as_json: bool, resolution: str | None = None,
            result: str | None = None) -> None:
    from ..governance import APPROVED, os_user
    from ..ui.rail import outcome_line

    store = api.need_store(remember_home(home))
    decided = api.decide(store, decision_id, status, by=os_user(), claimed=claimed, note=note, edits=edits,
                         resolution=resolution, result=result)
    decision = decided.decision
    if queued():
        _wake(store, decided, wait=resume_now, as_json=as_json)
        return
    if not resume_now or not (decision.status == APPROVED or status != APPROVED):
        if as_json:
            print_json({"decision": api.decision_json(decision), "changed": decided.changed, "run": None})
        elif not decided.changed:
            out.print(f"{decision_id} was already {decision.status}; nothing changed ({outcome_line(decision)})")
        else:
            out.print(outcome_line(decision))
            if decision.outcome is not None:  # a quorum still waiting for approvers has nothing to go on with
                plain(f"continue the run with: studiox resume {decision.run_id}")
        return
    if not as_json:
        out.print(outcome_line(decision) if decided.changed else
                  f"{decision_id} was already {decision.status}; nothing changed")
    try:
        drive(store, decision.run_id, resume=True, ask=interactive(no_input, as_json), as_json=as_json)
    except RunLocked:
        # the decision is recorded; the process driving the run picks it up at its next look
        if as_json:
            print_json({"decision": api.decision_json(decision), "changed": decided.changed,
                        "run": {"run": decision.run_id, "status": "running", "driven_elsewhere": True}})
        else:
            plain(f"run {decision.run_id} is being driven by another process, which will apply this decision")


def _wake(store, decided, *, wait: bool, as_json: bool) -> None:
    """The postgres backend: a decision that settles its question wakes its run (a segment for a
    worker, under an id fixed by the decision: two approvers at once wake it once); ``wait``: follow
    the run's rail until it finishes or parks again. A sub-mission's run goes on with its top run."""
    from ..dispatch import Dispatcher
    from ..ui.rail import outcome_line

    decision = decided.decision
    run_id = api.top_run(store, decision.run_id)
    segment = None
    if decided.changed and decision.outcome is not None:  # (a quorum still short of approvers wakes nothing)
        dispatcher = Dispatcher()
        try:
            segment = dispatcher.wake(run_id, decision.id)
            if not dispatcher.workers() and not as_json:
                err.print(f"note: no worker is running; run {run_id} goes on when one starts (studiox worker)",
                          markup=False)
        finally:
            dispatcher.close()
    if not as_json:
        out.print(outcome_line(decision) if decided.changed else
                  f"{decision.id} was already {decision.status}; nothing changed ({outcome_line(decision)})")
    if wait:
        follow_until_parked(store, run_id, as_json=as_json)
    if as_json:
        print_json({"decision": api.decision_json(decision), "changed": decided.changed,
                    "run": {"run": run_id, "status": "queued", "segment": segment} if segment else None})
    elif segment:
        plain(f"run {run_id} is queued for a worker; follow it with: studiox log {run_id} --follow")


@app.command()
def approve(
    decision_id: Annotated[str, typer.Argument(metavar="ID", help="The decision's id (see 'studiox decisions').")],
    note: Annotated[str | None, typer.Option("--note", help="Why; kept in the audit trail.")] = None,
    claimed: Annotated[str | None, typer.Option(
        "--as", help="Approve in this name (recorded as a claim, beside your OS user).")] = None,
    edits: Annotated[list[str], typer.Option(
        "--set", metavar="NAME=VALUE", help="Correct an argument before approving; checked again.")] = [],  # noqa: B006
    resume_now: Annotated[bool, typer.Option("--resume", help=(
        "Continue the run at once (on the postgres backend, where a worker continues it: follow its rail)."))]
    = False,
    happened: Annotated[bool, typer.Option(
        "--happened", help="For an in-doubt call: it did take effect (give what it returned with --result).")] = False,
    result: Annotated[str | None, typer.Option(
        "--result", metavar="JSON", help="With --happened: the call's result, as JSON (or text).")] = None,
    retry: Annotated[bool, typer.Option(
        "--retry", help="For an in-doubt call: it did not take effect; call it again.")] = False,
    home: Home = None,
    no_input: NoInput = False,
    as_json: AsJson = False,
) -> None:
    """Approve a pending action; the run carries it out exactly as approved."""
    from ..governance import APPROVED

    if happened and retry:
        raise DecisionError("choose one: --happened (it took effect) or --retry (call it again)")
    if result is not None and not happened:
        raise DecisionError("--result goes with --happened")
    resolution = "happened" if happened else "retry" if retry else None
    _decide(decision_id, APPROVED, home, note=note, claimed=claimed, edits=edits, resume_now=resume_now,
            no_input=no_input, as_json=as_json, resolution=resolution, result=result)


@app.command()
def reject(
    decision_id: Annotated[str, typer.Argument(metavar="ID", help="The decision's id (see 'studiox decisions').")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required); kept in the audit trail.")],
    claimed: Annotated[str | None, typer.Option(
        "--as", help="Reject in this name (recorded as a claim, beside your OS user).")] = None,
    resume_now: Annotated[bool, typer.Option("--resume", help=(
        "Continue the run at once (on the postgres backend, where a worker continues it: follow its rail)."))]
    = False,
    home: Home = None,
    no_input: NoInput = False,
    as_json: AsJson = False,
) -> None:
    """Reject a pending action: it never runs, and the mission follows its on_reject."""
    from ..governance import REJECTED

    if not reason.strip():
        raise DecisionError("a rejection needs a reason: --reason TEXT")
    _decide(decision_id, REJECTED, home, note=reason, claimed=claimed, edits=[], resume_now=resume_now,
            no_input=no_input, as_json=as_json)
