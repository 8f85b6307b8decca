"""How to ask each kind of model server for structured output, and how to talk to any of them
without losing what studiox tells the model.

Structured output modes, most exact first:

- ``json_schema``: OpenAI's ``response_format: {type: json_schema, json_schema: {schema}}``
  (OpenAI, Azure, vLLM, LM Studio, recent llama.cpp builds);
- ``json_object_schema``: llama.cpp's ``response_format: {type: json_object, schema}`` (a grammar
  made from the schema);
- ``ollama_format``: Ollama's ``format: <schema>``;
- ``guided_json``: vLLM's ``guided_json`` extra body;
- ``json_object``: any JSON object (the schema in the prompt only);
- ``prompt``: nothing asked of the server: the schema is in the system message, and the answer is
  validated and repaired by the worker.

A model's chain starts at what its provider is known (or declared, ``structured_output:``) to
support. When a server refuses a mode (llama.cpp answers HTTP 500 to ``json_schema``), the call
falls to the next mode at once — not counted as a transient fault — and the run remembers it.
A chat template without a system role (Gemma's) would drop studiox's instructions: for such
models the system message is merged into the first user turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import StepError

MODES = ("json_schema", "json_object_schema", "ollama_format", "guided_json", "json_object", "prompt")
DEFAULT_MAX_TOKENS = 1024  # an answer no longer than this unless the mission says otherwise
DEFAULT_TIMEOUT = 120.0  # seconds one model call may take
DEFAULT_DEADLINE = 600.0  # seconds all of a step's tries of one call may take, waits between them included


def chain_for(provider: str | None, model: str, declared: str | None, supports_schema: bool) -> list[str]:
    """The modes to try for a model, in order."""
    if declared is not None:
        start = MODES.index(declared)
        return list(MODES[start:]) if declared != "prompt" else ["prompt"]
    if provider in ("ollama", "ollama_chat"):
        return ["ollama_format", "json_object", "prompt"]
    if provider in ("hosted_vllm", "vllm"):
        return ["json_schema", "guided_json", "json_object", "prompt"]
    if supports_schema:
        return ["json_schema", "json_object", "prompt"]
    if provider in ("openai", "openai_like", "custom_openai", "lm_studio", "llamafile"):  # an endpoint we do not know
        return ["json_schema", "json_object_schema", "json_object", "prompt"]
    return ["json_object", "prompt"]


def request(mode: str, schema: dict) -> dict:
    """The keyword arguments that ask for ``schema`` in ``mode``."""
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
    if mode == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "ollama_format":
        return {"format": schema}
    if mode == "guided_json":
        return {"extra_body": {"guided_json": schema}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


_REFUSALS = ("response_format", "json_schema", "schema", "grammar", "format", "unsupported", "not supported")


def refuses_mode(error: Exception) -> bool:
    """Whether a server's error says it cannot do the structured output asked for (rather than fail)."""
    status = getattr(error, "status_code", None)
    text = str(error).lower()
    if status in (400, 422, 500, 501) and any(word in text for word in _REFUSALS):
        return True
    return status == 500 and "internal server error" in text  # llama.cpp's answer to json_schema


def without_system_role(model: str, settings: dict) -> bool:
    """Whether the model's chat template drops system messages (Gemma's does), so they must be merged."""
    declared = settings.get("system_role")
    if declared is not None:
        return not declared
    return "gemma" in model.lower()


def merge_system(messages: list[dict]) -> list[dict]:
    """The conversation with its system messages put at the head of the first user turn."""
    system = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    if not system:
        return rest
    for message in rest:
        if message.get("role") == "user":
            message["content"] = f"{system}\n\n{message.get('content') or ''}"
            return rest
    return [{"role": "user", "content": system}, *rest]


OWN_SETTINGS = ("structured_output", "system_role", "timeout", "deadline", "api_key")  # read here, not passed on


def prepare(call: Any, environ: Mapping[str, str]) -> tuple[dict, dict]:
    """litellm's keyword arguments for ``call`` (defaults applied, the key read from the environment,
    the system message merged where the template has no system role), and the call's limits."""
    from .. import secrets

    settings = dict(call.settings)
    limits = {"structured_output": settings.get("structured_output"),
              "timeout": float(settings.get("timeout") or DEFAULT_TIMEOUT),
              "deadline": float(settings.get("deadline") or DEFAULT_DEADLINE)}
    kwargs: dict = {"model": call.model, **{k: v for k, v in settings.items() if k not in OWN_SETTINGS},
                    "num_retries": 0}  # studiox retries itself, within the deadline
    kwargs.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    key = settings.get("api_key")
    if isinstance(key, dict):
        name = key.get("from_env", "")
        if not environ.get(name):
            raise StepError("model_error", f"the model {call.model} reads its key from the environment variable "
                            f"{name}, which is not set; set it before running")
        kwargs["api_key"] = environ[name]
        secrets.remember(environ[name])
    elif kwargs.get("api_base") and not kwargs.get("api_key"):
        kwargs["api_key"] = "no-key"  # a local server takes none, but the OpenAI client insists on one
    messages = call.messages
    if without_system_role(call.model, settings):
        messages = merge_system(messages)
    kwargs["messages"] = messages
    return kwargs, limits
