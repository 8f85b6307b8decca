"""A small MCP server for tests, run over stdio as a real subprocess.

    python mcp_test_server.py --log FILE [--marker TEXT]

Each call of ``record``/``record_idempotent`` appends a line to FILE (the side effect);
``record_idempotent`` honours the studiox idempotency key: a key it has seen is not recorded
again. Set RECORD_DELAY=seconds to make both wait after recording (to kill studiox mid-call).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True)
server = MCPServer("test-server")
LOG = ""


def _record(entry: dict) -> None:
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _lines() -> list[dict]:
    return [json.loads(line) for line in open(LOG)] if os.path.exists(LOG) else []


@server.tool(annotations=READ_ONLY)
def echo(text: str) -> dict:
    """Return the text."""
    return {"echo": text}


@server.tool(annotations=READ_ONLY, structured_output=False)
def plain_text() -> str:
    """Plain text content, not JSON."""
    return "just words"


@server.tool(annotations=READ_ONLY, structured_output=False)
def json_text() -> str:
    """JSON sent as text content."""
    return json.dumps({"parsed": True, "n": 3})


@server.tool(annotations=READ_ONLY)
def fail(reason: str = "it went wrong") -> dict:
    """Always reports an error (isError)."""
    raise ToolError(reason)


@server.tool(annotations=READ_ONLY)
def crash() -> dict:
    """The server process dies mid-call."""
    os._exit(3)


@server.tool(annotations=READ_ONLY)
def die(status: int = 7, message: str = "", signal_name: str = "") -> dict:
    """The server writes a message to its stderr, then exits with a status (or kills itself with a signal) mid-call."""
    if message:
        print(message, file=sys.stderr, flush=True)
    if signal_name:
        os.kill(os.getpid(), getattr(signal, signal_name))
        time.sleep(5)
    os._exit(status)


@server.tool(annotations=READ_ONLY)
def hang(seconds: float = 60) -> dict:
    """Takes a long time."""
    time.sleep(seconds)
    return {"slept": seconds}


@server.tool()
def unannotated(x: int) -> dict:
    """A tool without annotations: studiox must treat it as state-changing."""
    _record({"tool": "unannotated", "x": x})
    return {"x": x}


@server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=False))
def record(label: str, ctx: Context) -> dict:
    """A state-changing, non-idempotent side effect."""
    _record({"tool": "record", "label": label, "key": (ctx.request_context.meta or {}).get("studiox/idempotency_key")})
    time.sleep(float(os.environ.get("RECORD_DELAY", "0")))
    return {"recorded": label}


@server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True))
def record_idempotent(label: str, ctx: Context) -> dict:
    """A state-changing side effect that a repeated idempotency key does not repeat."""
    key = (ctx.request_context.meta or {}).get("studiox/idempotency_key")
    if key is None or all(line.get("key") != key for line in _lines()):
        _record({"tool": "record_idempotent", "label": label, "key": key})
    time.sleep(float(os.environ.get("RECORD_DELAY", "0")))
    return {"recorded": label, "key": key}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--marker", default="")
    LOG = parser.parse_args().log
    server.run()
