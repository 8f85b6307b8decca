"""Start an integration's server so that it cannot outlive the studiox process that started it.

    python _launch.py PARENT_PID COMMAND [ARGS...]

On Linux the server is asked to receive SIGKILL when its parent dies (PR_SET_PDEATHSIG, kept
across exec), so even ``kill -9`` of studiox leaves no server behind; elsewhere the server
relies on seeing its input close. Run as a file, not as a module: it needs nothing imported.
"""

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
