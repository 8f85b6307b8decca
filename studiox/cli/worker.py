"""``studiox worker``: drive queued runs (the postgres backend)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .app import EXIT_USAGE, Home, app, remember_home
from .output import err, plain


def _line(event: dict) -> str:
    """One worker log event, for a person."""
    at = time.strftime("%H:%M:%S")
    who = f"worker {event.get('worker', '?')}"
    kind = event.get("event")
    if kind == "ready":
        return f"{at} {who} ready on {event['host']} (pid {event['pid']}): up to {event['concurrency']} runs at once"
    if kind == "stopped":
        return f"{at} {who} stopped"
    if kind == "takeover":
        silent = f"silent for {event['silent_for']:.1f} s" if event.get("silent_for") is not None else "gone"
        return f"{at} {who} took over {event['segments']} segment(s) of worker {event['from']} ({silent})"
    run = f"run {event.get('run', '?')}"
    if kind == "start":
        return f"{at} {who} · {run} · driving ({event['segment']})"
    if kind == "error":
        return f"{at} {who} · {run} · stopped by an error: {event['error']}"
    if event.get("segment") == "waits":
        return f"{at} {who} · {run} · waits: {event['why']}"
    status = event.get("status")
    detail = f" for decision {event['decision']}" if event.get("decision") else (
        f": {event['why']}" if event.get("why") else "")
    return f"{at} {who} · {run} · {status}{detail} ({event.get('seconds', 0):.1f} s)"


@app.command()
def worker(
    missions: Annotated[list[Path] | None, typer.Argument(
        metavar="[MISSION_OR_FOLDER]...", help=(
            "Missions whose triggers (inbox folders, schedules) the workers watch: once across all workers, "
            "every two seconds. Give every worker the same ones. Default: none (triggers off)."),
        show_default=False)] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help=(
        "Runs driven at once by each worker. Stored with the queue, so all workers share the value "
        "the last one started with."))] = 2,
    executor_id: Annotated[str | None, typer.Option("--id", metavar="NAME", help=(
        "This worker's executor id (default: $STUDIOX_WORKER_ID, else the host name). Give each worker "
        "on a machine its own, and restart a worker with the same one: it takes up what it was driving."))] = None,
    takeover_after: Annotated[float, typer.Option("--takeover-after", metavar="SECONDS", min=0.5, help=(
        "Take over the runs of a worker silent for this long (it was killed, or its machine lost)."))] = 5.0,
    grace: Annotated[float, typer.Option("--grace", metavar="SECONDS", min=0, help=(
        "On Ctrl-C or SIGTERM, how long runs being driven get to park or finish before the worker stops "
        "(what is cut off is taken up again: by this worker restarted, or by another)."))] = 30.0,
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Log one JSON object a line.")] = False,
) -> None:
    """Drive queued runs until stopped (postgres backend). Start one or more per machine: they share
    the queue, and take over the runs of a worker that dies."""
    from .. import api
    from ..dispatch import database_url, queued

    if not queued():
        err.print("studiox worker drives runs queued in PostgreSQL: set STUDIOX_BACKEND=postgres (or pass "
                  "--backend postgres) and STUDIOX_DATABASE_URL; with the local backend, runs are driven by "
                  "the process that starts them", markup=False)
        raise typer.Exit(EXIT_USAGE)
    url = database_url()
    watched = []
    if missions:
        from ..mission import missions_in

        watched = [api.load_mission(path) for path in missions_in(missions)]  # an invalid one: said, exit 2
    from ..dispatch.worker import Worker

    def say(event: dict) -> None:
        text = json.dumps(event, ensure_ascii=False) if as_json else _line(event)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    name = executor_id or os.environ.get("STUDIOX_WORKER_ID") or socket.gethostname()
    serving = Worker(api.home_path(remember_home(home)), url, executor=name, concurrency=concurrency,
                     takeover_after=takeover_after, say=say, missions=watched)

    def stop(signum, frame) -> None:
        if not serving.stop.is_set() and not as_json:
            plain(f"stopping: runs being driven get {grace:g} s to park or finish")
        serving.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving.run(grace=grace)
