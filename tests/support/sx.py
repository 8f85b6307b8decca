"""The studiox CLI with a test tools door: each tool call appends a line to $SX_EFFECTS.

Most tests call the CLI in the test process with ``ports`` as the door (tests/conftest.py);
crash, lock, signal and terminal tests run this module as a real subprocess
(``python -m support.sx``), so that SIGKILL, SIGINT and competing processes are exercised for
real. Importing it sets nothing: only running it as a program opens the door. Tools: ``append`` (records the call), ``sleep``
(waits ``seconds`` then records; not at all with $SX_SLEEP_FAST), ``flaky`` (fails until its ``$SX_FLAKY`` counter file says
it has failed ``times`` times), ``pay`` (records the call; state-changing, so it is gated).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from studiox import api
from studiox.adapters.ports import Ports
from studiox.errors import StepError


class EffectTools:
    async def describe(self, integration: str, tool: str) -> dict:
        # 'pay' changes state (it needs a decision); the others say they are read-only
        return {"read_only": tool != "pay", "input_schema": {"type": "object", "properties": {
            "amount": {"type": "number", "minimum": 0}}}}

    async def call(self, integration: str, tool: str, arguments: dict, *, key: str):
        if tool == "sleep" and not os.environ.get("SX_SLEEP_FAST"):
            await asyncio.sleep(float(arguments.get("seconds", 1)))
        if tool == "flaky":
            counter = os.environ["SX_FLAKY"]
            failed = int(open(counter).read()) if os.path.exists(counter) else 0
            if failed < int(arguments.get("times", 1)):
                with open(counter, "w") as f:
                    f.write(str(failed + 1))
                raise StepError("tool_error", f"flaky failure {failed + 1}")
        with open(os.environ["SX_EFFECTS"], "a") as f:
            f.write(json.dumps({"key": key, "tool": tool, "arguments": arguments}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return {"ok": True, "key": key}

    async def close(self) -> None:
        return None


def ports(mission, run_id, options) -> Ports:
    from studiox.adapters.models import LiteLLMModels, Replay

    replay = Replay.load(options["replay"]) if options.get("replay") else None
    return Ports(tools=EffectTools(), models=LiteLLMModels(replay))


if __name__ == "__main__":
    from studiox.cli import main

    api.PORTS_FACTORY = ports
    sys.exit(main())
