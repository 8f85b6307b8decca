"""What a mission will do and touch, step by step, before it runs (``studiox validate``)."""

from __future__ import annotations

from dataclasses import dataclass

from . import Mission, Step


@dataclass(frozen=True)
class PlanRow:
    number: str  # "3", or "4.1" for the first step inside a loop
    step: Step
    touches: str  # the model, tool or knowledge source the step reaches, if any
    notes: str  # conditions, retries, approvals


def plan(mission: Mission) -> list[PlanRow]:
    """The mission's steps in order, nested ones numbered under their loop or branch, and the steps
    of the missions its ``mission:`` steps run under those steps (what each will touch and gate)."""
    rows: list[PlanRow] = []

    def walk(owner: Mission, steps, prefix: str, seen: tuple[str, ...]) -> None:
        for i, step in enumerate(steps, 1):
            number = f"{prefix}{i}"
            rows.append(PlanRow(number, step, _touches(owner, step), _notes(step)))
            walk(owner, step.steps, number + ".", seen)
            for letter, (_, branch) in zip("abcdefghijklmnopqrstuvwxyz", step.branches, strict=False):
                walk(owner, branch, f"{number}{letter}.", seen)
            if step.kind == "mission":
                child = _child(owner, step, seen)
                if child is not None:
                    walk(child, child.steps, number + ".", (*seen, child.file))

    walk(mission, mission.steps, "", (mission.file,))
    return rows


def _child(mission: Mission, step: Step, seen: tuple[str, ...]) -> Mission | None:
    from . import load_once, submission_path

    path = submission_path(mission, step)
    if str(path) in seen or not path.is_file():
        return None  # (validation says why)
    try:
        return load_once(path)
    except Exception:  # noqa: BLE001 - an invalid child is reported by validation, not by the plan
        return None


def _touches(mission: Mission, step: Step) -> str:
    spec = step.spec
    if step.kind == "worker":
        name = spec.get("model")
        model = mission.models.get(name) if name else mission.default_model
        text = f"model {model.model}" if model else f"model {name}"
        if spec.get("tools"):
            text += "; tools " + ", ".join(spec["tools"])
        return text
    if step.kind == "tool":
        return f"tool {spec}"
    if step.kind == "retrieve":
        return f"knowledge {spec['from']}"
    if step.kind == "mission":
        return f"mission {spec}"
    return ""


def _notes(step: Step) -> str:
    notes = []
    if step.when is not None:
        notes.append("only when a condition holds")
    if step.kind == "foreach":
        notes.append(f"for each {step.item_name}, {step.concurrency} at a time")
    if step.kind == "parallel":
        names = [name for name, _ in step.branches]
        notes.append(f"branches {', '.join(names)} at once" + (f", {step.concurrency} at a time"
                                                             if step.concurrency < len(names) else ""))
    if step.kind == "mission":
        notes.append("a child run: its own journal and decisions; its steps below")
    if step.kind == "branch":
        targets = [c["goto"] for c in step.spec["cases"]] + [step.spec.get("otherwise") or "next"]
        notes.append("goes to " + " / ".join(targets))
    if step.kind == "finish":
        verdict = step.spec if isinstance(step.spec, str) else step.spec["verdict"]
        notes.append(f"ends the run: {verdict}")
    if step.kind == "fail":
        notes.append("ends the run as failed")
    if step.retry.attempts > 1:
        notes.append(f"up to {step.retry.attempts} attempts")
    if step.timeout:
        notes.append(f"time limit {step.timeout:g}s")
    if step.on_error.action != "fail":
        notes.append(f"on error: {step.on_error.goto or step.on_error.action}")
    if step.kind == "worker" and step.spec.get("tools"):
        notes.append("its state-changing tool calls need a decision")
    if step.kind == "worker" and (step.budget or step.spec.get("cache")):
        notes.append(", ".join(filter(None, ["budgeted" if step.budget else "", "cached" if step.spec.get("cache")
                                             else ""])))
    if step.approval and step.approval.required:
        notes.append("needs a human decision")
    elif step.kind == "tool" and step.trust == "read_only":
        notes.append("runs freely (trusted read-only)")
    elif step.kind == "tool":
        rule = " (or auto-approved by its rule)" if step.approval and step.approval.auto_approve_when else ""
        notes.append(f"needs a decision{rule} unless the integration marks the tool read-only")
    return "; ".join(notes)
