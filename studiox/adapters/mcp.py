"""Integrations: MCP sessions to a mission's servers, through the official ``mcp`` SDK.

A server is started on first use; one session per integration is reused by every step of the
run; all are closed when the run ends, parks or fails (a stdio server also exits when its
input closes, so a killed studiox leaves no server behind). Tool annotations are hints from a
server we may not trust: only ``readOnlyHint: true`` lets a tool run without a decision.
Every state-changing call carries the step's idempotency key in ``_meta`` as
``studiox/idempotency_key``. Every call has a time limit: the step's own ``timeout:`` when it
has one, else the integration's ``call_timeout`` (default 60s). Whatever goes wrong below —
the SDK, httpx2, a server that hangs, dies or breaks the protocol — leaves this module as a
:class:`StepError` with a plain message (or as the caller's own cancellation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StepError, suggest
from .ports import STEP_TIME_LIMIT

IDEMPOTENCY_META_KEY = "studiox/idempotency_key"
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_CALL_TIMEOUT = 60.0  # seconds; a tool that may take longer needs call_timeout or a step timeout
LAUNCHER_REPORT = "[studiox] "  # how _launch.py starts the lines it writes to the server's log
TAIL_LINES, TAIL_BYTES = 5, 8192  # how much of a server's last words an error message quotes



@dataclass
class _Session:
    client: Any  # mcp.client.Client, imported lazily
    stack: AsyncExitStack
    tools: dict = field(default_factory=dict)  # name → mcp Tool


@dataclass
class _ErrLog:
    """Where a stdio server's stderr goes, and where this start of it began writing."""

    file: Any  # an open file: the integration's log, or a temporary file when there is no log folder
    start: int


class MCPTools:
    """The tools door backed by MCP servers declared in a mission's ``integrations``."""

    def __init__(self, integrations: dict, base_dir: Path, log_dir: Path | None = None, environ=None):
        self.specs = integrations
        self.base_dir = base_dir
        self.log_dir = log_dir
        self.environ = os.environ if environ is None else environ
        self.sessions: dict[str, _Session] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._logs: list = []
        self._errlogs: dict[str, _ErrLog] = {}
        self._http_answers: dict[str, str] = {}  # integration → the last HTTP error status its server answered
        self._pidfiles: dict[str, Path] = {}  # integration → where its launcher wrote its process id
        _quiet_sdk_logging(log_dir)

    # ------------------------------------------------------------------ the door

    async def describe(self, integration: str, tool: str) -> dict:
        """What the server says of a tool: read_only, idempotent, input_schema."""
        found = await self._tool(integration, tool)
        notes = found.annotations
        return {
            "read_only": bool(notes and notes.read_only_hint is True),
            "idempotent": bool(notes and notes.idempotent_hint is True),
            "destructive": None if notes is None else notes.destructive_hint,
            "annotated": notes is not None,
            "input_schema": found.input_schema,
            "description": found.description,
        }

    async def call(self, integration: str, tool: str, arguments: dict, *, key: str):
        """Call a tool within its time limit; its arguments are checked against its input schema first."""
        found = await self._tool(integration, tool)
        _check_arguments(integration, tool, found.input_schema, arguments)
        session = self.sessions[integration]
        changes_state = not (found.annotations and found.annotations.read_only_hint is True)
        limit, which = self._call_limit(integration)
        try:
            async with asyncio.timeout(limit) as clock:
                result = await session.client.call_tool(tool, arguments, meta={IDEMPOTENCY_META_KEY: key})
        except BaseException as e:
            if clock.expired() and not _cancelled_from_outside():
                await self._drop(integration, kill=True)  # the server may still be busy with it: start afresh
                raise StepError("timeout", f"{integration}.{tool} did not answer within its time limit of "
                                f"{limit:g}s ({which}); the call was abandoned"
                                + ("; it may or may not have taken effect" if changes_state else ""),
                                outcome_unknown=changes_state) from None
            if isinstance(e, asyncio.CancelledError):
                await self._drop(integration, kill=True)  # cut off by the step's time limit: the session is unusable
                raise
            if not isinstance(e, Exception):
                raise
            raise await self._call_failed(integration, tool, e, changes_state) from None
        return _result(integration, tool, result)

    async def list_tools(self, integration: str) -> dict:
        """Every tool of an integration, by name."""
        session = await self._session(integration)
        return session.tools

    async def close(self) -> None:
        for name in {*self.sessions, *self._pidfiles}:  # a server that failed to start left its pid file
            await self._drop(name)
        for log in self._logs:
            log.close()
        self._logs.clear()
        self._errlogs.clear()

    # ------------------------------------------------------------------ time limits and failures

    def _call_limit(self, integration: str) -> tuple[float | None, str]:
        """The time limit of a call, and where it comes from; None when the step's own limit applies."""
        if STEP_TIME_LIMIT.get() is not None:
            return None, "the step's timeout"  # the engine enforces it, with its own message
        configured = _seconds(self.specs[integration].get("call_timeout"))
        if configured:
            return configured, f"the call_timeout of the integration '{integration}'"
        return DEFAULT_CALL_TIMEOUT, f"the default; set call_timeout on the integration '{integration}' to change it"

    async def _call_failed(self, integration: str, tool: str, error: Exception, changes_state: bool) -> StepError:
        """The step error for a call that raised: the server refused it, answered nonsense, or went away."""
        import mcp_types as codes
        from mcp.shared.exceptions import MCPError

        cause, name = _root(error), f"{integration}.{tool}"
        if isinstance(cause, MCPError) and cause.code != codes.CONNECTION_CLOSED:
            # the server answered with a JSON-RPC error: the session is fine. A request it could
            # not parse or accept never ran; any other error may have come from halfway through.
            refused = cause.code in (codes.PARSE_ERROR, codes.INVALID_REQUEST, codes.METHOD_NOT_FOUND,
                                     codes.INVALID_PARAMS)
            what = "refused the call" if refused else "answered with an error"
            return StepError("tool_error", f"{name}: the server {what}: {_one_line(cause.message)}",
                             outcome_unknown=changes_state and not refused)
        if isinstance(cause, RuntimeError) and _OUTPUT_MISMATCH in str(cause):
            # the SDK checks a result against the tool's output schema; the call itself was made
            detail = _one_line(str(cause).split(": ", 1)[-1])
            return StepError("tool_error", f"{name} returned a result that does not fit its own output schema: "
                             f"{detail}", outcome_unknown=changes_state)
        await self._drop(integration)
        return StepError("tool_error", f"{name}: the server failed during the call: "
                         f"{self._why(integration, cause)}{self._log_hint(integration)}",
                         outcome_unknown=changes_state)

    def _why(self, integration: str, error: BaseException, *, starting: bool = False) -> str:
        """Why a session failed, in words: how its server ended and its last words, when known."""
        reason, closed = _reason(error)
        reports, said = self._server_said(integration)
        if closed and reports:
            reason = reports[0]  # the launcher saw the server end: say how
        elif integration in self._http_answers and not isinstance(error, TimeoutError):
            reason = f"the server answered HTTP {self._http_answers[integration]}"
        if said and (starting or (closed and reports)):
            reason += "; its last messages: " + " | ".join(said)
        return reason

    def _server_said(self, integration: str) -> tuple[list[str], list[str]]:
        """What the launcher reported of the server's end, and the server's last stderr lines (this start only)."""
        errlog = self._errlogs.get(integration)
        if errlog is None:
            return [], []
        try:
            fd = errlog.file.fileno()
            end = os.fstat(fd).st_size
            begin = max(errlog.start, end - TAIL_BYTES)
            text = os.pread(fd, end - begin, begin).decode("utf-8", errors="replace")
        except (OSError, ValueError):  # the log is gone or closed: there is nothing to quote
            return [], []
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if begin > errlog.start:
            lines = lines[1:]  # the first line may have been cut in half
        reports = [line.removeprefix(LAUNCHER_REPORT) for line in lines if line.startswith(LAUNCHER_REPORT)]
        said = [_one_line(line, 200) for line in lines if not line.startswith(LAUNCHER_REPORT)]
        return reports, said[-TAIL_LINES:]

    # ------------------------------------------------------------------ sessions

    async def _tool(self, integration: str, tool: str):
        session = await self._session(integration)
        found = session.tools.get(tool)
        if found is None:
            raise StepError("tool_error", f"the integration '{integration}' has no tool '{tool}'"
                            f"{suggest(tool, session.tools)} (its tools: {', '.join(sorted(session.tools))})")
        return found

    async def _session(self, integration: str) -> _Session:
        if integration in self.sessions:
            return self.sessions[integration]
        lock = self._starting.setdefault(integration, asyncio.Lock())
        async with lock:
            if integration not in self.sessions:
                self.sessions[integration] = await self._start(integration)
        return self.sessions[integration]

    async def _start(self, integration: str) -> _Session:
        spec = self.specs.get(integration)
        if spec is None:
            raise StepError("tool_error", f"unknown integration '{integration}'{suggest(integration, self.specs)}")
        from mcp.client import Client  # lazy: importing mcp costs most of a second

        timeout = _seconds(spec.get("timeout")) or DEFAULT_START_TIMEOUT
        stack, clock = AsyncExitStack(), None
        try:
            client = Client(self._target(integration, spec), read_timeout_seconds=None)
            async with asyncio.timeout(timeout) as clock:
                await stack.enter_async_context(client)
                listing = await client.list_tools()
        except StepError:
            await _quietly_close(stack)
            raise
        except BaseException as e:
            await _quietly_close(stack)  # first: a server that is ending has then said its last
            expired = clock is not None and clock.expired() and not _cancelled_from_outside()
            if not expired and not isinstance(e, Exception):
                raise  # our caller's cancellation, or an interrupt: not a failure of the server
            what = spec.get("url") or " ".join([spec["command"], *spec.get("args", [])])
            why = self._why(integration, TimeoutError() if expired else e, starting=True)
            raise StepError("tool_error", f"could not start the integration '{integration}' ({what}): "
                            f"{why}{self._log_hint(integration)}") from None
        return _Session(client, stack, {t.name: t for t in listing.tools})

    def _target(self, integration: str, spec: dict):
        if "url" in spec:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            self._http_answers.pop(integration, None)

            async def remember(response) -> None:
                # the SDK turns an HTTP error status into "Server returned an error response": keep the status
                if response.status_code >= 400:
                    self._http_answers[integration] = f"{response.status_code} {response.reason_phrase}".strip()

            headers = {name: self._value(integration, name, v) for name, v in (spec.get("headers") or {}).items()}
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0),
                                      event_hooks={"response": [remember]})
            return streamable_http_client(spec["url"], http_client=http)
        from mcp import StdioServerParameters

        command = spec["command"]
        if command in ("python", "python3"):
            command = sys.executable  # the Python running studiox, with the same packages
        env = {name: self._value(integration, name, v) for name, v in (spec.get("env") or {}).items()}
        cwd = (self.base_dir / spec["cwd"]) if spec.get("cwd") else self.base_dir
        # started through a launcher that ties the server's life to this process (see _launch.py)
        pidfile = self._pidfile(integration)
        launcher = [str(Path(__file__).with_name("_launch.py")), str(os.getpid()), "--pidfile", str(pidfile)]
        hidden = [name for name, v in (spec.get("env") or {}).items() if isinstance(v, dict)]
        if hidden:  # the launcher masks these values in what the server writes to its log
            launcher += ["--redact", ",".join(hidden)]
        launcher.append(command)
        params = StdioServerParameters(command=sys.executable, args=[*launcher, *spec.get("args", [])],
                                       env=env or None, cwd=cwd)
        from mcp.client.stdio import stdio_client

        return stdio_client(params, errlog=self._errlog(integration))  # the server's messages go to a log file

    def _value(self, integration: str, name: str, value) -> str:
        if isinstance(value, str):
            return value
        variable = value["from_env"]
        if variable not in self.environ:
            raise StepError("tool_error", f"the integration '{integration}' needs the environment variable "
                            f"{variable} (for {name}); set it before running")
        from .. import secrets

        secrets.remember(self.environ[variable])
        return value.get("prefix", "") + self.environ[variable]

    def _errlog(self, integration: str):
        """The file a stdio server's stderr goes to; what it writes there is quoted when it fails."""
        if self.log_dir is None:
            import tempfile

            log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{integration}.log", "a+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        self._errlogs[integration] = _ErrLog(log, os.fstat(log.fileno()).st_size)
        return log

    def _log_hint(self, integration: str) -> str:
        if self.log_dir is None:
            return ""
        client_log = self.log_dir / "mcp-client.log"
        if "url" in self.specs.get(integration, {}):
            return f"; the client's messages are in {client_log}"  # a remote server: no log of its own here
        return (f"; the server's own messages are in {self.log_dir / (integration + '.log')}, the client's in "
                f"{client_log}")

    def _pidfile(self, integration: str) -> Path:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="studiox-launch-"))
        self._pidfiles[integration] = folder / "pid"
        return folder / "pid"

    async def _drop(self, integration: str, *, kill: bool = False) -> None:
        """Close an integration's session. ``kill``: a call was cut off and the server may be busy with
        it, so its launcher (and with it the server) is killed first: closing then takes no grace period,
        and a step's time limit is not stretched by a slow server."""
        session = self.sessions.pop(integration, None)
        pidfile = self._pidfiles.pop(integration, None)
        if kill and pidfile is not None:
            _kill_launcher(pidfile)
        if session is not None:
            await _quietly_close(session.stack)
        if pidfile is not None:
            import shutil

            shutil.rmtree(pidfile.parent, ignore_errors=True)


_OUTPUT_MISMATCH = "Invalid structured content returned by tool"  # the SDK's words (mcp/client/session.py)


def _cancelled_from_outside() -> bool:
    """Whether the running task has been asked to stop by someone other than our own time limit."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _root(error: BaseException) -> BaseException:
    """The exception that matters inside anyio's task-group wrappers: the first that is not a cancellation."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (inner or list(error.exceptions))[0]
    return error


def _reason(error: BaseException) -> tuple[str, bool]:
    """A failure of the SDK or of httpx2 in plain words, and whether it means the connection is gone."""
    import httpx2
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
    from pydantic import ValidationError

    error = _root(error)
    if isinstance(error, MCPError):
        if error.code == CONNECTION_CLOSED:
            return "the server closed the connection", True
        if error.code == REQUEST_TIMEOUT:
            return "it did not answer in time", False
        return f"the server answered with an error: {_one_line(error.message)}", False
    if isinstance(error, TimeoutError | httpx2.TimeoutException):
        return "it did not answer in time", False
    if isinstance(error, httpx2.ConnectError):
        return f"could not connect: {_one_line(str(error)) or 'refused'}", True
    if isinstance(error, httpx2.HTTPError):
        return f"the HTTP connection failed: {_one_line(str(error)) or type(error).__name__}", True
    if isinstance(error, ValidationError):
        return "the server sent a message that does not follow the MCP protocol", False
    if isinstance(error, OSError):
        return _one_line(error.strerror or str(error)), True
    return f"{type(error).__name__}: {_one_line(str(error))}", False


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quiet_sdk_logging(log_dir: Path | None) -> None:
    """The MCP SDK logs protocol trouble with tracebacks; that belongs in a log file, not on the terminal."""
    import logging

    logger = logging.getLogger("mcp")
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if log_dir is None:
        logger.addHandler(logging.NullHandler())
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / "mcp-client.log", delay=True, encoding="utf-8")
    handler.addFilter(_Redacting())
    logger.addHandler(handler)


class _Redacting(logging.Filter):
    """The SDK's messages with every secret studiox knows masked (see studiox/secrets.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .. import secrets

        if secrets.active():
            record.msg, record.args = secrets.redact(record.getMessage()), None
        return True


def _kill_launcher(pidfile: Path) -> None:
    """SIGKILL the launcher whose id is in ``pidfile``; the server, its child, dies with it (PDEATHSIG)."""
    import signal

    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):  # gone already, or it never wrote its id
        pass


async def _quietly_close(stack: AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except BaseException:  # noqa: BLE001 - a server that died while we closed it is closed
        pass


_validators: dict[str, object] = {}  # a tool's input schema (as JSON text) → its checked validator


def _validator(schema: dict):
    """The validator of a tool's input schema, the schema checked once per process (not per call:
    checking it against the meta-schema took a third of a foreach item's time)."""
    import jsonschema

    key = json.dumps(schema, sort_keys=True)
    found = _validators.get(key)
    if found is None:
        jsonschema.Draft202012Validator.check_schema(schema)
        found = _validators[key] = jsonschema.Draft202012Validator(schema)
    return found


def _check_arguments(integration: str, tool: str, schema: dict | None, arguments: dict) -> None:
    if not schema:
        return
    import jsonschema

    try:
        validator: jsonschema.Draft202012Validator = _validator(schema)  # type: ignore[assignment]
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except Exception as e:  # noqa: BLE001 - the schema comes from the server: whatever breaks in it is its fault
        detail = e.message if isinstance(e, jsonschema.SchemaError) else f"{type(e).__name__}: {e}"
        raise StepError("tool_error", f"{integration}.{tool}: the server's input schema for this tool is not valid "
                        f"JSON Schema, so its arguments cannot be checked ({_one_line(detail)})") from None
    if errors:
        problems = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors)
        raise StepError("invalid_arguments", f"the arguments for {integration}.{tool} do not fit the tool: {problems}")


def _result(integration: str, tool: str, result):
    """structuredContent when present, else the text content (parsed when it is JSON)."""
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    if result.is_error:
        raise StepError("tool_error", f"{integration}.{tool} reported an error: {' '.join(texts) or 'no details'}")
    if result.structured_content is not None:
        return result.structured_content
    text = "\n".join(texts)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _seconds(value) -> float | None:
    from ..units import seconds

    return seconds(value)


def annotations_summary(info: dict) -> str:
    """A tool's annotations in words."""
    if not info.get("annotated"):
        return "no annotations"
    words = ["read-only" if info["read_only"] else "changes state"]
    if info.get("idempotent"):
        words.append("idempotent")
    if info.get("destructive"):
        words.append("destructive")
    return ", ".join(words)
