"""An MCP server (over stdio) whose tools misbehave in ways the SDK's high-level server never would.

    python odd_mcp_server.py

Tools: ``bad_input_schema`` (its input schema is not valid JSON Schema), ``bad_output``
(returns structured content that breaks its own output schema), ``refuse`` (answers with a
JSON-RPC error instead of a result).
"""

from __future__ import annotations

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

TOOLS = [
    types.Tool(name="bad_input_schema", description="Its input schema is broken.",
               input_schema={"type": "object", "properties": {"x": {"type": 12}}}),
    types.Tool(name="bad_output", description="Breaks its own output schema.",
               input_schema={"type": "object"},
               output_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
               annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(name="refuse", description="Answers with a JSON-RPC error.", input_schema={"type": "object"},
               annotations=types.ToolAnnotations(read_only_hint=True)),
]


async def list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "refuse":
        raise MCPError(code=types.INVALID_PARAMS, message="no such ledger")
    if params.name == "bad_output":
        return types.CallToolResult(content=[types.TextContent(type="text", text="{}")],
                                    structured_content={"n": "not a number"})
    return types.CallToolResult(content=[types.TextContent(type="text", text="ran")])


server = Server("odd-server", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
