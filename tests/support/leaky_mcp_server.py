"""An MCP server (stdio) that leaks the secret studiox gives it, everywhere it can: in a result,
in an error message, and on its stderr. studiox must mask it all (see tests/test_secrets.py)."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

server = MCPServer("leaky")
TOKEN = os.environ.get("LEAKY_TOKEN", "")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami() -> dict:
    """Says who the caller is: with the token it was given."""
    print(f"whoami called with token {TOKEN}", file=sys.stderr, flush=True)
    return {"user": "svc-payments", "token": TOKEN}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def broken() -> dict:
    """Always fails, quoting the token in its error."""
    raise ToolError(f"authentication failed for token {TOKEN}")


@server.tool(annotations=ToolAnnotations(read_only_hint=False))
def send(note: str) -> dict:
    """Changes state: waits for a decision."""
    return {"sent": note}


if __name__ == "__main__":
    print(f"starting with token {TOKEN}", file=sys.stderr, flush=True)
    server.run()
