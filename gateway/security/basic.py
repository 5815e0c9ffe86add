"""HTTP Basic authentication against a users file of bcrypt hashes.

The file has one user a line, ``name:bcrypt-hash[:group,group...]`` (``#`` starts a comment),
written by ``event-gateway user add``. It is re-read when it changes (checked at most every
few seconds), so adding or removing a user needs no restart.

bcrypt is slow on purpose (a fifth of a second of CPU at cost 12), far too slow to run on
every request of a REST client and never on the event loop: checks run in a worker thread,
and a successful check is remembered for a minute under a digest of the exact credentials
and hash (a changed password, or a changed file, never matches an old entry). Failures are
not remembered: guessing stays as slow as bcrypt makes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from .watched import WatchedFile

# How long a successful check is trusted, and how many are kept.
CACHE_TTL_S = 60.0
CACHE_SIZE = 4096
BCRYPT_ROUNDS = 12


class UsersFileError(ValueError):
    """The users file cannot be read or has a malformed line (the message says which)."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    hash: bytes
    groups: frozenset[str]


def parse_users(text: str, source: str = "users file") -> dict[str, User]:
    users: dict[str, User] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        hashed, _, groups = rest.partition(":")
        if not sep or not name or not hashed.startswith("$2"):
            raise UsersFileError(f"{source}, line {number}: expected name:bcrypt-hash[:groups]")
        users[name] = User(
            name, hashed.encode(), frozenset(g.strip() for g in groups.split(",") if g.strip())
        )
    return users


def user_line(name: str, password: str, groups: list[str]) -> str:
    """A users-file line for ``name`` (used by ``event-gateway user add``)."""
    if not name or any(c in name for c in ":\n\r#") or name != name.strip():
        raise UsersFileError(f"invalid user name {name!r}: no ':', '#', line breaks or spaces")
    for group in groups:
        if not group or any(c in group for c in ",:\n\r"):
            raise UsersFileError(f"invalid group name {group!r}")
    if not password or len(password.encode()) > 72:
        raise UsersFileError("the password must be 1 to 72 bytes (bcrypt's limit)")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
    return f"{name}:{hashed}" + (f":{','.join(groups)}" if groups else "")


def add_user(path: Path, name: str, password: str, groups: list[str]) -> None:
    """Add or replace ``name`` in the users file (created with mode 0600 if missing)."""
    line = user_line(name, password, groups)
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [raw for raw in lines if raw.strip().partition(":")[0] != name]
    text = "\n".join([*kept, line]) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)  # readers see the old file or the new one, never half of it


class BasicUsers:
    """The users of one file, and the check of one ``name:password`` pair."""

    def __init__(self, path: str) -> None:
        # A missing or malformed file stops start-up, naming the problem.
        self._file = WatchedFile(path, parse_users, UsersFileError, "users file")
        self._ok: OrderedDict[bytes, float] = OrderedDict()

    async def check(self, name: str, password: str) -> User | None:
        user = self._file.current().get(name)
        if user is None:
            return None
        key = hashlib.sha256(b"\0".join([name.encode(), password.encode(), user.hash])).digest()
        now = time.monotonic()
        seen = self._ok.get(key)
        if seen is not None and now - seen < CACHE_TTL_S:
            return user
        try:
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), user.hash)
        except ValueError:  # a hash bcrypt cannot read, or a password it refuses (> 72 bytes)
            return None
        if not ok:
            return None
        self._ok[key] = now
        self._ok.move_to_end(key)
        while len(self._ok) > CACHE_SIZE:
            self._ok.popitem(last=False)
        return user
