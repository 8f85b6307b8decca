"""Start an integration's server so that it cannot outlive studiox, and say how it ended.

    python _launch.py PARENT_PID [--pidfile FILE] COMMAND [ARGS...]

The launcher forks: the server runs in the child while the launcher waits for it. On Linux
each is asked to receive SIGKILL when its parent dies (PR_SET_PDEATHSIG, kept across exec), so
even ``kill -9`` of studiox leaves no server behind; elsewhere the server relies on seeing its
input close. When the server ends, the launcher writes one line to its stderr (the
integration's log), ``[studiox] the server exited with status N`` or ``[studiox] the server was
killed by signal NAME``, and exits with the same status; studiox reads that line to say why a
server went away. Run as a file, not as a module: it needs nothing imported.
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


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    _die_with(parent)
    launcher = os.getpid()
    if command[:1] == ["--pidfile"]:  # where studiox looks to kill a server busy with a call it abandoned
        with open(command[1], "w") as f:
            f.write(str(launcher))
        command = command[2:]
    child = os.fork()
    if child == 0:
        _die_with(launcher)
        try:
            os.execvp(command[0], command)
        except OSError as e:
            _report("the program was not found" if isinstance(e, FileNotFoundError)
                    else f"the program could not be run: {e.strerror}")
            os._exit(127)
    os.close(0)  # only the server reads what studiox sends
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
