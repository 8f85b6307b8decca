"""What models a mission can use, and whether one answers: ``studiox models`` and ``models check``."""

from __future__ import annotations

import asyncio
import time

from .adapters import local


def listing(mission=None) -> list[dict]:
    """The mission's models (with their settings), then the local models found on this machine."""
    rows = []
    if mission is not None:
        for name, model in mission.models.items():
            settings = {k: v for k, v in model.settings.items() if k != "api_key"}
            where = settings.pop("api_base", None) or ("in process" if local.is_local(model.model) else "provider")
            rows.append({"name": name, "model": model.model, "default": model.default, "where": where,
                         "settings": settings, "source": "mission"})
    for found in local.available():
        rows.append({"name": None, "model": found["model"], "default": False, "where": "in process",
                     "settings": {}, "source": found["file"], "size": found["size"]})
    return rows


SCHEMA = {"type": "object", "required": ["reasoning", "output"], "properties": {
    "reasoning": {"type": "string", "maxLength": 200},
    "output": {"type": "object", "required": ["capital"], "properties": {"capital": {"type": "string", "maxLength": 40}}}}}


def check(model: str, *, api_base: str | None = None, settings: dict | None = None) -> dict:
    """One small structured call: does the model answer, in which mode, how fast, is it valid JSON."""
    import json

    from .adapters.models import LiteLLMModels, ModelCall
    from .errors import StepError

    settings = {**(settings or {}), **({"api_base": api_base} if api_base else {})}
    settings.setdefault("max_tokens", 256)
    settings.setdefault("deadline", 300)
    call = ModelCall(model, [{"role": "system", "content": "Answer with one JSON object only, of this JSON Schema:\n"
                                                            + json.dumps(SCHEMA)},
                             {"role": "user", "content": "What is the capital of France?"}], SCHEMA, [], settings)
    started = time.perf_counter()
    try:
        reply = asyncio.run(LiteLLMModels().complete(call, address="check", step_id="check", index=0))
    except StepError as e:
        return {"model": model, "ok": False, "error": e.message, "seconds": round(time.perf_counter() - started, 3)}
    try:
        answer = json.loads(reply.get("content") or "")
        valid = isinstance(answer, dict) and isinstance(answer.get("output"), dict) and "capital" in answer["output"]
    except ValueError:
        answer, valid = reply.get("content"), False
    return {"model": model, "ok": True, "valid_json": valid, "mode": reply.get("mode"), "answer": answer,
            "seconds": round(time.perf_counter() - started, 3), "input_tokens": reply.get("input_tokens"),
            "output_tokens": reply.get("output_tokens")}
