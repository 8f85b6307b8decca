"""The portal's web application (Starlette, Jinja2 templates, a little of our own JavaScript).

Roles (``users.ROLES``): viewers see; starters also start runs; approvers also decide and claim;
admins also everything else. Every page needs a session; a page without one redirects to the
login, an action without one is 401, a form without its CSRF token 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..errors import RunNotFound, StudioxError
from .site import HERE, Forbidden, Portal

log = logging.getLogger("studiox.portal")


def create_app(home: Path, missions: list[Path], *, service: bool = False) -> Starlette:
    """The portal's app; with ``service``, the triggers and timers of its missions tick beside it
    (and webhooks are taken at /hooks/...)."""
    portal = Portal(home, missions)
    from . import routes

    @contextlib.asynccontextmanager
    async def lifespan(app):
        ticking = None
        if service:
            from ..service.runner import Ticking

            ticking = Ticking.start(portal.service(), interval=1.0)
        yield
        if ticking is not None:
            await asyncio.to_thread(ticking.stop)
        await asyncio.to_thread(portal.drives.stop_all)  # SIGTERM: each drive journals its interruption

    async def refused(request: Request, e: Exception) -> Response:
        assert isinstance(e, Forbidden)
        return await _refused(portal, request, e)

    async def failed(request: Request, e: Exception) -> Response:
        assert isinstance(e, StudioxError)
        return await _error(portal, request, e)

    app = Starlette(routes=[*routes.routes(portal),
                            Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static")],
                    exception_handlers={Forbidden: refused, StudioxError: failed}, lifespan=lifespan,
                    middleware=[Middleware(RequestLog, portal=portal)])
    app.state.portal = portal
    return app


class RequestLog:
    """One JSON line per request on the ``studiox.portal`` logger: method, path, status, time, who."""

    def __init__(self, app, portal: Portal):
        self.app, self.portal = app, portal

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            person = self.portal.session(Request(scope))
            client = scope.get("client")
            log.info(json.dumps({"at": round(time.time(), 3), "method": scope["method"], "path": scope["path"],
                                 "status": status["code"], "ms": round((time.perf_counter() - started) * 1000, 1),
                                 "user": (person or {}).get("name"), "client": client[0] if client else None}))


async def _refused(portal: Portal, request: Request, e: Forbidden) -> Response:
    if e.status == 401 and request.method == "GET":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    if request.method != "GET":
        return PlainTextResponse(e.message, status_code=e.status)
    return portal.page(request, "error.html", status=e.status, message=e.message)


async def _error(portal: Portal, request: Request, e: StudioxError) -> Response:
    status = 404 if isinstance(e, RunNotFound) else 400
    return portal.page(request, "error.html", status=status, message=e.render())
