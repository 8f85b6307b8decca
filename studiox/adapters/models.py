"""Model calls through litellm: the one door to every provider.

litellm is imported only when a model is actually called (it costs seconds and hundreds of MB),
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` set first so that nothing is fetched from the network
at import. Rate limits and transient faults are retried with backoff (honouring Retry-After);
missing credentials, rejected credentials and context-window overflows become clear step errors.

``Replay`` feeds scripted answers through litellm's own ``mock_response``, so a mission runs
offline through exactly the same path, usage and cost accounting included (``--replay FILE``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StepError

# providers that run locally or on the user's own server: no API key is expected
_KEYLESS = {"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "vllm", "llamafile", "openai_like", "custom_openai"}
MAX_TRANSIENT_RETRIES = 4


@dataclass(frozen=True)
class ModelCall:
    """One request to a model."""

    model: str
    messages: list
    output_schema: dict | None = None  # ask for JSON of this shape where the provider supports it
    tools: list = field(default_factory=list)  # litellm/OpenAI function specs
    settings: dict = field(default_factory=dict)  # temperature, max_tokens, api_base

    def fingerprint(self) -> str:
        """What identifies the request for the response cache."""
        import hashlib

        body = json.dumps([self.model, self.messages, self.output_schema, self.tools, self.settings], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


def reply_dict(content: str | None, tool_calls: list, *, model: str, input_tokens: int, output_tokens: int,
               cost_usd: float | None, latency_s: float) -> dict:
    """A model's reply as plain data (what the journal keeps)."""
    return {"content": content, "tool_calls": tool_calls, "model": model, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "cost_usd": cost_usd, "latency_s": round(latency_s, 4)}


class Replay:
    """Scripted model answers by step, read from a YAML or JSON file.

    The file maps a step id (or a step address such as ``lines[2].check``) to a list of answers,
    used in order. An answer is one of: ``{output: ..., reasoning: ...}`` (a worker's final
    answer), ``{tool_calls: [{tool: erp.check_budget, arguments: {...}}]}``, ``{text: ...}`` (a
    raw reply, e.g. to exercise repair), or ``{error: litellm.RateLimitError}`` (optionally with
    ``times: N`` and ``then: ANSWER``: the error N times, then the answer).
    """

    def __init__(self, answers: dict, source: str = "<replay>"):
        self.answers = answers
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> Replay:
        from ..errors import MissionInvalid, UsageError
        from ..mission import yamlread

        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--replay: cannot read '{path}': {e.strerror}") from None
        try:
            data = yamlread.load(str(path), text).data
        except MissionInvalid as e:
            raise UsageError(f"--replay: {e.render()}") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise UsageError(f"--replay: '{path}' must map step ids to lists of answers")
        return cls(data, str(path))

    def answer(self, address: str, step_id: str, index: int) -> dict:
        answers = self.answers.get(address, self.answers.get(step_id))
        if not answers or index >= len(answers):
            raise StepError("model_error", f"the replay file {self.source} has no answer {index + 1} for step "
                            f"'{step_id}'")
        return answers[index]


def function_name(target: str) -> str:
    """A tool's name as models see it: ``erp.check_budget`` → ``erp__check_budget``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", target.replace(".", "__"))[:64]


def _mock_kwargs(answer: dict) -> dict:
    """An answer from a replay file, as litellm mock arguments."""
    if "error" in answer:
        return {"mock_response": str(answer["error"])}
    if "tool_calls" in answer:
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": function_name(c["tool"]), "arguments": json.dumps(c.get("arguments", {}))}}
                 for i, c in enumerate(answer["tool_calls"])]
        return {"mock_response": answer.get("text", ""), "mock_tool_calls": calls}
    if "text" in answer:
        return {"mock_response": answer["text"]}
    return {"mock_response": json.dumps({"reasoning": answer.get("reasoning", "(replayed answer)"),
                                         "output": answer.get("output")})}


class LiteLLMModels:
    """The models door: calls litellm (or replays scripted answers through litellm's mocks)."""

    def __init__(self, replay: Replay | None = None, sleep=asyncio.sleep, environ=None):
        self.replay = replay
        self.sleep = sleep
        self.environ = os.environ if environ is None else environ

    async def complete(self, call: ModelCall, *, address: str, step_id: str, index: int) -> dict:
        """One model call; returns the reply as plain data."""
        litellm = _litellm()
        kwargs: dict = {"model": call.model, "messages": call.messages, **call.settings}
        if call.tools:
            kwargs["tools"] = call.tools
        if call.output_schema is not None:
            kwargs["response_format"] = _response_format(litellm, call)
        answer = self.replay.answer(address, step_id, index) if self.replay is not None else None
        if answer is None:
            self._check_credentials(litellm, call)
        for attempt in range(1, MAX_TRANSIENT_RETRIES + 2):
            if answer is not None:  # {error: ..., times: N, then: ANSWER} fails N times, then answers
                failing = "error" in answer and attempt <= answer.get("times", MAX_TRANSIENT_RETRIES + 1)
                kwargs.update(_mock_kwargs(answer if failing or "then" not in answer else answer["then"]))
            started = time.perf_counter()
            try:
                response = await litellm.acompletion(**kwargs)
            except (litellm.RateLimitError, litellm.InternalServerError, litellm.ServiceUnavailableError,
                    litellm.APIConnectionError, litellm.Timeout) as e:
                if attempt > MAX_TRANSIENT_RETRIES:
                    raise StepError("rate_limit" if isinstance(e, litellm.RateLimitError) else "model_error",
                                    f"{call.model} kept failing after {attempt} tries: {_first_line(e)}") from None
                await self.sleep(_retry_after(e) or min(60.0, 2.0 ** attempt))
                continue
            except litellm.ContextWindowExceededError:
                raise StepError("model_error", f"the input is too long for {call.model}'s context window; give the "
                                "worker less to read, or use a model with a larger window") from None
            except litellm.AuthenticationError as e:
                raise StepError("model_error", f"{call.model} rejected the credentials: {_first_line(e)}"
                                f"{_keys_hint(litellm, call.model)}") from None
            except litellm.BadRequestError as e:
                raise StepError("model_error", f"{call.model} refused the request: {_first_line(e)}") from None
            return _reply(litellm, response, call.model, time.perf_counter() - started)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_credentials(self, litellm, call: ModelCall) -> None:
        if call.settings.get("api_base") or call.settings.get("api_key"):
            return
        provider = _provider(litellm, call.model)
        if provider in _KEYLESS:
            return
        missing = litellm.validate_environment(call.model).get("missing_keys") or []
        if missing:
            names = " and ".join(missing)
            raise StepError("model_error", f"the model {call.model} needs the environment variable {names}; set it "
                            f"before running (or run offline with --replay FILE)")


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices from the network
    import logging

    import litellm

    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)  # its warnings are not for studiox's users
    return litellm


def _provider(litellm, model: str) -> str | None:
    try:
        return litellm.get_llm_provider(model=model)[1]
    except Exception:  # noqa: BLE001 - an unknown provider is for litellm to report when called
        return None


def _response_format(litellm, call: ModelCall) -> dict:
    try:
        supported = litellm.supports_response_schema(call.model)
    except Exception:  # noqa: BLE001
        supported = False
    if supported:
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": call.output_schema}}
    return {"type": "json_object"}


def _reply(litellm, response, model: str, latency: float) -> dict:
    message = response.choices[0].message
    calls = []
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = {"_unparsed": call.function.arguments}
        calls.append({"id": call.id, "name": call.function.name, "arguments": arguments})
    usage = getattr(response, "usage", None)
    try:
        cost = float(litellm.completion_cost(completion_response=response))
    except Exception:  # noqa: BLE001 - a model missing from the local price map has no known cost
        cost = None
    return reply_dict(message.content, calls, model=getattr(response, "model", None) or model,
                      input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                      output_tokens=getattr(usage, "completion_tokens", 0) or 0, cost_usd=cost, latency_s=latency)


def _retry_after(error) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return min(300.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _keys_hint(litellm, model: str) -> str:
    missing = litellm.validate_environment(model).get("missing_keys") or []
    return f" (check {', '.join(missing)})" if missing else ""


def _first_line(error) -> str:
    text = str(getattr(error, "message", None) or error)
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__
