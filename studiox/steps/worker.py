"""``worker``: an AI Worker reads its input and answers in the shape of its output schema.

The model is asked for ``{"reasoning": ..., "output": ...}``: the output is checked against the
step's schema (and repaired, at most twice, by telling the model what was wrong), the reasoning
goes to the Observations rail. Tools the worker may use are offered as functions; every call
goes through the engine (``ctx.act``): read-only ones run, state-changing ones wait for a
decision, and a rejection is told to the model as the tool's answer. Each model turn is durable
(``ctx.model``), so a paused or crashed worker resumes its conversation without asking again.
"""

from __future__ import annotations

import json
from typing import Any

from ..adapters.models import ModelCall, function_name
from ..errors import StepError, suggest
from ..mission import Step
from ..mission.shapes import worker_output
from . import StepContext

MAX_REPAIRS = 2
DEFAULT_MAX_TURNS = 10


def answer_schema(output: dict) -> dict:
    return {
        "type": "object",
        "required": ["reasoning", "output"],
        "properties": {
            "reasoning": {"type": "string", "description": "Briefly, why you concluded what you did."},
            "output": output,
        },
    }


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    # the engine opens these doors for every worker step
    assert ctx.model is not None and ctx.act is not None and ctx.resolve_model is not None
    model, settings = ctx.resolve_model(spec.get("model"))
    settings = {**settings, **{k: spec[k] for k in ("temperature", "max_tokens") if k in spec}}
    schema = answer_schema(worker_output(spec))
    tools, names = await _tools(spec.get("tools") or [], ctx)
    rendered = ctx.render(spec.get("input"), "worker.input")
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": (
            f"{spec['instructions'].strip()}\n\nAnswer with one JSON object only, of this JSON Schema:\n"
            f"{json.dumps(schema)}\nPut a short explanation of your conclusion in 'reasoning' and the answer "
            f"itself in 'output'." + ("\nUse the tools offered when you need facts from them." if tools else ""))},
        {"role": "user", "content": rendered if isinstance(rendered, str) else json.dumps(rendered, indent=1)},
    ]
    max_turns = spec.get("max_turns", DEFAULT_MAX_TURNS)
    repairs = 0
    for _turn in range(max_turns):
        reply = await ctx.model(ModelCall(model, list(messages), schema, tools, settings))
        if reply["tool_calls"]:
            if (reply["content"] or "").strip():  # what the model said on a turn where it calls tools
                ctx.emit(f"thinking: {reply['content'].strip()}", reasoning=reply["content"].strip())
            messages.append({"role": "assistant", "content": reply["content"] or "", "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in reply["tool_calls"]]})
            for call in reply["tool_calls"]:
                target = names.get(call["name"])
                if target is None:
                    result = _not_offered(step, call["name"], names, bool(reply.get("replayed")), ctx)
                else:
                    result = await ctx.act(target, call["arguments"])
                    ctx.emit(f"{target} → {_short(result)}", tool=target)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
            continue
        answer, problems = _parse(reply["content"], schema)
        if answer is not None and not problems:
            ctx.emit(f"reasoning: {answer['reasoning']}", reasoning=answer["reasoning"])
            return answer["output"]
        if repairs >= MAX_REPAIRS:
            raise StepError("invalid_output", f"the model's answer still did not fit the output schema after "
                            f"{MAX_REPAIRS} repairs ({problems}); its last answer: {(reply['content'] or '')[:400]}")
        repairs += 1
        ctx.emit(f"the answer did not fit the output schema ({problems}); asking the model to repair it")
        messages.append({"role": "assistant", "content": reply["content"] or ""})
        messages.append({"role": "user", "content": f"That answer does not fit the required JSON Schema: {problems}. "
                                                    "Reply again with only the corrected JSON object."})
    raise StepError("model_error", f"the worker reached its limit of {max_turns} model turns without a final answer")


async def _tools(targets: list[str], ctx) -> tuple[list, dict]:
    specs, names = [], {}
    for target in targets:
        integration, tool = target.split(".", 1)
        info = await ctx.ports.tools.describe(integration, tool) or {}
        name = function_name(target)
        names[name] = target
        specs.append({"type": "function", "function": {
            "name": name, "description": f"{target}: {info.get('description') or 'a tool of ' + integration}",
            "parameters": info.get("input_schema") or {"type": "object", "properties": {}}}})
    return specs, names


def _not_offered(step: Step, name: str, names: dict, replayed: bool, ctx) -> dict:
    """A call to a tool the worker was not offered is never made. A model is told so, as the tool's answer
    (it may correct itself), and the rail says so; in a replay it is a mistake of the file: the step fails."""
    wrote = name.replace("__", ".", 1)  # the model sees erp.check_budget as erp__check_budget
    offered = list(names.values())
    if replayed:
        raise StepError("model_error", f"the replay file calls the tool '{wrote}', which step '{step.id}' was not "
                        f"offered (its tools: {', '.join(offered) or 'none'}){suggest(wrote, offered)}; "
                        "check the file with studiox validate MISSION --replay FILE")
    ctx.emit(f"{wrote} was not called: it is not one of this worker's tools; the model is told so", tool=wrote)
    return {"error": f"there is no tool '{name}'; the tools are {', '.join(names)}"}


def _short(value, width: int = 160) -> str:
    text = " ".join(json.dumps(value, ensure_ascii=False).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse(content: str | None, schema: dict) -> tuple[dict | None, str | None]:
    import jsonschema

    text = (content or "").strip()
    if text.startswith("```"):  # some models fence their JSON
        text = text.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(text, strict=False)  # (a raw newline inside a string: small models write them)
    except json.JSONDecodeError as e:
        return None, f"it is not JSON ({e.msg})"
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(answer), key=lambda e: list(e.path))
    if errors:
        return None, "; ".join(f"{'.'.join(map(str, e.absolute_path)) or 'the answer'}: {e.message}"
                               for e in errors[:5])
    return answer, None
