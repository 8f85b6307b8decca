"""Model calls through litellm: the one door to every provider.

litellm is imported only when a model is actually called (it costs seconds and hundreds of MB),
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` set first so that nothing is fetched from the network
at import. Rate limits and transient faults are retried with backoff (honouring Retry-After).
This module is the border to litellm: every exception raised below it (litellm's own, the
provider SDK's, or anything else) leaves as a :class:`StepError` that names the model and says
what to do; nothing foreign reaches the engine.

Scripted answers (``--replay FILE``, see replay.py) go through litellm's own ``mock_response``,
so a mission runs offline through the same path as a real one. How structured output is asked
of each kind of server, and the limits of a call, are in dialects.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field

from ..errors import StepError
from . import dialects, local
from .ports import ANNOUNCE
from .replay import (  # noqa: F401 - Replay and function_name are part of this door's surface
    ANSWER_KEYS,
    ANSWER_KINDS,
    MAX_TRANSIENT_RETRIES,
    USAGE_KEYS,
    Replay,
    _error_classes,
    _litellm,
    _mock_kwargs,
    _provider,
    _scripted,
    function_name,
    reply_dict,
)

# providers that run locally or on the user's own server: no API key is expected
_KEYLESS = {"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "vllm", "llamafile", "openai_like", "custom_openai"}


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


_TRANSIENT = ("RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError",
              "APIConnectionError", "Timeout")


class LiteLLMModels:
    """The models door: calls litellm (or replays scripted answers through litellm's mocks)."""

    def __init__(self, replay: Replay | None = None, sleep=asyncio.sleep, environ=None):
        self.replay = replay
        self.sleep = sleep
        self.environ = os.environ if environ is None else environ
        self.modes: dict[str, list[str]] = {}  # model → the structured-output modes still to try, this run

    async def complete(self, call: ModelCall, *, address: str, step_id: str, index: int) -> dict:
        """One model call; returns the reply as plain data. Every failure is a StepError."""
        answer = self.replay.answer(address, step_id, index) if self.replay is not None else None
        if answer is None and local.is_local(call.model):  # in process: no litellm, no server
            return await local.complete(call)
        try:
            litellm = _litellm()
        except Exception as e:  # noqa: BLE001 - a broken install is a clear error too, not a crash
            raise StepError("model_error", f"litellm cannot be imported ({type(e).__name__}: {e}); reinstall "
                            "studiox") from None
        try:
            return await self._complete(litellm, call, answer)
        except StepError:
            raise
        except Exception as e:  # noqa: BLE001 - the border: nothing raised below it reaches the engine
            raise provider_error(litellm, e, call.model) from None

    async def _complete(self, litellm, call: ModelCall, answer: dict | None) -> dict:
        import openai

        kwargs, limits = dialects.prepare(call, self.environ)
        if call.tools:
            kwargs["tools"] = call.tools
        if answer is None and not kwargs.get("api_base"):
            self._check_credentials(litellm, call)
        modes = self.modes.setdefault(call.model, dialects.chain_for(
            _provider(litellm, call.model), call.model, limits["structured_output"], _supports_schema(litellm, call)))
        transient = _classes(litellm, *_TRANSIENT)
        begun = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            mode = modes[0] if call.output_schema is not None else "prompt"
            mock = {} if answer is None else _mock_kwargs(litellm, _scripted(answer, attempt), call.model)
            left = limits["deadline"] - (time.monotonic() - begun)
            started = time.perf_counter()
            try:
                scripted = mock.get("mock_response")
                if isinstance(scripted, Exception) and not isinstance(scripted, openai.APIError):
                    raise scripted  # litellm's mock would wrap it; raise it as litellm itself would
                asked = dialects.request(mode, call.output_schema) if call.output_schema is not None else {}
                response = await litellm.acompletion(**kwargs, **asked, **mock,
                                                     timeout=max(1.0, min(limits["timeout"], left)))
            except Exception as e:
                if call.output_schema is not None and len(modes) > 1 and dialects.refuses_mode(e):
                    modes.pop(0)  # the server cannot answer in that mode: the next one, at once, for the run
                    if (announce := ANNOUNCE.get()) is not None:
                        announce(f"the model server refused structured output as {mode}; asking as {modes[0]}")
                    attempt -= 1
                    continue
                if not isinstance(e, transient):
                    raise
                wait = _retry_after(e) or min(60.0, 2.0 ** attempt)
                if time.monotonic() - begun + wait > limits["deadline"]:
                    raise StepError("timeout", f"the model '{call.model}' did not answer within the step's deadline "
                                    f"of {limits['deadline']:g} s ({attempt} tries; {type(e).__name__}: "
                                    f"{_first_line(e)})", details={"provider_error": type(e).__name__}) from None
                if attempt > MAX_TRANSIENT_RETRIES:
                    raise StepError("rate_limit" if isinstance(e, litellm.RateLimitError) else "model_error",
                                    f"the model '{call.model}' kept failing after {attempt} tries "
                                    f"({type(e).__name__}: {_first_line(e)}); try again later with studiox resume "
                                    "RUN_ID --retry", details={"provider_error": type(e).__name__}) from None
                if (announce := ANNOUNCE.get()) is not None:
                    why = "rate limited by the provider" if isinstance(e, litellm.RateLimitError) else \
                        f"the provider failed ({type(e).__name__})"
                    announce(f"{why}; retrying in {wait:g} s (try {attempt + 1} of {MAX_TRANSIENT_RETRIES + 1})")
                await self.sleep(wait)
                continue
            reply = _reply(litellm, response, call.model, time.perf_counter() - started)
            if call.output_schema is not None:
                reply["mode"] = mode  # journaled: which way of asking for the schema was answered
            if answer is not None:  # litellm's mock usage is invented: a replayed turn counts only what is scripted
                usage = _scripted(answer, attempt).get("usage") or {}
                reply.update(replayed=True, **{key: usage.get(key) for key in USAGE_KEYS})
            return reply

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


def provider_error(litellm, error: Exception, model: str) -> StepError:
    """Any exception from a model call as a step error: what happened to which model, and what to do.

    The most specific litellm classes come first (several are subclasses of BadRequestError);
    anything litellm does not define, even a plain ValueError from deep inside, still ends here.
    """
    name, detail = type(error).__name__, _first_line(error)
    said = f"({name}: {detail})" if detail != name else f"({name})"

    def fail(message: str, kind: str = "model_error") -> StepError:
        return StepError(kind, message, details={"provider_error": name})

    if isinstance(error, _classes(litellm, "ContextWindowExceededError")):
        return fail(f"the input is too long for {model}'s context window; give the worker less to read, or use a "
                    "model with a larger window")
    if isinstance(error, _classes(litellm, "AuthenticationError")):
        return fail(f"the provider of the model '{model}' rejected the credentials {said}: check the API key"
                    f"{_keys_hint(litellm, model)}")
    if isinstance(error, _classes(litellm, "LiteLLMUnknownProvider")) or "LLM Provider NOT provided" in detail:
        return fail(f"litellm cannot tell which provider serves the model '{model}' {said}: write it as "
                    f"provider/model, such as openai/gpt-4o-mini{_model_suggestion(litellm, model)}")
    if isinstance(error, _classes(litellm, "NotFoundError")):
        return fail(f"the model '{model}' is not known to its provider {said}: check its name in the mission, "
                    f"--model or STUDIOX_MODEL{_model_suggestion(litellm, model)}")
    if isinstance(error, _classes(litellm, "PermissionDeniedError")):
        return fail(f"the provider refused access to the model '{model}' {said}: the credentials in use may not "
                    "use it; check the account's access, or choose another model")
    if isinstance(error, _classes(litellm, "PaymentRequiredError", "BudgetExceededError")):
        return fail(f"the provider of the model '{model}' wants payment {said}: check the account's credits or "
                    "billing, then take the run up again with studiox resume RUN_ID --retry")
    if isinstance(error, _classes(litellm, "ContentPolicyViolationError", "RejectedRequestError",
                                  "GuardrailRaisedException", "BlockedPiiEntityError")):
        return fail(f"the model '{model}' refused the content {said}: change the worker's input or instructions")
    if isinstance(error, _classes(litellm, "UnsupportedParamsError")):
        return fail(f"the model '{model}' does not accept a setting the worker sends {said}: remove it from the "
                    "model's settings in the mission")
    if isinstance(error, _classes(litellm, "UnprocessableEntityError")):
        return fail(f"the model '{model}' could not process the request {said}: check the model's settings in "
                    "the mission, or choose another model")
    if isinstance(error, _classes(litellm, "BadRequestError")):
        return fail(f"the model '{model}' refused the request {said}: check the model's name and settings")
    if isinstance(error, _classes(litellm, "APIResponseValidationError")):
        return fail(f"the reply of the model '{model}' could not be read {said}; try again with studiox resume "
                    "RUN_ID --retry, or choose another model")
    if isinstance(error, _classes(litellm, "RateLimitError")):
        return fail(f"the model '{model}' is rate-limited {said}; try again later", "rate_limit")
    known = tuple(_error_classes(litellm).values())
    if isinstance(error, known) or _from_library(error):
        return fail(f"the call to the model '{model}' failed {said}; try again later with studiox resume RUN_ID "
                    "--retry, or choose another model")
    return fail(f"the call to the model '{model}' failed unexpectedly {said}; if it happens again, please report "
                "it")


def _classes(litellm, *names: str) -> tuple[type[BaseException], ...]:
    """The litellm exception classes of these names that this version of litellm has."""
    found = (getattr(litellm, name, None) or getattr(litellm.exceptions, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


def _from_library(error: Exception) -> bool:
    """An exception of the provider SDKs or HTTP client below litellm (not a bug of their caller)."""
    return type(error).__module__.split(".")[0] in {"litellm", "openai", "httpx", "httpcore", "anthropic", "aiohttp"}


def _model_suggestion(litellm, model: str) -> str:
    """' — did you mean 'openai/gpt-4o-mini'?' for a close name in litellm's local price map, else ''."""
    import difflib

    prices = getattr(litellm, "model_cost", None) or {}
    prefix, _, name = model.rpartition("/")
    if prefix:
        names = {key.removeprefix(f"{prefix}/") for key, info in prices.items()
                 if isinstance(info, dict) and info.get("litellm_provider") == prefix}
        close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.75)
        return f" — did you mean '{prefix}/{close[0]}'?" if close and close[0] != name else ""
    close = difflib.get_close_matches(model, sorted(prices), n=1, cutoff=0.75)
    if not close:
        return ""
    provider = (prices[close[0]] or {}).get("litellm_provider") if isinstance(prices[close[0]], dict) else None
    full = close[0] if "/" in close[0] or not provider else f"{provider}/{close[0]}"
    return f" — did you mean '{full}'?"


def _supports_schema(litellm, call: ModelCall) -> bool:
    try:
        return bool(litellm.supports_response_schema(call.model))
    except Exception:  # noqa: BLE001 - a model litellm does not know: it says nothing
        return False


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
    try:
        missing = litellm.validate_environment(model).get("missing_keys") or []
    except Exception:  # noqa: BLE001 - only a hint
        missing = []
    return f" ({', '.join(missing)})" if missing else ""


# litellm prefixes its messages with its class names ("litellm.BadRequestError: litellm.Content...: "),
# sometimes the provider's ("OpenAIException - "), and colours some of them for a terminal
_NOISE = re.compile(r"^(?:\s*(?:(?:litellm\.)?\w+(?:Error|Exception):|\w+Exception -)\s*)+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(error) -> str:
    """The first line of an error's message, without litellm's prefixes and colours, at most 300 characters."""
    text = _ANSI.sub("", str(getattr(error, "message", None) or error)).strip()
    line = _NOISE.sub("", text.splitlines()[0]).strip() if text else ""
    return line[:300] or type(error).__name__
