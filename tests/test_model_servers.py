"""Any model server, declared once: --model with --api-base keeps the mission's settings, a keyless
local server needs no key, a refused structured-output mode falls back at once (and the rail says
which answered), and a chat template without a system role still gets studiox's instructions."""

from __future__ import annotations

import json

import pytest
from conftest import write_mission
from support.openai_server import OpenAIServer

pytestmark = pytest.mark.backends("local", reason="model servers are under test; the store is incidental")

MISSION = """mission: local
models:
  main: {model: openai/gpt-4o-mini, temperature: 0.1, max_tokens: 200, timeout: 30}
steps:
  - id: extract
    worker:
      instructions: Extract the invoice number.
      input: Invoice INV-2291 from ACME.
      output: {type: object, required: [invoice], properties: {invoice: {type: string, maxLength: 40}}}
verdict: {choices: [Done], value: Done, note: "${{ steps.extract.output.invoice }}"}
"""


def test_a_local_server_with_model_and_api_base_keeps_the_settings_and_falls_back_from_json_schema(
        sx, tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    mission = write_mission(tmp_path / "m.yaml", MISSION)
    with OpenAIServer({"reasoning": "it says so", "output": {"invoice": "INV-2291"}}) as server:
        result = sx("run", mission, "--model", "openai/gemma-3-270m", "--api-base", server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == "verdict: Done — INV-2291"
        first, second = server.requests
    assert first["response_format"]["type"] == "json_schema"  # refused with HTTP 500, like llama.cpp
    assert second["response_format"] == {"type": "json_object", "schema": second["response_format"]["schema"]}
    assert second["response_format"]["schema"]["properties"]["output"]["required"] == ["invoice"]
    assert second["max_tokens"] == 200 and second["temperature"] == 0.1  # kept from the mission's model
    # a Gemma template has no system role: the instructions lead the first user turn instead
    assert [m["role"] for m in second["messages"]] == ["user"]
    assert second["messages"][0]["content"].startswith("Extract the invoice number.")
    assert "refused structured output as json_schema; asking as json_object_schema" in result.stdout
    run_id = result.stdout.split()[1]
    (call,) = [e for e in map(json.loads, sx("log", run_id, "--json").stdout.splitlines()) if e["type"] == "model_call"]
    assert call["reply"]["mode"] == "json_object_schema"


def test_the_server_can_come_from_the_environment_and_defaults_bound_the_answer(sx, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    mission = write_mission(tmp_path / "m.yaml", MISSION.replace(
        "main: {model: openai/gpt-4o-mini, temperature: 0.1, max_tokens: 200, timeout: 30}",
        "main: openai/gpt-4o-mini"))
    with OpenAIServer({"reasoning": "r", "output": {"invoice": "INV-1"}}, refuse_json_schema=False) as server:
        result = sx("run", mission, STUDIOX_API_BASE=server.url, STUDIOX_MODEL="openai/llama-local")
        assert result.returncode == 0, result.stdout + result.stderr
        (request,) = server.requests
    assert request["max_tokens"] == 1024  # nothing runs away by default
    assert request["response_format"]["type"] == "json_schema"
    assert [m["role"] for m in request["messages"]] == ["system", "user"]  # a template with a system role


def test_models_check_reports_the_mode_that_answered_and_models_lists_what_a_mission_can_use(sx, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIServer({"reasoning": "known", "output": {"capital": "Paris"}}) as server:
        checked = sx("models", "check", "openai/qwen-local", "--api-base", server.url, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(checked.stdout)
    assert result["ok"] and result["valid_json"] and result["mode"] == "json_object_schema"
    with OpenAIServer({"nonsense": True}) as server:
        wrong = sx("models", "check", "openai/qwen-local", "--api-base", server.url)
    assert wrong.returncode == 1 and "does not fit the schema" in wrong.stdout
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "tiny.gguf").write_bytes(b"GGUF")
    listed = json.loads(sx("models", "--mission", write_mission(tmp_path / "m.yaml", MISSION), "--json",
                           STUDIOX_MODELS_DIR=str(models_dir)).stdout)
    assert {"name": "main", "model": "openai/gpt-4o-mini", "where": "provider"}.items() <= listed[0].items()
    assert any(r["model"] == "local/tiny" and r["where"] == "in process" for r in listed)


def test_a_local_model_that_is_not_there_is_a_clear_step_error(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", MISSION)
    result = sx("run", mission, "--model", "local/no-such-model", STUDIOX_MODELS_DIR=str(tmp_path / "none"))
    assert result.returncode == 1
    assert "no local model 'no-such-model': put no-such-model.gguf in" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_generated_strings_are_bounded_in_the_grammar():
    from studiox.adapters.local import STRING_BOUND, bounded

    schema = {"type": "object", "properties": {"reasoning": {"type": "string"}, "code": {"type": "string",
              "maxLength": 5}, "kind": {"type": "string", "enum": ["a", "b"]},
              "lines": {"type": "array", "items": {"type": "string"}}}}
    out = bounded(schema)
    assert out["properties"]["reasoning"]["maxLength"] == STRING_BOUND
    assert out["properties"]["code"]["maxLength"] == 5 and "maxLength" not in out["properties"]["kind"]
    assert out["properties"]["lines"]["items"]["maxLength"] == STRING_BOUND and out["properties"]["lines"]["maxItems"]
    assert "maxLength" not in schema["properties"]["reasoning"]  # the mission's schema is left as it was
