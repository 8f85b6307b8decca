"""The portal's pages and actions. Each is a thin call into ``api`` (and ``users``, ``export``)."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import api, users
from ..errors import DecisionError, InputsInvalid, StudioxError, UsageError
from . import pages, sessions
from .site import Forbidden, Portal

POLL = 0.3  # seconds between looks at the journal for the live rail


def routes(portal: Portal) -> list[Route]:
    p = portal

    async def healthz(request: Request) -> Response:
        store = p.store()
        store.close()
        return JSONResponse({"ok": True})

    # ------------------------------------------------------------------ login

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return p.page(request, "login.html", next=request.query_params.get("next", "/"))
        form = await request.form()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        client = f"client:{request.client.host if request.client else '?'}"
        keys = (f"name:{name}", client)
        wait = p.limits.wait(*keys)
        if wait:
            return p.page(request, "login.html", status=429, next="/",
                          error=f"too many failed logins; try again in {wait} s")
        person = await asyncio.to_thread(users.verify, p.home, name, password)
        if person is None:
            p.limits.failed(*keys)
            await asyncio.sleep(p.limits.delay(*keys))  # each failure answers more slowly
            return p.page(request, "login.html", status=401, next=str(form.get("next", "/")),
                          error="wrong name or password")
        p.limits.succeeded(*keys)
        target = str(form.get("next") or "/")
        response = RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/",
                                    status_code=303)
        response.set_cookie(sessions.COOKIE, sessions.issue(p.key, person.name, person.session_epoch),
                            max_age=sessions.LIFETIME, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        await p.form(request, "viewer")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(sessions.COOKIE)
        return response

    # ------------------------------------------------------------------ decisions

    async def home(request: Request) -> Response:
        p.need(request, "viewer")
        return RedirectResponse("/decisions", status_code=303)

    async def decisions(request: Request) -> Response:
        p.need(request, "viewer")
        q = request.query_params
        store = p.store()
        try:
            pending = api.list_decisions(store)  # read once: the rows, the filters' choices and the count
            rows = pages.inbox(pending, api.queue(store).assignee, mission=q.get("mission") or None,
                               step=q.get("step") or None, age=q.get("age") or None, sort=q.get("sort", "oldest"))
        finally:
            store.close()
        return p.page(request, "decisions.html", rows=rows, query=q, pending=len(pending),
                      missions=sorted({d.request["mission"] for d in pending if d.request.get("mission")}),
                      steps=sorted({d.request["step"] for d in pending}))

    def _decision(store, decision_id: str):
        queue = api.queue(store)
        decision = queue.get(decision_id)
        return decision, queue.assignee(decision_id)

    async def decision(request: Request) -> Response:
        p.need(request, "viewer")
        store = p.store()
        try:
            found, claimed = _decision(store, request.path_params["id"])
        finally:
            store.close()
        return p.page(request, "decision.html", d=found, data=api.decision_json(found), claimed=claimed,
                      fields=pages.edit_fields(found))

    async def approve(request: Request) -> Response:
        person, form = await p.form(request, "approver")
        decision_id = request.path_params["id"]
        store = p.store()
        try:
            found, claimed = _decision(store, decision_id)
            edits = [f"{f['name']}={form.get('arg.' + f['name'])}" for f in pages.edit_fields(found)
                     if form.get("arg." + f["name"]) is not None and str(form.get("arg." + f["name"])) != f["value"]]
            try:  # checked in full before anything is recorded, and restated before it is
                from ..edits import edited_action, parse_edits

                action = edited_action(found, parse_edits(edits, found)) if edits else None
            except DecisionError as e:
                return p.page(request, "decision.html", status=400, d=found, data=api.decision_json(found),
                              claimed=claimed, fields=pages.edit_fields(found), error=e.render(), form=form)
            if form.get("confirm") != "yes":
                return p.page(request, "confirm.html", d=found, edits=edits, note=form.get("note") or "",
                              proposed=found.request["action"], action=action.as_dict() if action else None)
            try:
                decided = api.decide(store, decision_id, "approved", by=person.name, note=str(form.get("note") or "")
                                     or None, edits=edits or None, groups=[])
            except DecisionError as e:
                return p.page(request, "decision.html", status=409, d=found, data=api.decision_json(found),
                              claimed=claimed, fields=pages.edit_fields(found), error=e.render())
        finally:
            store.close()
        if decided.decision.status != "pending":
            p.drives.drive(found.run_id, decision_id)
        return RedirectResponse(f"/runs/{found.run_id}" if decided.decision.status != "pending"
                                else f"/decisions/{decision_id}", status_code=303)

    async def reject(request: Request) -> Response:
        person, form = await p.form(request, "approver")
        decision_id = request.path_params["id"]
        reason = str(form.get("reason") or "").strip()
        store = p.store()
        try:
            found, claimed = _decision(store, decision_id)
            if not reason:
                return p.page(request, "decision.html", status=400, d=found, data=api.decision_json(found),
                              claimed=claimed, fields=pages.edit_fields(found), error="a rejection needs a reason")
            try:
                api.decide(store, decision_id, "rejected", by=person.name, note=reason, groups=[])
            except DecisionError as e:
                return p.page(request, "decision.html", status=409, d=found, data=api.decision_json(found),
                              claimed=claimed, fields=pages.edit_fields(found), error=e.render())
        finally:
            store.close()
        p.drives.drive(found.run_id, decision_id)
        return RedirectResponse(f"/runs/{found.run_id}", status_code=303)

    async def claim(request: Request) -> Response:
        person, _ = await p.form(request, "approver")
        store = p.store()
        try:
            api.queue(store).claim(request.path_params["id"], person.name)
        finally:
            store.close()
        return RedirectResponse(f"/decisions/{request.path_params['id']}", status_code=303)

    # ------------------------------------------------------------------ runs

    async def runs(request: Request) -> Response:
        p.need(request, "viewer")
        q = request.query_params
        since = None
        if q.get("since"):
            from ..units import since_time

            since = since_time(q["since"])
        store = p.store()
        try:
            rows = list(api.list_runs(store, status=q.get("status") or None, mission=q.get("mission") or None,
                                      key=q.get("key") or None, since=since, limit=200))
        finally:
            store.close()
        return p.page(request, "runs.html", rows=rows, query=q, missions=sorted(p.missions))

    async def run_page(request: Request) -> Response:
        p.need(request, "viewer")
        store = p.store()
        try:
            run_id = api.resolve_run(store, request.path_params["id"])
            from ..trail import show_run

            data = show_run(store, run_id)
            events = store.events(run_id)
            decisions = [api.decision_json(d) for d in api.list_decisions(store, include_all=True)
                         if d.run_id == run_id]
        finally:
            store.close()
        rail = [line for e in events if (line := pages.rail_text(e))]
        return p.page(request, "run.html", run=data["run"], steps=data["steps"], rail=rail, last=len(events),
                      timeline=pages.timeline(events), decisions=decisions)

    async def run_events(request: Request) -> Response:
        """The live rail: server-sent events, one per new rail line, until the run ends."""
        p.need(request, "viewer")
        run_id = request.path_params["id"]
        after = int(request.query_params.get("after", "0"))

        async def stream():
            seen = after
            while not await request.is_disconnected():
                store = p.store()
                try:
                    fresh = store.events(run_id, seen + 1)
                finally:
                    store.close()
                for event in fresh:
                    seen = event["seq"]
                    line = pages.rail_text(event)
                    if line:
                        yield f"id: {seen}\ndata: {json.dumps({'line': line, 'type': event['type']})}\n\n"
                    if event["type"] == "run_finished":
                        yield "event: end\ndata: {}\n\n"
                        return
                await asyncio.sleep(POLL)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def run_export(request: Request) -> Response:
        p.need(request, "viewer")
        fmt = request.query_params.get("format", "html")
        if fmt not in ("html", "md", "csv", "jsonl"):
            raise Forbidden(400, "the format is html, md, csv or jsonl")
        store = p.store()
        try:
            from ..export import render

            run_id = api.resolve_run(store, request.path_params["id"])
            text = render(fmt, api.audit_runs(store, run_id=run_id), f"studiox audit: run {run_id}")
        finally:
            store.close()
        kinds = {"html": "text/html", "md": "text/markdown", "csv": "text/csv", "jsonl": "application/x-ndjson"}
        return Response(text, media_type=kinds[fmt],
                        headers={"Content-Disposition": f'attachment; filename="studiox-{run_id}.{fmt}"'})

    async def run_verify(request: Request) -> Response:
        p.need(request, "viewer")
        store = p.store()
        try:
            from ..trail import verify_runs, with_children

            run_id = api.resolve_run(store, request.path_params["id"])
            verdicts = verify_runs(store, with_children(store, run_id))
        finally:
            store.close()
        return p.page(request, "verify.html", run_id=run_id, verdicts=verdicts)

    async def passage(request: Request) -> Response:
        """A cited passage as the run retrieved it (from its journal, not the document as it is now)."""
        p.need(request, "viewer")
        citation = request.query_params.get("citation", "")
        store = p.store()
        try:
            run_id = api.resolve_run(store, request.path_params["id"])
            events = store.events(run_id)
        finally:
            store.close()
        for event in events:
            output = event.get("output") if event["type"] == "step_finished" else None
            for found in (output.get("passages") or []) if isinstance(output, dict) else []:
                if isinstance(found, dict) and found.get("citation") == citation:
                    return p.page(request, "passage.html", citation=citation, run_id=run_id, text=found.get("text"),
                                  heading=found.get("heading"))
        raise Forbidden(404, f"run {run_id} retrieved no passage {citation}")

    # ------------------------------------------------------------------ starting runs

    async def mission_list(request: Request) -> Response:
        p.need(request, "viewer")
        return p.page(request, "missions.html", missions=p.missions, problems=p.mission_problems)

    async def start(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            p.need(request, "starter")  # (before anything is said of the missions served)
        if name not in p.missions:
            raise Forbidden(404, f"no mission '{name}' is served here")
        mission = api.load_mission(p.missions[name])
        if request.method == "GET":
            return p.page(request, "start.html", mission=mission, fields=pages.input_fields(mission))
        person, form = await p.form(request, "starter")
        files = {key: (value.filename or key, await value.read()) for key, value in form.multi_items()
                 if hasattr(value, "read") and key.startswith("file.")}
        files = {key.removeprefix("file."): v for key, v in files.items()}
        values = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        try:
            inputs = pages.form_inputs(mission, values, files)
            options = _options(p, mission, files.get("__replay__"))
            store = p.store()
            try:
                run_id = api.engine(store).start(mission, inputs, options, user=person.name)
            finally:
                store.close()
        except (InputsInvalid, UsageError) as e:
            return p.page(request, "start.html", status=400, mission=mission, fields=pages.input_fields(mission),
                          error=str(e), values=values)
        except StudioxError as e:
            return p.page(request, "start.html", status=409, mission=mission, fields=pages.input_fields(mission),
                          error=e.render(), values=values)
        p.drives.drive(run_id)
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    async def hook(request: Request) -> Response:
        """A webhook trigger: authenticated by its HMAC signature, not by a session."""
        service = p.service()
        trigger = next((t for t in service.triggers if t.kind == "webhook" and t.spec["path"] == request.url.path),
                       None)
        header = (trigger.spec.get("header") if trigger else None) or "X-Studiox-Signature"
        body = await request.body()
        status, answer = await asyncio.to_thread(service.webhook, request.url.path, body, request.headers.get(header))
        return JSONResponse(answer, status_code=status)

    return [
        Route("/healthz", healthz),
        Route("/hooks/{rest:path}", hook, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", home),
        Route("/decisions", decisions),
        Route("/decisions/{id}", decision),
        Route("/decisions/{id}/approve", approve, methods=["POST"]),
        Route("/decisions/{id}/reject", reject, methods=["POST"]),
        Route("/decisions/{id}/claim", claim, methods=["POST"]),
        Route("/runs", runs),
        Route("/runs/{id}", run_page),
        Route("/runs/{id}/events", run_events),
        Route("/runs/{id}/export", run_export),
        Route("/runs/{id}/verify", run_verify),
        Route("/runs/{id}/passage", passage),
        Route("/missions", mission_list),
        Route("/missions/{name}/start", start, methods=["GET", "POST"]),
    ]


def _options(p: Portal, mission, replay: tuple[str, bytes] | None) -> dict:
    """The run's options: scripted model answers when a replay file was uploaded (kept in the state folder)."""
    path = None
    if replay is not None and replay[1]:
        import hashlib

        folder = p.home / "uploads"
        folder.mkdir(exist_ok=True)
        path = folder / f"replay-{hashlib.sha256(replay[1]).hexdigest()[:16]}.yaml"
        path.write_bytes(replay[1])
    return api.run_options(mission=mission, model=None, cache=False, replay=path)
