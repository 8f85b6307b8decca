"""A tiny MCP server for benchmarks/fanout.py, run over stdio as a real subprocess.

    python benchmarks/slow_mcp_server.py [--delay SECONDS]

One read-only tool, ``wait``: it sleeps ``--delay`` seconds (default 0.05) without blocking the
server's event loop, so that concurrent calls overlap, and returns its argument.
"""

from __future__ import annotations

import argparse
import asyncio

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("bench-slow")
DELAY = 0.05


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def wait(value: int) -> dict:
    """Wait a while (50 ms unless started with --delay), then return the value."""
    await asyncio.sleep(DELAY)
    return {"value": value}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=DELAY)
    DELAY = parser.parse_args().delay
    server.run()
