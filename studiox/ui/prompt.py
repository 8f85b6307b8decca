"""The Decision Queue at a terminal: show the pending action, ask approve / edit / reject / defer.

Typed words or single letters; an empty answer defers, never approves. Only used when standard
input and output are terminals; otherwise a run parks and prints how to decide later.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..governance import APPROVED, REJECTED, Decision, DecisionError, DecisionQueue, edited_action, os_user
from .rail import clip

VALUE_WIDTH = 500  # an argument's value in the panel; the whole is in 'studiox decision show ID --json'

CHOICES = {"a": "approve", "approve": "approve", "e": "edit", "edit": "edit", "r": "reject", "reject": "reject",
           "d": "defer", "defer": "defer", "": "defer"}


def panel(decision: Decision) -> Panel:
    """The pending action as people read it: what, with which arguments, why, and the evidence."""
    request = decision.request
    action = request["action"]
    arguments = Table("argument", "value", box=None, header_style="bold", pad_edge=False)
    cut = False
    for name, value in action["arguments"].items():
        text = _text(value)
        cut = cut or len(text) > VALUE_WIDTH
        arguments.add_row(escape(clip(name, 80)), escape(clip(text, VALUE_WIDTH)))
    parts: list = [f"[bold]{escape(action['target'])}[/] wants to run (step {escape(request['step'])}, "
                   f"run {request['run']})", arguments]
    if cut:
        parts.append(f"[dim](long values are cut here; see them whole with: studiox decision show {decision.id} "
                     "--json)[/]")
    if request.get("explain"):
        parts.append(f"[italic]{escape(clip(request['explain'], VALUE_WIDTH))}[/]")
    if request.get("evidence"):
        evidence = "\n".join(f"· {escape(e['step'])}: {escape(clip(e['message']))}" for e in request["evidence"][-5:])
        parts.append(f"[dim]what led here:\n{evidence}[/]")
    return Panel(Group(*parts), title=f"decision needed · {decision.id}", border_style="yellow")


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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


def ask(decision: Decision, queue: DecisionQueue, *, console: Console, read: Callable[[str], str] = input,
        flush: Callable[[], None] = flush_typed_ahead) -> None:
    """Ask a person at the terminal; records their decision in ``queue``, or returns having deferred.

    ``read`` asks one question and ``flush`` discards what was typed before the card was drawn:
    doors for tests, which drive the prompt without a terminal.
    """
    console.print(panel(decision))
    console.file.flush()
    flush()  # only keys typed after the card is on the screen answer it
    if decision.request.get("in_doubt"):
        return _ask_in_doubt(decision, queue, console=console, read=read)
    try:
        while True:
            answer = CHOICES.get(read("approve (a), edit (e), reject (r) or defer (d)? [defer] ").strip().lower())
            if answer is None:
                console.print("please answer a, e, r or d")
                continue
            if answer == "defer":
                console.print(f"deferred: decide later with 'studiox approve {decision.id}' or 'studiox reject "
                              f"{decision.id} --reason ...'")
                return
            if answer == "reject":
                _reject(decision, queue, read)
                console.print(f"[red]rejected[/] {decision.id}")
                return
            action = None
            if answer == "edit":
                action = _edit(decision, console, read)
                if action is None:
                    continue
            note = read("note (optional): ").strip() or None
            queue.decide(decision.id, APPROVED, by=os_user(), note=note, action=action)
            console.print(f"[green]approved[/] {decision.id}" + (" with edited arguments" if action else ""))
            return
    except EOFError:
        console.print("no answer (end of input): the decision is deferred")
    except DecisionError as e:  # decided meanwhile from another shell
        console.print(escape(str(e)))


def _reject(decision: Decision, queue: DecisionQueue, read) -> None:
    """A rejection needs a reason: ask until there is one."""
    reason = ""
    while not reason:
        reason = read("reason (required): ").strip()
    queue.decide(decision.id, REJECTED, by=os_user(), note=reason)


def _edit(decision: Decision, console: Console, read):
    """Ask for each argument's new value (empty keeps it); None when the edit does not fit the tool."""
    edits = {}
    for name, value in decision.request["action"]["arguments"].items():
        raw = read(f"  {name} [{clip(_text(value), 80)}]: ").strip()
        if raw:
            try:
                edits[name] = json.loads(raw)
            except ValueError:
                edits[name] = raw
    try:
        return edited_action(decision, edits)
    except DecisionError as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return None


def _ask_in_doubt(decision: Decision, queue: DecisionQueue, *, console: Console, read) -> None:
    """A cut-off call: did it happen (and with what result), or must it be called again?"""
    choices = {"h": "happened", "happened": "happened", "t": "retry", "retry": "retry", "r": "reject",
               "reject": "reject", "d": "defer", "defer": "defer", "": "defer"}
    try:
        while True:
            answer = choices.get(read("it happened (h), call it again (t), give up (r) or defer (d)? [defer] ")
                                 .strip().lower())
            if answer is None:
                console.print("please answer h, t, r or d")
            elif answer == "defer":
                console.print(f"deferred: decide later with 'studiox approve {decision.id} --happened|--retry'")
                return
            elif answer == "reject":
                _reject(decision, queue, read)
                return
            elif answer == "retry":
                queue.decide(decision.id, APPROVED, by=os_user(), resolution="retry")
                return
            else:
                raw = read("what did it return? (JSON or text, empty for nothing) ").strip()
                try:
                    result = json.loads(raw) if raw else None
                except ValueError:
                    result = raw
                queue.decide(decision.id, APPROVED, by=os_user(), resolution="happened", result=result)
                return
    except EOFError:
        console.print("no answer (end of input): the decision is deferred")
    except DecisionError as e:
        console.print(escape(str(e)))
