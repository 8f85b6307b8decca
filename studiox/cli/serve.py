"""``studiox serve``: the portal (a web Decision Queue, live run pages, starting missions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .app import Home, app, remember_home
from .output import err, out

LOCAL = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    missions: Annotated[list[Path] | None, typer.Argument(
        metavar="[MISSION_OR_FOLDER]...", help="Missions people may start (default: ./missions).",
        show_default=False)] = None,
    home: Home = None,
    host: Annotated[str, typer.Option("--host", help="Where to listen: this machine only unless you say so.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port to listen on.")] = 8765,
    no_web: Annotated[bool, typer.Option("--no-web", help="Only the triggers, timers and notifications: no portal.")
                      ] = False,
) -> None:
    """Serve the portal (log in, work through the Decision Queue, watch runs live, start missions)
    and the missions' triggers: inbox folders, schedules, webhooks; deadlines expire on time and
    runs cut off by a crash go on. Accounts: studiox users add NAME --role viewer|...|admin."""
    import logging

    try:
        import uvicorn

        from ..portal.app import create_app
    except ImportError as e:
        from ..errors import UsageError

        raise UsageError(f"the portal needs its web libraries ({e.name} is missing): pip install 'studiox[web]'") \
            from None

    folder = api.home_path(remember_home(home))
    from ..mission import missions_in

    chosen = missions_in(missions or [Path("missions")])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if no_web:
        _service_only(folder, chosen)
        return
    application = create_app(folder, chosen, service=True)
    portal = application.state.portal
    out.print(f"studiox portal on http://{host if ':' not in host else f'[{host}]'}:{port} · state folder {folder}")
    _watching(portal.service(), portal.mission_problems)
    if host not in LOCAL:
        err.print(f"[yellow]warning[/]: listening on {host}, not only this machine: put the portal behind TLS (a "
                  "reverse proxy such as Caddy or nginx), or passwords and sessions cross the network in the clear")
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=20)


def _watching(service, problems: dict) -> None:
    """What the service watches, said at start."""
    out.print(f"missions: {', '.join(sorted(service.missions)) or 'none'}", markup=False)
    for trigger in service.triggers:
        out.print(f"  trigger {trigger.id}: {trigger.describe}", markup=False)
    for file, problem in problems.items():
        err.print(f"[yellow]not served[/]: {file}: {problem.splitlines()[0]}")


def _service_only(folder: Path, chosen: list[Path]) -> None:
    """``serve --no-web``: tick until SIGTERM or Ctrl-C, then stop the drives cleanly."""
    import signal
    import threading

    from ..errors import MissionInvalid
    from ..portal.drives import Drives
    from ..service.loop import Service
    from ..service.runner import Ticking

    store = api.open_store(folder, create=True)
    assert store is not None
    store.close()
    (folder / "logs").mkdir(exist_ok=True)
    loaded, problems = [], {}
    for path in chosen:
        try:
            loaded.append(api.load_mission(path))
        except MissionInvalid as e:
            problems[str(path)] = e.render()
    from ..notify import Notifier

    drives = Drives(folder)
    service = Service(folder, loaded, drives.drive, notifier=Notifier(folder, {m.name: m for m in loaded}))
    out.print(f"studiox service (no portal) · state folder {folder}")
    _watching(service, problems)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ticking = Ticking.start(service)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    ticking.stop()
    drives.stop_all()


@app.command()
def triggers(
    mission_file: Annotated[Path, typer.Argument(metavar="MISSION.yaml", help="The mission whose triggers to list.")],
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")] = False,
) -> None:
    """A mission's triggers and their last firings (from the trigger ledger of the state folder)."""
    import time
    from datetime import datetime

    from rich.table import Table

    from ..dispatch import queued
    from ..service import triggers as kinds
    from ..service.ledger import DATABASE, open_ledger
    from ..units import iso, when
    from .output import escape, print_json

    mission = api.load_mission(mission_file)
    folder = api.home_path(remember_home(home))
    ledger = open_ledger(folder) if queued() or (folder / DATABASE).exists() else None
    rows: list[dict] = []
    for trigger in kinds.of(mission):
        last = ledger.last(trigger.id, 5) if ledger else []
        rows.append({"trigger": trigger.id, "kind": trigger.kind, "watches": trigger.describe,
                     "firings": [{"at": iso(f.at), "key": f.key, "run": f.run, "outcome": f.outcome,
                                  **({"file": f.detail["file"]} if "file" in f.detail else {})} for f in last],
                     **({"next": iso(kinds.next_time(trigger, time.time()))} if trigger.kind == "schedule" else {})})
    if ledger:
        ledger.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print(f"{mission.name} declares no triggers (see docs/missions.md, Triggers)", markup=False)
        return
    table = Table("trigger", "watches", "last firings", header_style="bold")
    for row in rows:
        firings = "\n".join(f"{when(datetime.fromisoformat(f['at']).timestamp())} → run {f['run']}" + (f" ({f['file']})" if f.get("file") else "")
                            + ("" if f["outcome"] == "started" else f" [{f['outcome'] or 'starting'}]")
                            for f in row["firings"]) or "—"
        if row.get("next"):
            firings += f"\nnext: {when(datetime.fromisoformat(row['next']).timestamp())}"
        table.add_row(escape(row["trigger"]), escape(row["watches"]), escape(firings))
    out.print(table)
