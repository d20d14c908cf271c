"""``kernkoa user add|remove|list``: manage the ``basic_auth`` users file."""

from __future__ import annotations

import argparse
import getpass
import sys
import typing as t

from ..auth.users import UserStore
from ..auth.users import users_file
from ..core.errors import UsersError
from ..core.settings import Settings


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; only the line break is dropped (spaces are part of it).
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsersError("no terminal to read the password from: use --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise UsersError("the two passwords differ")
    return first


def _change(command: str, change: t.Callable[[UserStore], None], done: str) -> int:
    """Apply ``change`` to the users file, then print ``done`` and the file's path.

    :returns: the exit status: 1, with the reason on standard error, when the
        change raises :class:`UsersError`.
    """
    store = UserStore(users_file(Settings.load()))
    try:
        change(store)
    except UsersError as error:
        print(f"kernkoa user {command}: {error}", file=sys.stderr)
        return 1
    print(f"{done} {store.path}")
    return 0


def user_add(args: argparse.Namespace) -> int:
    """Add a user (the password read without echo, or from standard input)."""
    def add(store: UserStore) -> None:
        # Read inside the change: a mistyped password is reported as the others.
        store.add(args.name, _read_password(args.password_stdin), args.scope, args.replace)

    return _change("add", add, f"user {args.name!r} saved in")


def user_remove(args: argparse.Namespace) -> int:
    """Remove a user."""
    return _change("remove", lambda store: store.remove(args.name),
                   f"user {args.name!r} removed from")


def user_list(args: argparse.Namespace) -> int:
    """Print each user and their scopes (never a hash)."""
    for name, record in sorted(UserStore(users_file(Settings.load())).users().items()):
        print(name, " ".join(record.get("scopes") or []))
    return 0


def add_user_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``user add|remove|list`` to the ``kernkoa`` command's parser."""
    user = commands.add_parser("user", help="manage basic_auth users")
    actions = user.add_subparsers(dest="user_command", required=True)
    p = actions.add_parser("add", help="add a user (asks for the password, no echo)")
    p.add_argument("name")
    p.add_argument("--scope", action="append", default=[], help="a scope to grant (repeat)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    p.add_argument("--replace", action="store_true", help="replace an existing user")
    p.set_defaults(func=user_add)
    p = actions.add_parser("remove", help="remove a user")
    p.add_argument("name")
    p.set_defaults(func=user_remove)
    p = actions.add_parser("list", help="list users and their scopes")
    p.set_defaults(func=user_list)
