"""``retrieve``: the passages of a knowledge source that best answer a query, with citations."""

from __future__ import annotations

from typing import Any

from ..errors import StepError
from ..mission import Step
from . import StepContext

PASSAGE_PREVIEW = 200  # characters of a passage on the rail


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    query = ctx.render(spec["query"], "retrieve.query")
    if not isinstance(query, str) or not query.strip():
        raise StepError("expression", f"the query must be text, not {query!r}")
    where = ctx.render(spec.get("where"), "retrieve.where") or None
    if where is not None and not isinstance(where, dict):
        raise StepError("expression", f"where must be a mapping of fields to values, not {where!r}")
    knowledge = ctx.ports.knowledge
    passages = await knowledge.search(spec["from"], query, spec.get("top", 3), where) if where else \
        await knowledge.search(spec["from"], query, spec.get("top", 3))
    for note in getattr(knowledge, "notes", [])[:]:
        ctx.emit(note)
        knowledge.notes.remove(note)
    filtered = f" where {', '.join(f'{k} = {v}' for k, v in where.items())}" if where else ""
    if passages:
        ctx.emit(f"found {len(passages)} passage(s) for '{query}'{filtered}: "
                 + ", ".join(p["citation"] for p in passages), citations=[p["citation"] for p in passages])
        for p in passages:  # what each says, on the rail beside its citation (the output keeps it whole)
            ctx.emit(f"{p['citation']}: {_one_line(p['text'], PASSAGE_PREVIEW)}", citation=p["citation"])
    else:
        ctx.emit(f"no passage in '{spec['from']}' matches '{query}'{filtered}")
    return {"query": query, "passages": passages, "citations": [p["citation"] for p in passages],
            "text": "\n\n".join(f"[{p['citation']}]\n{p['text']}" for p in passages)}


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
