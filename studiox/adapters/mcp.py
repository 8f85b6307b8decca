"""Integrations: MCP sessions to a mission's servers, through the official ``mcp`` SDK.

A server is started on first use; one session per integration is reused by every step of the
run; all are closed when the run ends, parks or fails (a stdio server also exits when its
input closes, so a killed studiox leaves no server behind). Tool annotations are hints from a
server we may not trust: only ``readOnlyHint: true`` lets a tool run without a decision.
Every state-changing call carries the step's idempotency key in ``_meta`` as
``studiox/idempotency_key``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StepError, suggest

IDEMPOTENCY_META_KEY = "studiox/idempotency_key"
DEFAULT_START_TIMEOUT = 30.0


@dataclass
class _Session:
    client: Any  # mcp.client.Client, imported lazily
    stack: AsyncExitStack
    tools: dict = field(default_factory=dict)  # name → mcp Tool


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
        """Call a tool; its arguments are checked against its input schema first."""
        found = await self._tool(integration, tool)
        _check_arguments(integration, tool, found.input_schema, arguments)
        session = self.sessions[integration]
        try:
            result = await session.client.call_tool(tool, arguments, meta={IDEMPOTENCY_META_KEY: key})
        except asyncio.CancelledError:
            await self._drop(integration)  # a call cut off by a time limit leaves the session unusable
            raise
        except Exception as e:  # noqa: BLE001 - the server crashed or spoke nonsense: a step error
            await self._drop(integration)
            raise StepError("tool_error", f"{integration}.{tool}: the server failed during the call "
                            f"({type(e).__name__}: {e}){self._log_hint(integration)}", outcome_unknown=True) from None
        return _result(integration, tool, result)

    async def list_tools(self, integration: str) -> dict:
        """Every tool of an integration, by name."""
        session = await self._session(integration)
        return session.tools

    async def close(self) -> None:
        for name in list(self.sessions):
            await self._drop(name)
        for log in self._logs:
            log.close()
        self._logs.clear()

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
        stack = AsyncExitStack()
        try:
            client = Client(self._target(integration, spec), read_timeout_seconds=None)
            async with asyncio.timeout(timeout):
                await stack.enter_async_context(client)
                listing = await client.list_tools()
        except StepError:
            await _quietly_close(stack)
            raise
        except BaseException as e:
            await _quietly_close(stack)
            if isinstance(e, asyncio.CancelledError):
                raise
            what = spec.get("url") or " ".join([spec["command"], *spec.get("args", [])])
            reason = "it did not answer in time" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            raise StepError("tool_error", f"could not start the integration '{integration}' ({what}): {reason}"
                            f"{self._log_hint(integration)}") from None
        return _Session(client, stack, {t.name: t for t in listing.tools})

    def _target(self, integration: str, spec: dict):
        if "url" in spec:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = {name: self._value(integration, name, v) for name, v in (spec.get("headers") or {}).items()}
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
            return streamable_http_client(spec["url"], http_client=http)
        from mcp import StdioServerParameters

        command = spec["command"]
        if command in ("python", "python3"):
            command = sys.executable  # the Python running studiox, with the same packages
        env = {name: self._value(integration, name, v) for name, v in (spec.get("env") or {}).items()}
        cwd = (self.base_dir / spec["cwd"]) if spec.get("cwd") else self.base_dir
        # started through a launcher that ties the server's life to this process (see _launch.py)
        launcher = [str(Path(__file__).with_name("_launch.py")), str(os.getpid()), command]
        params = StdioServerParameters(command=sys.executable, args=[*launcher, *spec.get("args", [])],
                                       env=env or None, cwd=cwd)
        from mcp.client.stdio import stdio_client

        return stdio_client(params, errlog=self._log(integration))  # the server's messages go to a log file

    def _value(self, integration: str, name: str, value) -> str:
        if isinstance(value, str):
            return value
        variable = value["from_env"]
        if variable not in self.environ:
            raise StepError("tool_error", f"the integration '{integration}' needs the environment variable "
                            f"{variable} (for {name}); set it before running")
        return value.get("prefix", "") + self.environ[variable]

    def _log(self, integration: str):
        if self.log_dir is None:
            return open(os.devnull, "w")  # noqa: SIM115 - closed in close()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{integration}.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        return log

    def _log_hint(self, integration: str) -> str:
        if self.log_dir is None:
            return ""
        return (f"; the server's own messages are in {self.log_dir / (integration + '.log')}, the client's in "
                f"{self.log_dir / 'mcp-client.log'}")

    async def _drop(self, integration: str) -> None:
        session = self.sessions.pop(integration, None)
        if session is not None:
            await _quietly_close(session.stack)


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
    logger.addHandler(logging.FileHandler(log_dir / "mcp-client.log", delay=True, encoding="utf-8"))


async def _quietly_close(stack: AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except BaseException:  # noqa: BLE001 - a server that died while we closed it is closed
        pass


def _check_arguments(integration: str, tool: str, schema: dict | None, arguments: dict) -> None:
    if not schema:
        return
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(e.path))
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
