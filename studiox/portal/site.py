"""The portal's state and who is asking: one ``Portal`` per served state folder."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from .. import api, users
from ..errors import MissionInvalid
from ..units import when
from . import sessions
from .drives import Drives

HERE = Path(__file__).resolve().parent


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
        self.templates.env.filters["when"] = when
        self.templates.env.filters["ago"] = _ago
        self.templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=1,
                                                                           default=str)

    def store(self):
        return api.need_store(self.home)

    def service(self):
        """The triggers and timers of the served missions (one Service per portal)."""
        if getattr(self, "_service", None) is None:
            from ..notify import Notifier
            from ..service.loop import Service

            served = [api.load_mission(path) for path in self.missions.values()]
            self._service = Service(self.home, served, self.drives.drive,
                                    notifier=Notifier(self.home, {m.name: m for m in served}))
        return self._service

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

    def page(self, request: Request, template: str, status: int = 200, pending: int | None = None,
             **context) -> HTMLResponse:
        """``pending``: how many decisions wait, when the caller has counted them; else counted here,
        for a person logged in only (a visitor's page says nothing of the queue)."""
        person = self.user(request)
        session = self.session(request)
        if pending is None and person is not None:
            store = self.store()
            try:
                pending = len(api.list_decisions(store))
            finally:
                store.close()
        return self.templates.TemplateResponse(request, template, {
            "user": person, "csrf": (session or {}).get("csrf", ""), "pending": pending,
            "allows": lambda role: person is not None and users.allows(person.role, role), **context},
            status_code=status)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
