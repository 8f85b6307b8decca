"""The Decision Queue at a terminal: the decision's card, and deliberate answers to it.

Only used when standard input and output are terminals; otherwise a run parks and prints how to
decide later. Answers are deliberate: keys typed before the card was drawn are discarded, an empty
answer defers, and nothing consequential is recorded until the person types a confirmation word
in full after reading a restatement of what will happen.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..edits import edited_action
from ..governance import (
    APPROVED,
    PENDING,
    REJECTED,
    Action,
    Decision,
    DecisionError,
    DecisionQueue,
    os_user,
)
from ..values import human, parse_field
from .rail import clip, short, when

VALUE_WIDTH = 500  # an argument's value in the card; the whole is in 'studiox decision show ID --json'
LONG_TEXT = 80  # a text longer than this (or with several lines) may be edited in $EDITOR

CHOICES = {"a": "approve", "approve": "approve", "e": "edit", "edit": "edit", "r": "reject", "reject": "reject",
           "d": "defer", "defer": "defer", "": "defer"}
STATUS_STYLE = {PENDING: "yellow", APPROVED: "green", REJECTED: "red"}

Read = Callable[[str], str]


# ---------------------------------------------------------------- the card


def _wrapping(*parts: str | tuple[str, str]) -> Text:
    """Text that wraps at any width, and folds a word too long for a line rather than cutting it.

    Explicit, because the CLI's consoles print with soft wrap (no wrapping) for plain lines.
    """
    text = Text.assemble(*parts, overflow="fold", no_wrap=False)
    text.no_wrap = False
    return text


def _value(value) -> tuple[str, bool]:
    """An argument's value for the card, and whether it had to be cut (beyond ``VALUE_WIDTH``)."""
    text = human(value) if not isinstance(value, str) else value
    return clip(text, VALUE_WIDTH), len(text) > VALUE_WIDTH


def _arguments_table(arguments: dict, proposed: dict | None = None) -> tuple[Table, bool]:
    """Argument → value; with ``proposed``, a changed value reads 'from → to'."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("argument", overflow="fold")
    table.add_column("value", overflow="fold")
    cut = False
    for name, value in arguments.items():
        shown, long = _value(value)
        cut = cut or long
        cell = _wrapping(shown)
        if proposed is not None and _changed(proposed, name, value):
            before, long = _value(proposed[name]) if name in proposed else ("(none)", False)
            cut = cut or long
            cell = _wrapping((before, "strike dim"), " → ", (shown, "bold"), (" (edited)", "yellow"))
        table.add_row(_wrapping(clip(name, 80)), cell)
    return table, cut


def _changed(proposed: dict, name: str, value) -> bool:
    # 1700 and 1700.0 are equal in Python but not in the approval's digest: compare as JSON
    return name not in proposed or json.dumps(proposed[name], sort_keys=True) != json.dumps(value, sort_keys=True)


def panel(decision: Decision) -> Panel:
    """The decision as people read it, wrapped (never cut) at any width.

    Pending: what wants to run, with which arguments, why, and the evidence. Decided: who decided,
    when and why, and for an approval the arguments approved, each edited one shown from → to.
    """
    request, outcome, status = decision.request, decision.outcome, decision.status
    action = request["action"]
    key = f", {request['key']}" if request.get("key") else ""
    parent = request.get("parent")
    serves = f", for run {parent['run']} at its step {parent['step']}" if parent else ""
    where = f"(step {request['step']}, run {request['run']}{key}{serves}, decision {decision.id})"  # the title may be cut
    parts: list[RenderableType] = []
    if request.get("title") or request.get("description"):
        parts.append(_wrapping((request.get("title") or "", "bold"),
                               f" — {request['description']}" if request.get("description") else ""))
    if status == PENDING:
        parts.append(_wrapping((action["target"], "bold"), f" wants to run {where}"))
    else:
        parts.append(_wrapping((action["target"], "bold"), f" {where}"))
        parts.append(_outcome_text(decision))
    if outcome and outcome.get("action"):
        arguments, cut = _arguments_table(outcome["action"]["arguments"], outcome.get("proposed_arguments"))
        parts.append(_wrapping(("approved arguments", "bold")))
    else:
        arguments, cut = _arguments_table(action["arguments"])
        if status != PENDING:
            parts.append(_wrapping(("proposed arguments", "bold")))
    parts.append(arguments)
    if cut:
        parts.append(_wrapping((f"(long values are cut here; see them whole with: studiox decision show "
                                f"{decision.id} --json)", "dim")))
    if request.get("explain"):
        parts.append(_wrapping((clip(request["explain"], VALUE_WIDTH), "italic")))
    if request.get("shown"):
        parts.append(_wrapping(("what to check:", "bold")))
        parts += [_wrapping(f"· {s['label']}: ", (clip(human(s['value']) if not isinstance(s['value'], str)
                                                         else s['value']), "red" if s.get("failed") else ""))
                  for s in request["shown"]]
    if request.get("evidence"):
        asked = request.get("requested_at")
        parts.append(_wrapping(("what it rests on:", "dim")))
        parts += [_wrapping((f"· {e.get('title') or e['step']}{_age(e.get('at'), asked)}: {clip(e['message'])}", "dim"))
                  for e in request["evidence"][:8]]
    if status == PENDING and request.get("expires_at"):
        parts.append(_wrapping((f"decide before {when(request['expires_at'])}; after that it expires", "yellow")))
    title = "decision needed" if status == PENDING else f"decision {status}"
    return Panel(Group(*parts), title=f"{title} · {decision.id}", border_style=STATUS_STYLE.get(status, "dim"))


def _age(at: float | None, asked: float | None) -> str:
    """How old a piece of evidence was when the decision was asked: ' (3 min before)'."""
    if at is None or asked is None:
        return ""
    from .rail import seconds

    return f" ({seconds(max(asked - at, 0))} before)"


def _outcome_text(decision: Decision) -> Text:
    """Who decided, when, and what they said (or why no one did)."""
    outcome = decision.outcome
    if outcome is None:
        why = f"its run has {decision.run_ended}" if decision.run_ended else "its time limit has passed"
        return _wrapping((f"not decided, and never will be: {why}", "dim"))
    by = outcome["by"] + (f" (claimed: {outcome['claimed_by']})" if outcome.get("claimed_by") else "")
    parts: list[str | tuple[str, str]] = [(outcome["status"], f"bold {STATUS_STYLE.get(outcome['status'], '')}"),
                                          f" by {by} at {when(outcome['at'])}"]
    if outcome.get("edited"):
        parts.append(" with edited arguments")
    if outcome.get("resolution") == "happened":
        parts.append(f": it happened, and returned {short(outcome.get('result'), 200)}")
    elif outcome.get("resolution") == "retry":
        parts.append(": call it again")
    if outcome.get("note"):
        parts.append(f" — {clip(outcome['note'])}")
    return _wrapping(*parts)


# ---------------------------------------------------------------- asking


def flush_typed_ahead() -> None:
    """Discard the keys typed before a question was shown (standard input, when it is a terminal).

    Keys pressed while a mission was still running sit in the terminal's input buffer; read as
    answers, an ``a`` Enter typed early would approve a card nobody had seen yet.
    """
    try:
        import termios
    except ImportError:  # not a POSIX terminal (Windows): nothing to discard this way
        return
    try:
        if sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
    except (OSError, ValueError, termios.error):  # standard input closed or not a terminal after all
        pass


def open_editor(text: str) -> str:
    """``text`` edited in $VISUAL or $EDITOR (ValueError when neither is set or the editor fails)."""
    command = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not command:
        raise ValueError("$EDITOR is not set")
    with tempfile.TemporaryDirectory(prefix="studiox-") as folder:
        path = Path(folder) / "value.txt"
        path.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(command), str(path)], check=False)
        except OSError as e:
            raise ValueError(f"could not start the editor '{command}': {e.strerror}") from None
        if done.returncode != 0:
            raise ValueError(f"the editor '{command}' exited with status {done.returncode}")
        edited = path.read_text(encoding="utf-8")
    return edited[:-1] if edited.endswith("\n") and not text.endswith("\n") else edited  # editors add one


class _Asker:
    """One conversation about one decision: the doors (read, flush, editor) and the console."""

    def __init__(self, decision: Decision, queue: DecisionQueue, console: Console, read: Read,
                 flush: Callable[[], None], edit_text: Callable[[str], str]):
        self.decision, self.queue, self.console = decision, queue, console
        self.read, self.flush, self.edit_text = read, flush, edit_text

    def confirm(self, word: str, restatement: str) -> bool:
        """Restate what will happen and require ``word`` typed in full; anything else goes back."""
        self.console.print(_wrapping((f"{word}: ", "bold"), restatement))
        self.console.file.flush()
        self.flush()
        if self.read(f"type {word} to confirm (anything else goes back): ").strip().lower() == word:
            return True
        self.console.print(f"not confirmed: nothing was decided ({self.decision.id} is still pending)")
        return False

    def reject(self) -> None:
        """A rejection needs a reason: ask until there is one."""
        reason = ""
        while not reason:
            reason = self.read("reason (required): ").strip()
        self.queue.decide(self.decision.id, REJECTED, by=os_user(), note=reason)
        self.console.print(f"[red]rejected[/] {self.decision.id}")

    def deferred(self, how: str) -> None:
        self.console.print(f"deferred: decide later with {how}")

    def menu(self) -> None:
        decision = self.decision
        proposed = decision.request["action"]
        while True:
            answer = CHOICES.get(self.read("approve (a), edit (e), reject (r) or defer (d)? [defer] ").strip().lower())
            if answer is None:
                self.console.print("please answer a, e, r or d")
                continue
            if answer == "defer":
                return self.deferred(f"'studiox approve {decision.id}' or 'studiox reject {decision.id} "
                                     "--reason ...'")
            if answer == "reject":
                return self.reject()
            action = None
            if answer == "edit":
                edited, action = self.edit()
                if not edited:
                    continue
            note = self.read("note (optional): ").strip() or None
            arguments = action.arguments if action else proposed["arguments"]
            if not self.confirm("approve", restate(proposed, arguments)):
                continue
            decided = self.queue.decide(decision.id, APPROVED, by=os_user(), note=note, action=action)
            if decided.outcome is None:  # a quorum: more people must approve
                self.console.print(f"{decision.id}: {escape(decided.progress or 'your approval is recorded')}")
                return
            self.console.print(f"[green]approved[/] {decision.id}" + (" with edited arguments" if action else ""))
            return

    def edit(self) -> tuple[bool, Action | None]:
        """Ask field by field (empty keeps a value): (True, the edited action, or None when nothing
        changed), or (False, None) to go back to the menu.

        Each answer is read by the field's type and checked against the tool's input schema at
        once, so only a field that does not fit is asked again; the whole set is checked again by
        :func:`edited_action`. The changes are shown from → to before the confirmation.
        """
        decision = self.decision
        proposed = decision.request["action"]
        if proposed["kind"] == "step":
            self.console.print(f"a step's approval ({proposed['target']}) has no arguments to correct: approve or "
                               "reject it as it is")
            return False, None
        schema = decision.request.get("input_schema")
        if proposed["kind"] == "budget":  # only how much more to allow can change
            schema = {"type": "object", "properties": {"raise_by": {"type": "number", "exclusiveMinimum": 0}}}
            names = ["raise_by"]
        else:
            required = [n for n in (schema or {}).get("required", []) if n not in proposed["arguments"]]
            names = [*proposed["arguments"], *required]
        arguments = dict(proposed["arguments"])
        for name in names:
            value = self.field(name, arguments, schema)
            if name in arguments or value is not None:  # a missing field left empty stays missing
                arguments[name] = value
        edits = {n: v for n, v in arguments.items() if _changed(proposed["arguments"], n, v)}
        if not edits:
            self.console.print("nothing changed: the action as proposed")
            return True, None
        try:
            action = edited_action(decision, edits)
        except DecisionError as e:
            self.console.print(str(e), style="red", markup=False)
            return False, None
        changes = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("argument", "from", "to"):
            changes.add_column(column, overflow="fold")
        for name, value in edits.items():
            before = human(proposed["arguments"][name]) if name in proposed["arguments"] else "(none)"
            changes.add_row(_wrapping(name), _wrapping(clip(before, VALUE_WIDTH)), _wrapping(clip(human(value),
                                                                                                 VALUE_WIDTH)))
        self.console.print(changes)
        return True, action

    def field(self, name: str, arguments: dict, schema: dict | None):
        """One field's new value: asked until it fits the schema (empty keeps the current one)."""
        current = arguments.get(name)
        sub = ((schema or {}).get("properties") or {}).get(name)
        long_text = isinstance(current, str) and (len(current) > LONG_TEXT or "\n" in current)
        while True:
            hint = " (e: edit it in $EDITOR)" if long_text else ""
            shown = short(human(current), 60) if name in arguments else ""
            raw = self.read(f"  {name} [{shown}]{hint}: ")
            if not raw.strip():
                return current
            try:
                if long_text and raw.strip().lower() == "e":
                    value = self.edit_text(str(current))
                else:
                    value = parse_field(raw, sub, current)
            except ValueError as e:
                self.console.print(f"  {name}: {e}", markup=False, highlight=False)
                if long_text and raw.strip().lower() == "e":
                    self.console.print("  type the new value here instead (on one line)")
                    long_text = False
                continue
            problems = _field_problems(schema, {**arguments, name: value}, name)
            if not problems:
                return value
            self.console.print(f"  {name}: {problems}", markup=False, highlight=False)

    def in_doubt(self) -> None:
        """A cut-off call: did it happen (and with what result), or must it be called again?"""
        decision = self.decision
        action = decision.request["action"]
        choices = {"h": "happened", "happened": "happened", "t": "retry", "retry": "retry", "r": "reject",
                   "reject": "reject", "d": "defer", "defer": "defer", "": "defer"}
        while True:
            answer = choices.get(self.read("it happened (h), call it again (t), give up (r) or defer (d)? [defer] ")
                                 .strip().lower())
            if answer is None:
                self.console.print("please answer h, t, r or d")
            elif answer == "defer":
                return self.deferred(f"'studiox approve {decision.id} --happened|--retry'")
            elif answer == "reject":
                return self.reject()
            elif answer == "retry":
                if self.confirm("retry", f"call {restate(action, action['arguments'])} again"):
                    self.queue.decide(decision.id, APPROVED, by=os_user(), resolution="retry")
                    return
            else:
                raw = self.read("what did it return? (JSON or text, empty for nothing) ").strip()
                try:
                    result = json.loads(raw) if raw else None
                except ValueError:
                    result = raw
                if self.confirm("happened", f"{action['target']} happened and returned {short(result, 200)}; it "
                                            "will not be called again"):
                    self.queue.decide(decision.id, APPROVED, by=os_user(), resolution="happened", result=result)
                    return


def _field_problems(schema: dict | None, arguments: dict, name: str) -> str:
    """Why the value of ``name`` does not fit the schema ('' when it does); other fields are not judged here."""
    if not schema:
        return ""
    import jsonschema

    errors = [e for e in jsonschema.Draft202012Validator(schema).iter_errors(arguments)
              if e.absolute_path and e.absolute_path[0] == name]
    return "; ".join(f"{'.'.join(map(str, list(e.absolute_path)[1:])) + ': ' if len(e.absolute_path) > 1 else ''}"
                     f"{e.message}" for e in errors)


def restate(action: dict, arguments: dict) -> str:
    """One line saying what will run: the target and each argument, an edited one as 'new (was old)'."""
    proposed = action["arguments"]
    parts = []
    for name, value in arguments.items():
        was = ""
        if _changed(proposed, name, value):
            was = f" (was {short(human(proposed[name]), 40)})" if name in proposed else " (new)"
        parts.append(f"{name} {short(human(value), 60)}{was}")
    target = f"step {action['target']}" if action["kind"] == "step" else action["target"]
    return f"{target} {' · '.join(parts)}" if parts else target


def ask(decision: Decision, queue: DecisionQueue, *, console: Console, read: Read = input,
        flush: Callable[[], None] = flush_typed_ahead, edit_text: Callable[[str], str] = open_editor) -> None:
    """Ask a person at the terminal; records their decision in ``queue``, or returns having deferred.

    ``read`` asks one question, ``flush`` discards what was typed before a question was shown, and
    ``edit_text`` edits a long text in the person's editor: doors for tests, which drive the prompt
    without a terminal.
    """
    console.print(panel(decision))
    console.file.flush()
    flush()  # only keys typed after the card is on the screen answer it
    asker = _Asker(decision, queue, console, read, flush, edit_text)
    try:
        if decision.request.get("in_doubt"):
            asker.in_doubt()
        else:
            asker.menu()
    except EOFError:
        console.print("no answer (end of input): the decision is deferred")
    except DecisionError as e:  # decided meanwhile from another shell
        console.print(str(e), markup=False)
