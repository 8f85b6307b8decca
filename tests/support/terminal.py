"""Drive a command in a real pseudo-terminal: type into it and read its screen output."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import termios
import time

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, so ^C becomes SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    def __init__(self, argv: list[str], env: dict):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"},
                                     close_fds=True, preexec_fn=_controlling_terminal)
        os.close(slave)
        self.screen = ""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536).decode(errors="replace")
            except OSError:  # the process closed the terminal
                return
            self.screen += _ANSI.sub("", chunk)

    def expect(self, text: str, timeout: float = 20, times: int = 1) -> str:
        """Wait until ``text`` has appeared on the screen (``times`` times); return the screen so far."""
        deadline = time.time() + timeout
        while self.screen.count(text) < times:
            if time.time() > deadline:
                raise AssertionError(f"{text!r} did not appear; the screen shows:\n{self.screen}")
            self._read(0.1)
        return self.screen

    def settle(self, seconds: float) -> str:
        """Keep reading for ``seconds`` (to see that nothing more happens); return the screen so far."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self._read(min(0.1, max(deadline - time.time(), 0)))
        return self.screen

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self._read(0.1)
        self._read(0.1)
        code = self.proc.wait(max(0.1, deadline - time.time()))
        os.close(self.master)
        return code
