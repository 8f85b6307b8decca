"""The ``studiox`` command: a thin face over :mod:`studiox.api`.

One module per command group (``missions``, ``runs``, ``decisions``); ``main`` turns user
errors into a message and an exit code, and a crash into exit 70 with a crash log.
"""

from __future__ import annotations

import sys
import time
import traceback

import typer

from .. import __version__, secrets
from ..errors import StudioxError
from . import audit, decisions, knowledge, missions, models, runs, serve, testing, users, worker  # noqa: F401 - registers the commands
from .app import EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, app, state
from .output import err, plain

__all__ = ["app", "entry", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become a message and an exit code, never a traceback."""
    from .. import api

    api.NOTICE = lambda text: plain(text, error=True)
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except StudioxError as e:
        plain(secrets.redact(e.render()), error=True)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except typer.Abort:
        return EXIT_INTERRUPTED
    except typer.TyperException as e:  # a usage error found while parsing the arguments
        e.show()  # type: ignore[attr-defined]
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - the one place that turns a crash into a message
        if state["debug"]:
            raise
        log = _crash_log(e)
        plain(f"studiox hit an internal error (a bug): {type(e).__name__}: {secrets.redact(str(e))}\n"
              f"Run the same command with --debug for the traceback{', which is also in ' + log if log else ''}, "
              "and please report it.", error=True)
        return EXIT_BUG
    return code if isinstance(code, int) else EXIT_OK


def _crash_log(error: BaseException) -> str | None:
    """Append the traceback to $STUDIOX_HOME/logs/crash.log; its path, or None if it cannot be written."""
    from .. import api

    try:
        path = api.home_path(state["home"]) / "logs" / "crash.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} studiox {__version__} "
                    f"python {sys.version.split()[0]}: studiox {' '.join(sys.argv[1:])}\n")
            f.write(secrets.redact("".join(traceback.format_exception(error))))
        return str(path)
    except OSError:
        return None


def entry() -> None:
    sys.exit(main())
