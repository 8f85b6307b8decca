"""Start an integration's server so that it cannot outlive studiox, and say how it ended.

    python _launch.py PARENT_PID [--pidfile FILE] [--redact NAME,...] COMMAND [ARGS...]

The launcher forks: the server runs in the child while the launcher waits for it. On Linux
each is asked to receive SIGKILL when its parent dies (PR_SET_PDEATHSIG, kept across exec), so
even ``kill -9`` of studiox leaves no server behind; elsewhere the server relies on seeing its
input close. When the server ends, the launcher writes one line to its stderr (the
integration's log), ``[studiox] the server exited with status N`` or ``[studiox] the server was
killed by signal NAME``, and exits with the same status; studiox reads that line to say why a
server went away. With ``--redact``, the server's stderr passes through the launcher, which masks
the values of those environment variables (secrets studiox gave the server) as ``***``. Run as a file, not as a module: it needs nothing imported.
"""

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
REPORT = "[studiox] "  # integrations.py tells the launcher's lines from the server's by this


def _die_with(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _report(text: str) -> None:
    os.write(2, f"{REPORT}{text}\n".encode())


def _copy_masked(source: int, secrets: list) -> None:
    """Copy the server's stderr to ours line by line, each secret replaced by ***, until it closes."""
    pending = b""
    while True:
        chunk = os.read(source, 65536)
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if not lines:
                continue
            text = b"\n".join(lines) + b"\n"
        else:
            text, pending = pending, b""
        for secret in secrets:
            text = text.replace(secret, b"***")
        os.write(2, text)
        if not chunk:
            return


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    _die_with(parent)
    launcher = os.getpid()
    if command[:1] == ["--pidfile"]:  # where studiox looks to kill a server busy with a call it abandoned
        with open(command[1], "w") as f:
            f.write(str(launcher))
        command = command[2:]
    secrets: list[bytes] = []
    if command[:1] == ["--redact"]:
        secrets = sorted((os.environ[n].encode() for n in command[1].split(",") if len(os.environ.get(n, "")) >= 6),
                         key=len, reverse=True)
        command = command[2:]
    pipe = os.pipe() if secrets else None
    child = os.fork()
    if child == 0:
        _die_with(launcher)
        if pipe is not None:
            os.dup2(pipe[1], 2)
            os.close(pipe[0])
            os.close(pipe[1])
        try:
            os.execvp(command[0], command)
        except OSError as e:
            _report("the program was not found" if isinstance(e, FileNotFoundError)
                    else f"the program could not be run: {e.strerror}")
            os._exit(127)
    os.close(0)  # only the server reads what studiox sends
    if pipe is not None:
        os.close(pipe[1])
        _copy_masked(pipe[0], secrets)
    # The launcher keeps its copy of the server's stdout open until the report is written, so
    # studiox sees the connection close only once the report is in the log.
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:  # a real-time signal has no name
            name = str(number)
        _report(f"the server was killed by signal {name}")
        os._exit(128 + number)
    code = os.waitstatus_to_exitcode(status)
    _report(f"the server exited with status {code}")
    os._exit(code)


if __name__ == "__main__":
    main()
