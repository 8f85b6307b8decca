"""The doors the engine opens for an AI Worker: durable model turns, budgets, the response cache,
gated tool calls and the choice of model.

A worker's conversation is made of model turns and tool results; both are journaled as they
happen (``model_call``, ``action_started``/``action_finished``), so a worker that parks for a
decision, or whose process dies, is re-run from its start on resume and every turn already done
is answered from the journal: the model is not asked again, a tool is not called again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

from ..adapters import local
from ..adapters.models import ModelCall
from ..adapters.ports import ANNOUNCE
from ..errors import StepError
from ..governance import Action, needs_decision
from ..mission import Step
from .acting import act_once
from .control import JournalMismatch, Rejected, RunView

_LIMITS = (("max_cost_usd", "cost", "US dollars"), ("max_tokens", "tokens", "tokens"),
           ("max_tool_calls", "tool_calls", "tool calls"))


class WorkerDoors:
    """Bound to one attempt of one worker step."""

    def __init__(self, run: RunView, step: Step, address: str, attempt: int, data: dict):
        self.run, self.step, self.address, self.attempt, self.data = run, step, address, attempt, data
        self.turn = 0
        self.sent = 0  # messages of the conversation already journaled with a turn
        self.calls = 0
        self.keys_used: dict[str, int] = {}
        self.journaled = [e for e in run.state.model_calls if e["step"] == address and e["attempt"] == attempt]
        self.prefix = address if attempt == 1 else f"{address}@{attempt}"

    # ------------------------------------------------------------------ models

    def resolve_model(self, name: str | None) -> tuple[str, dict]:
        """The litellm model and its settings: the step's own choice, else --model, else STUDIOX_MODEL
        (both as they were when the run started), else the mission's default model."""
        mission, options = self.run.mission, self.run.options
        chosen = name or options.get("model") or options.get("env_model")
        base = options.get("api_base") or options.get("env_api_base")  # --api-base, STUDIOX_API_BASE
        default = mission.default_model
        if chosen is None:
            if default is None:
                raise StepError("model_error", "no model: name one on the worker, in the mission's models, with "
                                "--model, or in STUDIOX_MODEL")
            model, settings = default.model, dict(default.settings)
        elif chosen in mission.models:
            model, settings = mission.models[chosen].model, dict(mission.models[chosen].settings)
        else:  # a model the mission does not name: the settings that do not belong to a provider still apply
            model = chosen
            settings = {k: v for k, v in (default.settings if default else {}).items() if k in KEPT_SETTINGS}
        if base and (name is None or chosen == options.get("model") or chosen == options.get("env_model")):
            settings["api_base"] = base  # the server given on the command line, for the model given there
        return model, settings

    async def model(self, call: ModelCall) -> dict:
        """One model turn: from the journal if it was already taken, else checked against the budget,
        answered from the cache or by the model, and journaled.

        A run with --replay never reads or writes the response cache, and a replayed reply is never
        cached: the cache is what real runs read, and a scripted answer must not pass for a model's.
        """
        index = self.turn
        self.turn += 1
        if index < len(self.journaled):
            journaled = self.journaled[index]
            if journaled.get("request") not in (None, call.fingerprint()):
                raise JournalMismatch(
                    f"the journal of run {self.run.run_id} does not match: model turn {index + 1} of step "
                    f"{self.address} was asked differently when it was journaled than studiox would ask it now, so "
                    "its journaled answer cannot be used; the run was left as it was (resume it with the studiox "
                    f"version that started it, {self.run.started_by})")
            self.sent = len(call.messages)
            return journaled["reply"]
        self.within_budget(("cost", "tokens"))
        replaying = bool(self.run.options.get("replay"))
        use_cache = not replaying and bool(self.step.spec.get("cache") or self.run.options.get("cache"))
        store = self.run.engine.store
        key = f"cache:{call.fingerprint()}"
        hit = store.cached(key) if use_cache else None
        if hit is not None and hit.get("replayed") is not False:
            hit = None  # written before replies said whether they were replayed: it may be a scripted answer
        cached = hit is not None
        if hit is not None:
            reply = hit
        else:
            if not local.is_local(call.model) or self.run.options.get("replay"):
                await self.client_loaded()
            announced = ANNOUNCE.set(self.announce)
            try:
                reply = await self.run.ports.models.complete(call, address=self.address, step_id=self.step.id,
                                                             index=index)
            finally:
                ANNOUNCE.reset(announced)
            if use_cache and not reply.get("replayed"):
                store.cache(key, reply)
        new_messages, self.sent = call.messages[self.sent:], len(call.messages)  # what this turn added (for `show`)
        event = self.run.journal.append(
            "model_call", step=self.address, attempt=self.attempt, index=index, request=call.fingerprint(),
            messages=new_messages,
            reply=reply, cached=cached, replayed=bool(reply.get("replayed")), model=reply["model"],
            input_tokens=reply["input_tokens"], output_tokens=reply["output_tokens"],
            cost_usd=0.0 if cached else reply["cost_usd"], latency_s=0.0 if cached else reply["latency_s"])
        self.run.state.model_calls.append(event)
        self.journaled.append(event)
        return reply

    def announce(self, message: str) -> None:
        """Say on the rail, now, what the step waits for (the journal commits it before the wait)."""
        self.run.emitter(self.address)(message)
        self.run.journal.flush()

    async def client_loaded(self) -> None:
        """If the model client is still being imported in the background, say so and wait; the wait is
        not the step's own work, so it is left out of the step's duration."""
        from ..adapters import preload

        if not preload.pending("litellm"):
            return
        self.announce("loading the model client (litellm)…")
        waited = await asyncio.to_thread(preload.wait, "litellm")
        self.run.excluded[self.address] = self.run.excluded.get(self.address, 0.0) + waited

    # ------------------------------------------------------------------ tools

    async def act(self, target: str, arguments: dict):
        """A tool call the model asked for: through the same gate as tool steps, exactly once.

        Returns the tool's result, or (told to the model) its error or a person's rejection. The
        call's idempotency key names the step and the call itself (tool and arguments), not the
        attempt: a retried worker that asks for a call an earlier attempt made gets the journaled
        result, and an idempotent server sees the same key.
        """
        self.calls += 1
        address = f"{self.prefix}/call{self.calls}"
        run = self.run
        done = run.state.actions.get(address)
        if done is not None and done["type"] == "action_finished":  # told to the model as it was the first time
            if done["ok"]:
                return done["result"]
            if done["error"]["kind"] == "rejected" and "reason" in done:
                return {"rejected": True, "reason": done["reason"]}
            return {"error": done["error"]["message"]}
        key = self.call_key(target, arguments)
        emit = run.emitter(self.address)
        earlier = run.state.action_keys.get(key)
        if earlier is not None and earlier["step"] != address and earlier["type"] == "action_finished" \
                and earlier["ok"]:
            emit(f"{target} with these arguments was already made by an earlier attempt ({earlier['step']}): its "
                 "journaled result is used, the call is not made again")
            return earlier["result"]
        integration, tool = target.split(".", 1)
        info = await run.ports.tools.describe(integration, tool) or {}
        action = Action("tool", target, arguments, read_only=bool(info.get("read_only")),
                        input_schema=info.get("input_schema"), idempotent=bool(info.get("idempotent")))
        if (misfit := action.misfit()) is not None:
            emit(f"{target} was not called: {misfit}; the model is told so")
            return {"error": misfit}
        self.within_budget(("tool_calls",))
        if needs_decision(_no_required(self.step), action):
            try:
                action = run.gate.check(self.step, address, action, self.data)
            except Rejected as r:
                why = r.applied.get("note") or "no reason given"
                emit(f"{target} was {r.applied['status']} by {r.applied['by']}: the model is told so")
                run.state.note_action(run.journal.append(
                    "action_finished", step=address, key=key, ok=False, reason=why,
                    error={"kind": "rejected", "message": f"a person rejected this call: {why}"}))
                return {"rejected": True, "reason": why}
        emit(f"calling {target}", arguments=action.arguments)

        async def call():
            return await run.ports.tools.call(integration, tool, action.arguments, key=key)

        try:
            return await act_once(run, self.step, address, action, call, key=key, emit=emit)
        except StepError as e:
            if e.outcome_unknown:
                raise  # a cut-off state-changing call is the engine's business, not the model's
            return {"error": e.message}

    def call_key(self, target: str, arguments: dict) -> str:
        """``RUN/STEP/TOOL#DIGEST`` (``MISSION/KEY/…`` with a business key), ``~N`` for the N-th identical
        call within one attempt."""
        digest = hashlib.sha256(json.dumps([target, arguments], sort_keys=True).encode()).hexdigest()[:12]
        key = f"{self.run.key_scope or self.run.run_id}/{self.address}/{target}#{digest}"
        self.keys_used[key] = self.keys_used.get(key, 0) + 1
        return key if self.keys_used[key] == 1 else f"{key}~{self.keys_used[key]}"

    # ------------------------------------------------------------------ budgets

    def within_budget(self, kinds: tuple[str, ...]) -> None:
        """Before a model or tool call: a used-up budget asks a person whether to go on, and by how much."""
        for scope, budget in (("mission", self.run.mission.budget), ("step", self.step.budget)):
            for limit_name, kind, unit in _LIMITS:
                if kind not in kinds or not budget or budget.get(limit_name) is None:
                    continue
                # a raise smaller than the overshoot asks again, until the budget covers what was spent
                while (spent := self.spent(scope)[kind]) >= (limit := budget[limit_name] +
                                                            self.extensions(scope, limit_name)):
                    self.ask_for_more(scope, limit_name, unit, limit, spent, budget[limit_name])

    def spent(self, scope: str) -> dict:
        calls = self.run.state.model_calls
        if scope == "step":
            calls = [e for e in calls if e["step"] == self.address]
        # every tool call a worker made is journaled under "STEP/callN" (or "STEP@ATTEMPT/callN")
        made = [k for k in self.run.state.actions if "/call" in k]
        if scope == "step":
            made = [k for k in made if k.split("/call")[0].split("@")[0] == self.address]
        return {"cost": round(sum(e.get("cost_usd") or 0.0 for e in calls), 6),
                "tokens": sum((e["input_tokens"] or 0) + (e["output_tokens"] or 0) for e in calls),
                "tool_calls": len(made)}

    def extensions(self, scope: str, limit_name: str) -> float:
        slot = self.slot(scope, limit_name)
        return sum(e["action"]["arguments"]["raise_by"] for k, e in self.run.state.decided.items()
                   if k.startswith(slot) and e["status"] == "approved")

    def slot(self, scope: str, limit_name: str) -> str:
        return f"budget:{'mission' if scope == 'mission' else self.address}:{limit_name}:"

    def ask_for_more(self, scope: str, limit_name: str, unit: str, limit: float, spent: float, step_size) -> None:
        run = self.run
        number = 1 + sum(1 for k in run.state.decided if k.startswith(self.slot(scope, limit_name)))
        slot = f"{self.slot(scope, limit_name)}{number}"
        action = Action("budget", f"{scope} budget: {limit_name}", {
            "limit": limit, "spent": spent, "raise_by": step_size})
        run.emitter(self.address)(f"the {scope}'s budget of {limit:g} {unit} is used up ({spent:g}); asking "
                                  "whether to go on")
        try:
            run.gate.decide_slot(self.step, self.address, action, slot,
                                 explain=f"The {scope}'s budget ({limit_name} = {limit:g} {unit}) is used up: {spent:g} "
                                         f"so far. Approve to allow {step_size:g} more (change it with --set "
                                         "raise_by=N), or reject to stop the run here.")
        except Rejected as r:
            why = r.applied.get("note") or "no reason given"
            raise StepError("budget", f"the {scope}'s budget ({limit_name} {limit:g}) is used up ({spent:g}) and "
                            f"{r.applied['by']} declined to raise it: {why}") from None


def _no_required(step: Step) -> Step:
    """A worker's tool calls are gated by what they do; 'approval: required' gates the worker itself."""
    from dataclasses import replace

    if step.approval is None or not step.approval.required:
        return step
    return replace(step, approval=replace(step.approval, required=False))


KEPT_SETTINGS = ("temperature", "max_tokens", "timeout", "deadline", "structured_output", "system_role")


def env_model() -> str | None:
    """STUDIOX_MODEL, read when a run starts."""
    return os.environ.get("STUDIOX_MODEL") or None


def env_api_base() -> str | None:
    """STUDIOX_API_BASE, read when a run starts: the server of STUDIOX_MODEL (or --model)."""
    return os.environ.get("STUDIOX_API_BASE") or None
