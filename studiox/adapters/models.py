"""Model calls through litellm: the one door to every provider.

litellm is imported only when a model is actually called (it costs seconds and hundreds of MB),
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` set first so that nothing is fetched from the network
at import. Rate limits and transient faults are retried with backoff (honouring Retry-After).
This module is the border to litellm: every exception raised below it (litellm's own, the
provider SDK's, or anything else) leaves as a :class:`StepError` that names the model and says
what to do; nothing foreign reaches the engine.

``Replay`` feeds scripted answers through litellm's own ``mock_response``, so a mission runs
offline through the same path as a real one (``--replay FILE``). A replayed reply is marked
``replayed`` and carries no token counts or cost (litellm's mock usage is invented), unless the
replay file scripts them with ``usage:``.
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
from . import dialects
from .ports import ANNOUNCE

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


def reply_dict(content: str | None, tool_calls: list, *, model: str, input_tokens: int | None,
               output_tokens: int | None, cost_usd: float | None, latency_s: float, replayed: bool = False) -> dict:
    """A model's reply as plain data (what the journal keeps); a replayed one has no usage of its own."""
    return {"content": content, "tool_calls": tool_calls, "model": model, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "cost_usd": cost_usd, "latency_s": round(latency_s, 4),
            "replayed": replayed}


ANSWER_KINDS = ("output", "text", "tool_calls", "error")
ANSWER_KEYS = (*ANSWER_KINDS, "reasoning", "message", "times", "then", "usage")
USAGE_KEYS = ("input_tokens", "output_tokens", "cost_usd")


class Replay:
    """Scripted model answers by step, read from a YAML or JSON file.

    The file maps a step id (or a step address such as ``lines[2].check``) to a list of answers,
    used in order. An answer is one of: ``{output: ..., reasoning: ...}`` (a worker's final
    answer), ``{tool_calls: [{tool: erp.check_budget, arguments: {...}}]}``, ``{text: ...}`` (a
    raw reply, e.g. to exercise repair), or ``{error: litellm.RateLimitError}`` (any litellm
    exception class, optionally with ``message``, and ``times: N`` and ``then: ANSWER``: the
    error N times, then the answer). ``usage: {input_tokens, output_tokens, cost_usd}`` scripts
    what a turn counts against budgets; without it a replayed turn counts nothing.
    """

    def __init__(self, answers: dict, source: str = "<replay>"):
        self.answers = answers
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> Replay:
        """Read and check a replay file; any problem is a UsageError that says where (exit 2)."""
        from ..errors import MissionInvalid, UsageError
        from ..mission import yamlread

        name = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise UsageError(f"--replay: cannot read '{path}': {e.strerror}") from None
        try:
            text = yamlread.read_text(name, raw)
            if not text.strip():
                raise UsageError(f"--replay: {name} is empty; it must map step ids to lists of answers")
            located = yamlread.load(name, text)
        except MissionInvalid as e:
            raise UsageError(f"--replay: {e.render()}") from None
        problems = located.problems or _problems(located)
        if problems:
            raise UsageError("\n".join(f"--replay: {p.render()}" for p in problems))
        assert isinstance(located.data, dict)  # checked by _problems
        return cls(located.data, name)

    def answer(self, address: str, step_id: str, index: int) -> dict:
        answers = self.answers.get(address, self.answers.get(step_id))
        if not answers or index >= len(answers):
            raise StepError("model_error", f"the replay file {self.source} has no answer {index + 1} for step "
                            f"'{step_id}'")
        return answers[index]


def _problems(located) -> list:
    """What is wrong with the shape of a replay file, each problem located and naming step and answer."""
    from ..errors import Problem

    data = located.data
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        line, col = located.where(())
        return [Problem(located.file, line, col, "", "it must map step ids to lists of answers")]
    problems: list[Problem] = []
    scripts_errors = _mentions_error(data)
    errors = _error_classes(_litellm()) if scripts_errors else {}  # litellm only when the file needs it
    for step, answers in data.items():
        if not isinstance(answers, list):
            line, col = located.where((step,))
            problems.append(Problem(located.file, line, col, f"step '{step}'", "its answers must be a list"))
            continue
        for i, answer in enumerate(answers):
            _check_answer(answer, (step, i), f"step '{step}', answer {i + 1}", located, problems, errors)
    return problems


def _mentions_error(data) -> bool:
    return any(isinstance(a, dict) and ("error" in a or _mentions_error({"then": [a.get("then")]}))
               for answers in data.values() if isinstance(answers, list) for a in answers)


def _check_answer(answer, at: tuple, label: str, located, problems: list, errors: dict) -> None:
    from ..errors import Problem, suggest
    from ..expressions import type_name

    def add(message: str, *sub, key: bool = False) -> None:
        line, col = located.where((*at, *sub), key=key)
        problems.append(Problem(located.file, line, col, label, message))

    if not isinstance(answer, dict):
        add("an answer must be a mapping such as {output: ...}, {text: ...}, {tool_calls: [...]} or "
            f"{{error: litellm.RateLimitError}}, not {type_name(answer)}")
        return
    unknown = [key for key in answer if key not in ANSWER_KEYS]
    for key in unknown:
        add(f"unknown key '{key}'{suggest(key, ANSWER_KEYS)}", key, key=True)
    given = [k for k in ANSWER_KINDS if k in answer]
    if not given and not unknown:  # a misspelt 'output' has said what is wrong already
        add("says nothing: give output, text, tool_calls or error")
    elif len(given) > 1 and set(given) != {"text", "tool_calls"}:
        add(f"give only one of {' and '.join(given)} (text may go with tool_calls; what comes after an error "
            "goes under 'then')")
    for key in ("reasoning", "text", "message"):
        if key in answer and not isinstance(answer[key], str):
            add(f"'{key}' must be text, not {type_name(answer[key])}", key)
    if "error" not in answer:
        for key in ("times", "then", "message"):
            if key in answer:
                add(f"'{key}' only goes with 'error'", key, key=True)
    elif "usage" in answer:
        add("an error counts no usage: put 'usage' on the answer under 'then'", "usage", key=True)
    elif not isinstance(answer["error"], str) or _error_name(answer["error"]) not in errors:
        wrote = str(answer["error"])
        names = [f"litellm.{n}" for n in errors] if wrote.startswith("litellm.") else list(errors)
        add(f"unknown litellm error '{wrote}'{suggest(wrote, names)}", "error")
    times = answer.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        add("'times' must be a whole number of at least 1", "times")
    if "then" in answer:
        _check_answer(answer["then"], (*at, "then"), f"{label} (then)", located, problems, errors)
    calls = answer.get("tool_calls", [{"tool": "-"}])
    if not isinstance(calls, list) or not calls:
        add("'tool_calls' must be a list of calls such as {tool: erp.check_budget, arguments: {...}}", "tool_calls")
    else:
        for n, call in enumerate(calls):
            where = ("tool_calls", n)
            if not isinstance(call, dict) or not isinstance(call.get("tool"), str):
                add(f"tool_calls[{n}] needs 'tool' (such as erp.check_budget)", *where)
                continue
            for key in call:
                if key not in ("tool", "arguments"):
                    add(f"tool_calls[{n}]: unknown key '{key}'{suggest(key, ('tool', 'arguments'))}", *where, key,
                        key=True)
            if not isinstance(call.get("arguments", {}), dict):
                add(f"tool_calls[{n}].arguments must be a mapping", *where, "arguments")
    usage = answer.get("usage", {})
    if not isinstance(usage, dict):
        add("'usage' must be a mapping such as {input_tokens: 10, output_tokens: 20, cost_usd: 0.001}", "usage")
        return
    for key, value in usage.items():
        if key not in USAGE_KEYS:
            add(f"usage: unknown key '{key}'{suggest(key, USAGE_KEYS)}", "usage", key, key=True)
        elif isinstance(value, bool) or not isinstance(value, int if key != "cost_usd" else (int, float)) \
                or value < 0:
            add(f"usage.{key} must be a {'whole ' if key != 'cost_usd' else ''}number of at least 0", "usage", key)


def function_name(target: str) -> str:
    """A tool's name as models see it: ``erp.check_budget`` → ``erp__check_budget``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", target.replace(".", "__"))[:64]


def _scripted(answer: dict, attempt: int) -> dict:
    """The answer a replayed call gives at this attempt: ``{error, times: N, then}`` fails N times, then answers."""
    failing = "error" in answer and attempt <= answer.get("times", MAX_TRANSIENT_RETRIES + 1)
    return answer if failing or "then" not in answer else answer["then"]


def _mock_kwargs(litellm, answer: dict, model: str) -> dict:
    """An answer from a replay file, as litellm mock arguments."""
    if "error" in answer:
        return {"mock_response": _scripted_error(litellm, answer, model)}
    if "tool_calls" in answer:
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": function_name(c["tool"]), "arguments": json.dumps(c.get("arguments", {}))}}
                 for i, c in enumerate(answer["tool_calls"])]
        return {"mock_response": answer.get("text", ""), "mock_tool_calls": calls}
    if "text" in answer:
        return {"mock_response": answer["text"]}
    return {"mock_response": json.dumps({"reasoning": answer.get("reasoning", "(replayed answer)"),
                                         "output": answer.get("output")})}


def _error_name(written: str) -> str:
    return written.removeprefix("litellm.").removeprefix("exceptions.")


def _error_classes(litellm) -> dict[str, type]:
    """Every exception class litellm defines, by name: what a replay file may script."""
    module = litellm.exceptions
    return {name: cls for name, cls in vars(module).items()
            if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == module.__name__}


def _scripted_error(litellm, answer: dict, model: str) -> Exception:
    """The litellm exception a replay answer names, built as litellm would build it."""
    import inspect

    import httpx

    cls = _error_classes(litellm)[_error_name(answer["error"])]
    request = httpx.Request("POST", "https://replay.invalid/v1/chat/completions")
    message = answer.get("message") or f"scripted {cls.__name__} from the replay file"
    provider = _provider(litellm, model) or "openai"
    known: dict[str, object] = {
        "message": message, "model": model, "llm_provider": provider, "custom_llm_provider": provider,
        "status_code": 500, "request": request, "response": httpx.Response(500, request=request),
        "current_cost": 0.0, "max_budget": 0.0, "failures": []}
    try:
        parameters = inspect.signature(cls).parameters.values()
    except ValueError:  # no __init__ of its own: Exception's, which takes the message
        return cls(message)
    required = [p.name for p in parameters if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return cls(**{name: known.get(name, message if "message" in name else None) for name in required})


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
