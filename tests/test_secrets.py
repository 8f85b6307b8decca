"""A secret from the environment appears in no file under the state folder and in no output of
any command, even when the server it is given to echoes it back."""

from __future__ import annotations

import json

from conftest import TESTS, write_mission

SECRET = "tok-5f3a9c1e-never-shown"
SERVER = TESTS / "support" / "leaky_mcp_server.py"


def test_a_secret_from_the_environment_is_masked_in_every_file_and_every_output(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", (
        "mission: leaky\nintegrations:\n  leaky:\n    command: python\n"
        f"    args: [{json.dumps(str(SERVER))}]\n    env: {{LEAKY_TOKEN: {{from_env: LEAKY_SECRET}}}}\n"
        "steps:\n  - {id: who, tool: leaky.whoami}\n"
        "  - {id: boom, tool: leaky.broken, on_error: continue}\n"
        "  - {id: tell, tool: leaky.send, arguments: {note: 'token is ${{ steps.who.output.token }}'}}\n"))
    outputs = []

    def sx(*args, **env):
        result = studiox(*args, LEAKY_SECRET=SECRET, **env)
        outputs.append(result.stdout + result.stderr)
        return result

    parked = sx("run", mission, "--no-input")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    assert "authentication failed for token ***" in parked.stdout  # the echo is shown, masked
    run_id = parked.stdout.split()[1]
    (decision,) = json.loads(sx("decisions", "--json").stdout)
    assert "***" in json.dumps(decision["action"]["arguments"])
    for args in (["decision", "show", decision["id"]], ["status", run_id], ["log", run_id],
                 ["log", run_id, "--json"], ["show", run_id], ["show", run_id, "--json"], ["runs", "--json"],
                 ["audit", "verify", run_id], *[["audit", "export", "--format", f] for f in ("jsonl", "csv", "md", "html")]):
        assert sx(*args).returncode in (0, 1), args
    finished = sx("approve", decision["id"], "--resume")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert sx("audit", "verify", run_id).returncode == 0  # masked before chaining: the chain holds
    leaks = [str(p) for p in studiox.home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert SECRET not in repr(studiox.stored())  # the store's tables, on either backend
    assert [o for o in outputs if SECRET in o] == []
    server_log = next(studiox.home.glob("logs/*/leaky.log")).read_text()
    assert "starting with token ***" in server_log and "whoami called with token ***" in server_log
