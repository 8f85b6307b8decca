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
) -> None:
    """Serve the portal: log in, work through the Decision Queue, watch runs live, start missions.
    Accounts: studiox users add NAME --role viewer|starter|approver|admin."""
    import logging

    try:
        import uvicorn

        from ..portal.app import create_app
    except ImportError as e:
        from ..errors import UsageError

        raise UsageError(f"the portal needs its web libraries ({e.name} is missing): pip install 'studiox[web]'") \
            from None
    from ..portal.pages import missions_in

    folder = api.home_path(remember_home(home))
    chosen = missions_in(missions or [Path("missions")])
    application = create_app(folder, chosen)
    portal = application.state.portal
    out.print(f"studiox portal on http://{host if ':' not in host else f'[{host}]'}:{port} · state folder {folder}")
    out.print(f"missions: {', '.join(sorted(portal.missions)) or 'none'}", markup=False)
    for file, problem in portal.mission_problems.items():
        err.print(f"[yellow]not served[/]: {file}: {problem.splitlines()[0]}")
    if host not in LOCAL:
        err.print(f"[yellow]warning[/]: listening on {host}, not only this machine: put the portal behind TLS (a "
                  "reverse proxy such as Caddy or nginx), or passwords and sessions cross the network in the clear")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=20)
