"""Sending one message to one target: a webhook, a command, or mail over SMTP.

Each sender returns None when the message was delivered, else why not, in words (the ledger keeps
it). Nothing a sender meets escapes it: an HTTP error, a program that is missing or fails, an SMTP
server that refuses are all a reason to try again later.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

from .messages import mail_body, mail_subject

__all__ = ["COMMAND_TIME_LIMIT", "SMTP_TIME_LIMIT", "WEBHOOK_TIME_LIMIT", "send"]

WEBHOOK_TIME_LIMIT = 10.0
COMMAND_TIME_LIMIT = 30.0
SMTP_TIME_LIMIT = 30.0
_SAID = 300  # characters of a reply or of a program's stderr kept as the reason


def send(entry: dict, message: dict) -> str | None:
    """Deliver ``message`` as ``entry`` says; None when delivered, else the reason it was not."""
    try:
        if "webhook" in entry:
            return _webhook(entry["webhook"], message)
        if "command" in entry:
            return _command(list(entry["command"]), message)
        return _email(entry["email"], message)
    except Exception as e:  # noqa: BLE001 - a failed delivery is retried, never the notifier's end
        return f"{type(e).__name__}: {e}"


def _webhook(url: str, message: dict) -> str | None:
    """POST the message as JSON; any 2xx answer is delivery."""
    import httpx

    try:
        reply = httpx.post(url, json=message, timeout=WEBHOOK_TIME_LIMIT, follow_redirects=False,
                           headers={"user-agent": "studiox-notify"})
    except httpx.TimeoutException:
        return f"no answer within {WEBHOOK_TIME_LIMIT:g} s"
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    if 200 <= reply.status_code < 300:
        return None
    said = " ".join(reply.text.split())[:_SAID]
    return f"HTTP {reply.status_code}" + (f": {said}" if said else "")


def _command(argv: list[str], message: dict) -> str | None:
    """Run the program (never through a shell) with the message as JSON on stdin; exit 0 is delivery.
    Past its time limit it is killed with everything it started (its own process group)."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, encoding="utf-8", errors="replace", start_new_session=True)
    except FileNotFoundError:
        return f"no program {argv[0]} (give its full path, or put it on PATH)"
    except PermissionError:
        return f"{argv[0]} may not be run (is it executable?)"
    try:
        _, stderr = process.communicate(json.dumps(message, ensure_ascii=False), timeout=COMMAND_TIME_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # a child it left holding stderr would keep us waiting
        process.wait()
        for pipe in (process.stdin, process.stderr):
            if pipe is not None:
                pipe.close()
        return f"{argv[0]} did not finish within {COMMAND_TIME_LIMIT:g} s (it was stopped)"
    if process.returncode == 0:
        return None
    said = " ".join(stderr.split())[-_SAID:]
    code = process.returncode
    ended = f"exit {code}" if code > 0 else f"killed by signal {-code}"
    return f"{argv[0]} ended with {ended}" + (f": {said}" if said else "")


def _email(spec: dict, message: dict) -> str | None:
    """Mail the message to its recipients through the SMTP server the entry names (default localhost:25)."""
    import smtplib
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["Subject"] = mail_subject(message)
    mail["From"] = spec.get("from") or f"studiox@{socket.gethostname()}"
    mail["To"] = ", ".join(spec["to"])
    mail.set_content(mail_body(message))
    host, port = spec.get("host") or "localhost", spec.get("port") or 25
    try:
        with smtplib.SMTP(host, port, timeout=SMTP_TIME_LIMIT) as smtp:
            smtp.send_message(mail)  # recipients refused while others took it: delivered all the same
    except smtplib.SMTPRecipientsRefused as e:
        return f"{host}:{port} refused every recipient: {', '.join(e.recipients)}"
    except (smtplib.SMTPException, OSError) as e:
        return f"{host}:{port}: {type(e).__name__}: {e}"
    return None
