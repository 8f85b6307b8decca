"""When an MCP server dies or misbehaves: a plain step error that says what happened, never a traceback.

Real server subprocesses: the test server (tests/support/mcp_test_server.py), one whose tools
break the protocol's promises (tests/support/odd_mcp_server.py), servers that die at start, and
HTTP endpoints that refuse or fail.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TESTS, write_mission
from support.mcp_runs import assert_clean, assert_no_orphans, call_once, mission, server_spec

from studiox.adapters.mcp import MCPTools
from studiox.steps import StepError

pytestmark = pytest.mark.backends(
    "local", reason="the MCP transport's errors are under test; the store is incidental")

ODD = TESTS / "support" / "odd_mcp_server.py"


def test_a_server_that_exits_at_start_names_its_exit_status_and_last_messages(studiox, tmp_path):
    path = write_mission(tmp_path / "m.yaml", (
        "mission: x\nintegrations:\n  db:\n    command: python\n"
        "    args: [-c, \"import sys; print('starting'); print('boom: no database', file=sys.stderr); "
        "sys.exit(3)\"]\n"
        "steps:\n  - {id: a, tool: db.query, trust: read_only, trust_reason: test}\n"))
    result = studiox("run", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not start the integration 'db'" in result.stdout
    assert "the server exited with status 3" in result.stdout
    assert "boom: no database" in result.stdout
    assert_clean(result)


def test_a_server_that_dies_mid_call_names_its_exit_status_and_last_messages(studiox, tmp_path):
    path, marker = mission(tmp_path, "  - {id: a, tool: srv.die, arguments: {status: 7, message: "
                                      "'fatal: disk full'}}\n")
    result = studiox("run", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "srv.die: the server failed during the call: the server exited with status 7" in result.stdout
    assert "fatal: disk full" in result.stdout
    assert_clean(result)
    assert_no_orphans(marker)


def test_a_server_killed_by_a_signal_mid_call_says_which(tmp_path):
    marker = uuid.uuid4().hex
    error = call_once(tmp_path, server_spec(tmp_path, marker), "die", {"signal_name": "SIGKILL"})
    assert isinstance(error, StepError) and error.kind == "tool_error"
    assert "the server was killed by signal SIGKILL" in error.message
    assert_no_orphans(marker)


def test_a_program_that_does_not_exist_is_named(tmp_path):
    error = call_once(tmp_path, {"command": "/no/such/program"}, "anything")
    assert isinstance(error, StepError)
    assert "could not start the integration 'srv' (/no/such/program): the program was not found" in error.message


# ---------------------------------------------------------------- nothing foreign escapes


def test_a_tool_whose_input_schema_is_broken_is_a_step_error(tmp_path):
    error = call_once(tmp_path, {"command": "python", "args": [str(ODD)]}, "bad_input_schema", {"x": 1})
    assert isinstance(error, StepError) and error.kind == "tool_error"
    assert "srv.bad_input_schema: the server's input schema for this tool is not valid JSON Schema" in error.message


def test_a_result_that_breaks_the_tools_output_schema_is_a_step_error(tmp_path):
    error = call_once(tmp_path, {"command": "python", "args": [str(ODD)]}, "bad_output")
    assert isinstance(error, StepError) and error.kind == "tool_error"
    assert "srv.bad_output returned a result that does not fit its own output schema" in error.message
    assert "'not a number' is not of type 'integer'" in error.message and "\n" not in error.message


def test_a_json_rpc_error_from_the_server_is_a_step_error_that_quotes_it(tmp_path):
    error = call_once(tmp_path, {"command": "python", "args": [str(ODD)]}, "refuse")
    assert isinstance(error, StepError) and error.kind == "tool_error"
    assert error.message.startswith("srv.refuse: the server refused the call: no such ledger")
    assert not error.outcome_unknown  # a refusal is an answer: the tool did not run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_http_integration_nobody_listens_on_is_a_plain_error(studiox, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/mcp"
    path = write_mission(tmp_path / "m.yaml", f"mission: x\nintegrations:\n  web: {{url: '{url}'}}\n"
                            "steps:\n  - {id: a, tool: web.query, trust: read_only, trust_reason: test}\n")
    result = studiox("run", path)
    assert result.returncode == 1
    assert f"could not start the integration 'web' ({url}): could not connect: All connection attempts failed" \
        in result.stdout
    assert "web.log" not in result.stdout  # there is no server process, so no log of its messages
    assert_clean(result)


@pytest.fixture
def refusing_http():
    """An HTTP endpoint that answers every POST with 401 Unauthorized; its URL."""

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the name http.server calls
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
    httpd.shutdown()
    httpd.server_close()


def test_an_http_error_status_is_named(tmp_path, refusing_http):
    tools = MCPTools({"web": {"url": refusing_http}}, tmp_path, tmp_path / "logs")

    async def go():
        try:
            await tools.list_tools("web")
        finally:
            await tools.close()

    with pytest.raises(StepError) as caught:
        asyncio.run(go())
    assert f"could not start the integration 'web' ({refusing_http}): the server answered HTTP 401 Unauthorized" \
        in caught.value.message
