"""The portal's accounts: `studiox users` and studiox.users — roles, scrypt hashes only, a private file."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest

from studiox import users
from studiox.errors import UsageError

pytestmark = pytest.mark.backends(
    "local", reason="accounts live in the state folder's users.db on every backend (docs/deploy.md)")

PASSWORD = "correct horse battery"


def _add(studiox, name="ann", role="admin", password=PASSWORD):
    result = studiox("users", "add", name, "--role", role, "--password-stdin", input=password + "\n")
    assert result.returncode == 0, result.stderr
    return result


def test_add_list_passwd_role_and_remove_through_the_cli(studiox):
    assert _add(studiox).stdout == "added ann (admin)\n"
    _add(studiox, "bob", "viewer", "bobs password")
    listed = json.loads(studiox("users", "list", "--json").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("ann", "admin"), ("bob", "viewer")]
    assert listed[0]["created"].endswith("+00:00")
    table = studiox("users", "list").stdout
    assert "ann" in table and "admin" in table and "viewer" in table

    changed = studiox("users", "passwd", "bob", "--password-stdin", input="a new password\n")
    assert changed.returncode == 0 and "changed the password of bob" in changed.stdout
    assert users.verify(studiox.home, "bob", "a new password") is not None
    assert users.verify(studiox.home, "bob", "bobs password") is None

    promoted = studiox("users", "role", "bob", "approver")
    assert promoted.returncode == 0 and promoted.stdout.startswith("bob is now approver (was viewer)")
    assert studiox("users", "role", "bob", "approver").stdout == "bob is already approver\n"

    assert studiox("users", "remove", "bob").stdout == "removed bob\n"
    assert [u["name"] for u in json.loads(studiox("users", "list", "--json").stdout)] == ["ann"]
    assert users.verify(studiox.home, "bob", "a new password") is None


def test_verify_answers_only_to_the_right_password(tmp_path):
    made = users.add(tmp_path, "ann", "approver", PASSWORD)
    assert users.verify(tmp_path, "ann", PASSWORD) == made
    assert users.verify(tmp_path, "ann", PASSWORD + " ") is None
    assert users.verify(tmp_path, "ann", "") is None
    assert users.verify(tmp_path, "nobody", PASSWORD) is None
    assert users.get(tmp_path, "ann") == made and users.get(tmp_path, "nobody") is None


def test_the_file_holds_no_password_and_nothing_prints_one(studiox):
    outputs = [_add(studiox), studiox("users", "passwd", "ann", "--password-stdin", input="second secret\n"),
               studiox("users", "list"), studiox("users", "list", "--json")]
    raw = b"".join(p.read_bytes() for p in studiox.home.glob("users.db*"))
    assert PASSWORD.encode() not in raw and b"second secret" not in raw
    assert b"scrypt$16384$8$1$" in raw  # what is kept instead
    for result in outputs:
        assert "secret" not in result.stdout + result.stderr and "scrypt" not in result.stdout + result.stderr


def test_a_hash_says_how_it_was_made_and_each_has_its_own_salt():
    first, second = users.hash_password(PASSWORD), users.hash_password(PASSWORD)
    assert first != second
    kind, n, r, p, salt, key = first.split("$")
    assert (kind, n, r, p) == ("scrypt", "16384", "8", "1")
    import base64

    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 64
    assert users.password_matches(PASSWORD, first) and users.password_matches(PASSWORD, second)
    assert not users.password_matches(PASSWORD, "scrypt$16384$8$1$not-base64$x")


def test_the_accounts_file_is_readable_by_its_owner_only(studiox):
    _add(studiox)
    for path in studiox.home.glob("users.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    (studiox.home / "users.db").chmod(0o644)  # e.g. restored from a backup
    _add(studiox, "bob", "viewer")
    assert stat.S_IMODE((studiox.home / "users.db").stat().st_mode) == 0o600


def test_password_stdin_reads_the_first_line_as_it_is(studiox):
    _add(studiox, password="  spaces kept  \nsecond line")
    assert users.verify(studiox.home, "ann", "  spaces kept  ") is not None
    empty = studiox("users", "add", "bob", "--role", "viewer", "--password-stdin", input="")
    assert empty.returncode == 2 and "standard input is empty" in empty.stderr


def test_without_a_terminal_the_password_must_come_with_password_stdin(studiox):
    result = studiox("users", "add", "ann", "--role", "viewer")
    assert result.returncode == 2 and "--password-stdin" in result.stderr and "Traceback" not in result.stderr
    assert users.list_users(studiox.home) == []


def test_a_terminal_asks_twice_without_echo(studiox):
    from support.terminal import Terminal

    terminal = Terminal(studiox.argv("users", "add", "ann", "--role", "starter"), studiox.env())
    terminal.expect("password: ")
    terminal.type(PASSWORD + "\n")
    terminal.expect("the same again: ")
    terminal.type(PASSWORD + "\n")
    screen = terminal.expect("added ann (starter)")
    assert terminal.wait() == 0 and PASSWORD not in screen
    assert users.verify(studiox.home, "ann", PASSWORD) is not None

    again = Terminal(studiox.argv("users", "passwd", "ann"), studiox.env())
    again.expect("password: ")
    again.type("one new password\n")
    again.expect("the same again: ")
    again.type("another new password\n")
    assert "the two passwords differ" in again.expect("nothing was changed") and again.wait() == 2
    assert users.verify(studiox.home, "ann", PASSWORD) is not None


@pytest.mark.parametrize("args, stdin, message", [
    (["ann", "--role", "viewer"], PASSWORD, "there is already a user 'ann'"),
    (["bob", "--role", "viewer"], "short", "the password is too short (5 characters): use at least 8"),
    (["bob", "--role", "aprover"], PASSWORD, "unknown role 'aprover' — did you mean 'approver'?"),
    (["bad name", "--role", "viewer"], PASSWORD, "'bad name' cannot be a user name"),
    (["x" * 65, "--role", "viewer"], PASSWORD, "cannot be a user name: use 1 to 64 letters"),
])
def test_add_refuses_with_a_reason(studiox, args, stdin, message):
    _add(studiox)
    result = studiox("users", "add", *args, "--password-stdin", input=stdin + "\n")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert [u.name for u in users.list_users(studiox.home)] == ["ann"]


@pytest.mark.parametrize("command", [["passwd", "anne", "--password-stdin"], ["remove", "anne"],
                                     ["role", "anne", "viewer"]])
def test_an_unknown_user_is_a_usage_error_with_a_suggestion(studiox, command):
    _add(studiox)
    result = studiox("users", *command, input=PASSWORD + "\n")
    assert result.returncode == 2 and "there is no user 'anne'" in result.stderr
    assert "did you mean 'ann'?" in result.stderr


def test_the_session_epoch_moves_on_so_old_sessions_end(tmp_path):
    assert users.add(tmp_path, "ann", "admin", PASSWORD).session_epoch == 1
    assert users.set_password(tmp_path, "ann", "a new password").session_epoch == 2
    assert users.set_role(tmp_path, "ann", "viewer").session_epoch == 3
    assert users.set_role(tmp_path, "ann", "viewer").session_epoch == 3  # no change, no new epoch
    assert users.get(tmp_path, "ann").session_epoch == 3
    users.remove(tmp_path, "ann")
    assert users.add(tmp_path, "ann", "viewer", PASSWORD).session_epoch > 3  # the same name, a new person


def test_verify_hashes_once_whether_or_not_the_name_exists(tmp_path, monkeypatch):
    users.add(tmp_path, "ann", "viewer", PASSWORD)
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    for name, password in [("ann", "wrong password"), ("nobody", PASSWORD), ("not a name!", PASSWORD),
                           ("ann", PASSWORD)]:
        calls.clear()
        users.verify(tmp_path, name, password)
        assert len(calls) == 1, name
        assert (calls[0]["n"], calls[0]["r"], calls[0]["p"], calls[0]["dklen"]) == (2**14, 8, 1, 64)


def test_roles_are_ordered():
    assert users.ROLES == ("viewer", "starter", "approver", "admin")
    assert users.allows("admin", "approver") and users.allows("approver", "starter")
    assert users.allows("viewer", "viewer") and not users.allows("viewer", "starter")
    assert not users.allows("starter", "approver") and not users.allows("approver", "admin")
    assert not users.allows("root", "viewer")  # a role no studiox wrote allows nothing
    with pytest.raises(ValueError):
        users.allows("admin", "aprover")
    assert users.User("ann", "approver", 0.0, 1).allows("starter")


def test_library_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="too short"):
        users.add(tmp_path, "ann", "viewer", "1234567")
    with pytest.raises(UsageError, match="no user 'ann'"):
        users.remove(tmp_path, "ann")


def test_listing_creates_nothing_and_adding_makes_a_whole_state_folder(studiox):
    empty = studiox("users", "list")
    assert empty.returncode == 0 and "no users yet" in empty.stdout and not studiox.home.exists()
    assert json.loads(studiox("users", "list", "--json").stdout) == []
    _add(studiox)
    assert (studiox.home / "studiox.json").is_file()
    runs = studiox("runs", "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout) == []
