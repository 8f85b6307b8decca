"""Helpers for tests that run real MCP servers: missions that use the test server, processes, one-off calls."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

from conftest import TESTS, write_mission

from studiox.adapters.mcp import MCPTools
from studiox.steps import StepError

SERVER = TESTS / "support" / "mcp_test_server.py"


def server_spec(tmp_path, marker: str, **extra) -> dict:
    return {"command": "python", "args": [str(SERVER), "--log", str(tmp_path / "effects.jsonl"), "--marker", marker],
            **extra}


def mission(tmp_path, steps: str, *, srv: str = "", marker: str = "") -> tuple:
    """A mission whose integration 'srv' is the test server; ``srv`` adds YAML keys to the integration."""
    marker = marker or uuid.uuid4().hex
    text = ("mission: failing-servers\nintegrations:\n  srv:\n    command: python\n"
            f"    args: [{json.dumps(str(SERVER))}, --log, {json.dumps(str(tmp_path / 'effects.jsonl'))}, "
            f"--marker, {marker}]\n    env: {{RECORD_DELAY: {{from_env: RECORD_DELAY}}}}\n{srv}steps:\n{steps}")
    return write_mission(tmp_path / "m.yaml", text), marker


def effects(tmp_path) -> list[dict]:
    log = tmp_path / "effects.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def server_processes(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if marker in cmdline and "State:\tZ" not in status:
            found.append(int(pid))
    return found


def assert_no_orphans(marker: str) -> None:
    deadline = time.time() + 10
    while server_processes(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert server_processes(marker) == []


def assert_clean(result) -> None:
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text and "ExceptionGroup" not in text and "TaskGroup" not in text


def call_once(tmp_path, spec: dict, tool: str, arguments: dict | None = None):
    """Call one tool of the integration 'srv' in this process: its result, or the StepError it raised."""
    tools = MCPTools({"srv": spec}, tmp_path, tmp_path / "logs")

    async def go():
        try:
            return await tools.call("srv", tool, arguments or {}, key="run/a")
        except StepError as e:
            return e
        finally:
            await tools.close()

    return asyncio.run(go())
