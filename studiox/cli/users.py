"""``studiox users``: the portal's accounts — add, list, passwd, role, remove.

A password is asked twice at the terminal without echo, or read from the first line of standard
input with ``--password-stdin``; it is never printed, nor is its hash. :mod:`studiox.users` (hashlib,
sqlite3) is imported by the commands, not at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import api
from ..errors import UsageError
from .app import AsJson, Home, app, remember_home
from .output import escape, out, plain, print_json

users_app = typer.Typer(help="People and roles for the portal: add, list, passwd, role, remove.",
                        no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(users_app, name="users")

Name = Annotated[str, typer.Argument(metavar="NAME", help="The user's name: letters, digits, '.', '_', '-'.")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from the first line of standard input instead of asking.")]
ROLE_HELP = "viewer (sees runs), starter (also starts them), approver (also decides), admin (also manages users)."


def _home(home: Path | None) -> Path:
    return api.home_path(remember_home(home))


def _password(from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at the terminal (no echo)."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: standard input is empty; give the password on its first line")
        return line.removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        raise UsageError("there is no terminal to ask for the password at: give it on standard input with "
                         "--password-stdin (e.g. studiox users add NAME --role viewer --password-stdin < FILE)")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("the same again: ") != first:
        raise UsageError("the two passwords differ; nothing was changed")
    return first


@users_app.command("add")
def add(name: Name,
        role: Annotated[str, typer.Option("--role", metavar="ROLE", help=ROLE_HELP)],
        password_stdin: PasswordStdin = False, home: Home = None) -> None:
    """Add a user with a role; the password is asked twice (or read with --password-stdin)."""
    from .. import users

    folder = _home(home)
    users.check_new(folder, name, role)  # before the password is typed
    user = users.add(folder, name, role, _password(password_stdin))
    plain(f"added {user.name} ({user.role})")


@users_app.command("passwd")
def passwd(name: Name, password_stdin: PasswordStdin = False, home: Home = None) -> None:
    """Change a user's password; their portal sessions end."""
    from .. import users

    folder = _home(home)
    users.need(folder, name)
    user = users.set_password(folder, name, _password(password_stdin))
    plain(f"changed the password of {user.name}; their portal sessions end")


@users_app.command("role")
def role(name: Name, new_role: Annotated[str, typer.Argument(metavar="ROLE", help=ROLE_HELP)],
         home: Home = None) -> None:
    """Give a user another role; their portal sessions end."""
    from .. import users

    folder = _home(home)
    before = users.need(folder, name)
    user = users.set_role(folder, name, new_role)
    if user.session_epoch == before.session_epoch:
        plain(f"{user.name} is already {user.role}")
    else:
        plain(f"{user.name} is now {user.role} (was {before.role}); their portal sessions end")


@users_app.command("remove")
def remove(name: Name, home: Home = None) -> None:
    """Remove a user; their portal sessions end."""
    from .. import users

    users.remove(_home(home), name)
    plain(f"removed {name}")


@users_app.command("list")
def list_(home: Home = None, as_json: AsJson = False) -> None:
    """Every user: name, role, when added."""
    from .. import users
    from ..units import iso, when

    found = users.list_users(_home(home))
    if as_json:
        print_json([{"name": u.name, "role": u.role, "created": iso(u.created)} for u in found])
        return
    if not found:
        plain("no users yet — add the first with: studiox users add NAME --role admin")
        return
    table = Table("name", "role", "added", header_style="bold")
    for u in found:
        table.add_row(escape(u.name), u.role, when(u.created))
    out.print(table)
