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
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import api, users
from ..errors import MissionInvalid, StudioxError
from . import sessions
from .drives import Drives

HERE = Path(__file__).resolve().parent
log = logging.getLogger("studiox.portal")


class Forbidden(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class Portal:
    """The state one served portal keeps: its folder, missions, key, drives and login limits."""

    def __init__(self, home: Path, missions: list[Path]):
        self.home = home
        self.missions: dict[str, Path] = {}
        self.mission_problems: dict[str, str] = {}
        for path in missions:
            try:
                mission = api.load_mission(path)
            except MissionInvalid as e:
                self.mission_problems[str(path)] = e.render()
                continue
            self.missions.setdefault(mission.name, path)
        store = api.open_store(home, create=True)
        assert store is not None
        store.close()
        (home / "logs").mkdir(exist_ok=True)
        self.key = sessions.secret(home)
        self.drives = Drives(home)
        self.limits = sessions.LoginLimit()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["ago"] = _ago
        self.templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=1,
                                                                           default=str)

    def store(self):
        return api.need_store(self.home)

    # ------------------------------------------------------------------ who is asking

    def session(self, request: Request) -> dict | None:
        return sessions.read(self.key, request.cookies.get(sessions.COOKIE))

    def user(self, request: Request):
        found = self.session(request)
        if found is None:
            return None
        person = users.get(self.home, found["name"])
        if person is None or person.session_epoch != found.get("epoch"):
            return None  # removed, or the password changed since: the session has ended
        return person

    def need(self, request: Request, role: str):
        person = self.user(request)
        if person is None:
            raise Forbidden(401, "log in first")
        if not users.allows(person.role, role):
            raise Forbidden(403, f"this needs the role {role}; {person.name} is a {person.role}")
        return person

    async def form(self, request: Request, role: str):
        """The person and the submitted form of an action: a session with ``role``, and its CSRF token."""
        person = self.need(request, role)
        form = await request.form()
        token = form.get("csrf")
        if not sessions.csrf_ok(self.session(request), token if isinstance(token, str) else None):
            raise Forbidden(403, "this form is not from this session (its CSRF token is missing or wrong); reload the "
                                 "page and try again")
        return person, form

    def page(self, request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        person = self.user(request)
        session = self.session(request)
        store = self.store()
        try:
            pending = len(api.list_decisions(store))
        finally:
            store.close()
        return self.templates.TemplateResponse(request, template, {
            "user": person, "csrf": (session or {}).get("csrf", ""), "pending": pending,
            "allows": lambda role: person is not None and users.allows(person.role, role), **context},
            status_code=status)


def _when(at: float | None) -> str:
    return "—" if not at else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def create_app(home: Path, missions: list[Path]) -> Starlette:
    portal = Portal(home, missions)
    from . import routes

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
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
    status = 404 if type(e).__name__ in ("RunNotFound",) else 400
    return portal.page(request, "error.html", status=status, message=e.render())
