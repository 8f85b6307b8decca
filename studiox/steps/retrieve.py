"""``retrieve``: the passages of a knowledge source that best answer a query, with citations."""

from __future__ import annotations

from typing import Any

from ..errors import StepError
from ..mission import Step
from . import StepContext


async def execute(step: Step, ctx: StepContext) -> Any:
    spec = step.spec
    query = ctx.render(spec["query"])
    if not isinstance(query, str) or not query.strip():
        raise StepError("expression", f"the query must be text, not {query!r}")
    passages = await ctx.ports.knowledge.search(spec["from"], query, spec.get("top", 3))
    if passages:
        ctx.emit(f"found {len(passages)} passage(s) for '{query}': " + ", ".join(p["citation"] for p in passages),
                 citations=[p["citation"] for p in passages])
    else:
        ctx.emit(f"nothing in '{spec['from']}' matches '{query}'")
    return {"query": query, "passages": passages, "citations": [p["citation"] for p in passages],
            "text": "\n\n".join(f"[{p['citation']}]\n{p['text']}" for p in passages)}
