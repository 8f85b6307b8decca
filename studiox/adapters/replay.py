"""Replay files: scripted model answers (``--replay FILE``), checked when loaded, and fed through
litellm's own ``mock_response`` so a mission runs offline through the same path as a real one.
A replayed reply is marked ``replayed`` and carries no token counts or cost (litellm's mock usage
is invented), unless the replay file scripts them with ``usage:``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Problem, StepError

if TYPE_CHECKING:
    from ..mission.yamlread import Located

MAX_TRANSIENT_RETRIES = 4  # how often models.py retries; a scripted error fails this often by default


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

        try:
            located = read(path)
        except MissionInvalid as e:
            raise UsageError("\n".join(f"--replay: {p.render()}" for p in e.problems)) from None
        problems = located.problems or answer_problems(located)
        if problems:
            raise UsageError("\n".join(f"--replay: {p.render()}" for p in problems))
        assert isinstance(located.data, dict)  # checked by answer_problems
        return cls(located.data, str(path))

    def answer(self, address: str, step_id: str, index: int) -> dict:
        answers = self.answers.get(address, self.answers.get(step_id))
        if not answers or index >= len(answers):
            raise StepError("model_error", f"the replay file {self.source} has no answer {index + 1} for step "
                            f"'{step_id}'")
        return answers[index]


def read(path: str | Path) -> Located:
    """A replay file read as located YAML: a UsageError when it cannot be read, MissionInvalid with a
    located problem when it is not UTF-8 YAML or holds nothing; its ``problems`` are the YAML's own."""
    from ..errors import MissionInvalid, UsageError
    from ..mission import yamlread

    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"--replay: cannot read '{path}': {e.strerror}") from None
    text = yamlread.read_text(name, raw)
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise MissionInvalid([Problem(name, 0, 0, "", "the file is empty; it must map step ids to lists of answers")])
    return yamlread.load(name, text)


def answer_problems(located: Located, at: tuple = ()) -> list[Problem]:
    """What is wrong with the shape of scripted answers: the mapping of steps to answer lists at ``at``
    in ``located`` (the whole of a replay file), each problem located and naming step and answer."""
    from ..mission.yamlread import render_path

    data = located.value_at(at)
    where = render_path(located.data, at)
    within = f"{where}: " if where else ""
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        line, col = located.where(at)
        return [Problem(located.file, line, col, where, "it must map step ids to lists of answers")]
    problems: list[Problem] = []
    scripts_errors = _mentions_error(data)
    errors = _error_classes(_litellm()) if scripts_errors else {}  # litellm only when the file needs it
    for step, answers in data.items():
        if not isinstance(answers, list):
            line, col = located.where((*at, step))
            problems.append(Problem(located.file, line, col, f"{within}step '{step}'", "its answers must be a list"))
            continue
        for i, answer in enumerate(answers):
            _check_answer(answer, (*at, step, i), f"{within}step '{step}', answer {i + 1}", located, problems, errors)
    return problems


def _mentions_error(data) -> bool:
    return any(isinstance(a, dict) and ("error" in a or _mentions_error({"then": [a.get("then")]}))
               for answers in data.values() if isinstance(answers, list) for a in answers)


def _check_answer(answer, at: tuple, label: str, located, problems: list, errors: dict) -> None:
    from ..errors import suggest
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
    if "output" not in answer:  # never a null output for a misspelt key (Replay.load refuses such a file)
        raise StepError("model_error", "a replay answer must give output, text, tool_calls or error; this one gives "
                        f"{', '.join(map(str, answer)) or 'nothing'}")
    return {"mock_response": json.dumps({"reasoning": answer.get("reasoning", "(replayed answer)"),
                                         "output": answer["output"]})}


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


def _provider(litellm, model: str) -> str | None:
    try:
        return litellm.get_llm_provider(model=model)[1]
    except Exception:  # noqa: BLE001 - an unknown provider is for litellm to report when called
        return None


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices from the network
    import logging

    import litellm

    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)  # its warnings are not for studiox's users
    return litellm


def reply_dict(content: str | None, tool_calls: list, *, model: str, input_tokens: int | None,
               output_tokens: int | None, cost_usd: float | None, latency_s: float, replayed: bool = False) -> dict:
    """A model's reply as plain data (what the journal keeps); a replayed one has no usage of its own."""
    return {"content": content, "tool_calls": tool_calls, "model": model, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "cost_usd": cost_usd, "latency_s": round(latency_s, 4),
            "replayed": replayed}
