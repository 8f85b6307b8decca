"""The tools door of a test case: stub results, real integrations where the case says so, and
every call written down (fsync'd, so a call made just before a SIGKILL is on record).

A stubbed tool is described as its real server describes it (read-only or not, idempotent or
not, its input schema): what needs a decision, and what a cut-off call means, is decided exactly
as in production. Its arguments are checked against that schema, as the real door checks them.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from ..adapters.ports import Ports
from ..errors import StepError, suggest
from ..mission import Mission
from .cases import Case

CALLS_FILE = "calls.jsonl"


async def describe_all(integrations: dict[str, tuple[Mission, dict]]) -> dict[str, dict[str, dict]]:
    """What the real servers say of their tools: ``{integration: {tool: describe()}}``; each server
    started as the mission declaring it starts it (from that mission's folder)."""
    from ..adapters.mcp import MCPTools

    found: dict[str, dict[str, dict]] = {}
    for name, (mission, spec) in integrations.items():
        door = MCPTools({name: spec}, mission.base_dir)
        try:
            listing = await door.list_tools(name)
            found[name] = {tool: await door.describe(name, tool) for tool in listing}
        finally:
            await door.close()
    return found


class CaseTools:
    """Stub results for a case's tools, the real door for its ``real`` integrations."""

    def __init__(self, case: Case, descriptions: dict[str, dict[str, dict]], calls: Path, real=None):
        self.case = case
        self.descriptions = descriptions
        self.calls = calls
        self.real = real  # the real tools door, for the case's real integrations

    def _info(self, integration: str, tool: str) -> dict:
        tools = self.descriptions.get(integration)
        if tools is None:
            raise StepError("tool_error", f"the integration '{integration}' was not described to the test")
        if tool not in tools:
            raise StepError("tool_error", f"{integration} has no tool '{tool}'{suggest(tool, tools)}")
        return tools[tool]

    async def describe(self, integration: str, tool: str) -> dict | None:
        if integration in self.case.real:
            return await self.real.describe(integration, tool)
        return self._info(integration, tool)

    async def call(self, integration: str, tool: str, arguments: dict, *, key: str):
        target = f"{integration}.{tool}"
        if integration in self.case.real:
            info = await self.real.describe(integration, tool)
            result = await self.real.call(integration, tool, arguments, key=key)
        else:
            from ..adapters.mcp import _check_arguments

            info = self._info(integration, tool)
            _check_arguments(integration, tool, info.get("input_schema"), arguments)
            if target not in self.case.tools:
                raise StepError("tool_error", f"the test case '{self.case.name}' gives no result for {target}: add "
                                f"it under tools:, or list '{integration}' under real:")
            if info.get("idempotent"):  # as the tool promises: the same key again is the first call's answer
                earlier = [c for c in read_calls(self.calls.parent) if c["key"] == key and c["tool"] == target]
                if earlier:
                    return copy.deepcopy(earlier[0]["result"])
            result = copy.deepcopy(self.case.tools[target])
        self._write({"tool": target, "arguments": arguments, "key": key, "result": result,
                     "read_only": bool((info or {}).get("read_only"))})
        return result

    def _write(self, call: dict) -> None:
        with open(self.calls, "a", encoding="utf-8") as f:
            f.write(json.dumps(call, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def close(self) -> None:
        if self.real is not None:
            await self.real.close()


def read_calls(home: Path) -> list[dict]:
    """The tool calls a case made, in order (a line cut short by a kill is not a call)."""
    path = home / CALLS_FILE
    if not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            calls.append(json.loads(line))
        except ValueError:
            continue
    return calls


def ports_for(case: Case, descriptions: dict, home: Path, where: str = "the test file"):
    """The Engine's ports factory for a case: its tools, its scripted models, real knowledge.
    ``where``: the test file and line of the case's models, named when an answer is missing."""

    def ports(mission: Mission, run_id: str, options: dict) -> Ports:
        from ..adapters.knowledge import Knowledge
        from ..adapters.models import LiteLLMModels, Replay

        real = None
        if case.real:
            from ..adapters.mcp import MCPTools

            real = MCPTools({name: mission.integrations[name] for name in case.real}, mission.base_dir,
                            home / "logs" / run_id)
        return Ports(tools=CaseTools(case, descriptions, home / CALLS_FILE, real),
                     models=LiteLLMModels(Replay(case.models, f"{where} (case '{case.name}')")),
                     knowledge=Knowledge(mission.knowledge, mission.base_dir, home / "knowledge"))

    return ports
