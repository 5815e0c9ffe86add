"""``event-gateway user add``: write a user to a BASIC authentication users file."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from gateway.security.basic import UsersFileError, add_user


def add_parser(subparsers: Any) -> None:
    """Register ``user add`` on the CLI's subparsers."""
    user = subparsers.add_parser("user", help="manage the BASIC authentication users file")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user, or replace its password and groups")
    add.add_argument("--users-file", required=True, help="the file authentication reads")
    add.add_argument("name")
    add.add_argument(
        "--group", action="append", default=[], help="a group the user belongs to (repeatable)"
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (for scripts) instead of prompting",
    )


def run(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("event-gateway: the passwords differ", file=sys.stderr)
            return 2
    try:
        add_user(Path(args.users_file), args.name, password, args.group)
    except (UsersFileError, OSError) as exc:
        print(f"event-gateway: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name} written to {args.users_file}")
    return 0
