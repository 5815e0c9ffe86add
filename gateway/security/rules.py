"""Authorisation rules: which principal may do what to which topic, consumer group or subject.

The rules file is JSON (no extra dependency, and principal names such as a certificate
subject ``CN=alice, O=Acme`` need no quoting rules of our own)::

    {"rules": [
      {"principal": "User:alice",  "topic": "orders-*",  "allow": ["produce", "consume"]},
      {"principal": "Group:ops",   "group": "billing-*", "allow": ["consume"]},
      {"principal": "*",           "topic": "*",         "allow": ["describe"]},
      {"principal": ["User:bob", "Group:schema-admins"], "subject": "orders-*", "allow": ["write"]}
    ]}

Each rule names one resource type (``topic``, ``group`` or ``subject``) with a pattern, one
or more principals (``User:NAME``, ``Group:NAME`` from the principal's groups, or ``*`` for
anyone, including ``User:ANONYMOUS`` when authentication is off) and the operations it
allows. There are only allow rules: once authorisation is on, anything no rule allows is
denied, so a forgotten rule fails closed and rules never need ordering.

Operations per resource type, and what each implies (as Kafka's own ACLs: whoever may
write or read a topic may see its partitions, and registering needs a lookup first):

- ``topic``: ``produce``, ``consume``, ``describe`` (metadata and configs), and the v3
  admin operations ``create``, ``delete`` and ``alter`` (configs, partition count); each
  implies describe;
- ``group``: ``consume`` (create and use consumer instances in the group), ``describe``
  (v3: the group, its members and its lag); consume implies describe;
- ``subject``: ``read``, ``write`` (register, delete, set its compatibility); write implies
  read;
- ``cluster`` (the one Kafka cluster, named ``kafka-cluster`` as in Kafka's ACLs):
  ``describe`` (v3: the cluster, brokers, broker configs, ACLs), ``alter`` (broker configs,
  creating and deleting ACLs); alter implies describe.

``"allow": ["*"]`` allows every operation of the resource type.

Patterns are globs with one wildcard: ``*`` matches any run of characters (none included);
every other character is literal, so ``orders-*`` matches ``orders-`` and ``orders-eu`` and
``orders`` matches only ``orders``. One wildcard and no escapes keeps a rule readable at a
glance (Kafka topic names cannot contain ``*``; a group or subject with one in its name can
still be matched, by ``*`` itself).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from .principal import Principal
from .watched import WatchedFile

log = logging.getLogger(__name__)


OPERATIONS: dict[str, frozenset[str]] = {
    "topic": frozenset({"produce", "consume", "describe", "create", "delete", "alter"}),
    "group": frozenset({"consume", "describe"}),
    "subject": frozenset({"read", "write"}),
    "cluster": frozenset({"describe", "alter"}),
}
IMPLIED: dict[tuple[str, str], frozenset[str]] = {
    ("topic", "produce"): frozenset({"describe"}),
    ("topic", "consume"): frozenset({"describe"}),
    ("topic", "create"): frozenset({"describe"}),
    ("topic", "delete"): frozenset({"describe"}),
    ("topic", "alter"): frozenset({"describe"}),
    ("group", "consume"): frozenset({"describe"}),
    ("subject", "write"): frozenset({"read"}),
    ("cluster", "alter"): frozenset({"describe"}),
}
RULE_KEYS = frozenset({"principal", "allow", *OPERATIONS})


class RulesFileError(ConfigError):
    """The rules file cannot be read or is malformed (the message says where)."""


def glob_match(pattern: str, name: str) -> bool:
    """``*`` matches any run of characters; linear in practice, and never backtracking
    exponentially whatever the pattern (the classic two-pointer wildcard match)."""
    p = n = 0
    star = -1
    resume = 0
    while n < len(name):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, n
            p += 1
        elif p < len(pattern) and pattern[p] == name[n]:
            p += 1
            n += 1
        elif star >= 0:
            p = star + 1
            resume += 1
            n = resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def glob_prefix(pattern: str) -> str | None:
    """``P`` when the pattern is ``P*`` (literal text, then one trailing wildcard), else None:
    such a pattern matches every name starting with ``P``, which is what lets a rule cover
    a whole regex subscription."""
    if pattern.endswith("*") and "*" not in pattern.rstrip("*"):
        return pattern.rstrip("*")
    return None


_REGEX_META = frozenset(".^$|?*+()[]{}\\")
_QUANTIFIERS = frozenset("?*+{")


def regex_literal_prefix(regex: str) -> tuple[str, bool]:
    """(prefix, exact): every name the regex fully matches starts with ``prefix``; ``exact``
    when the regex is plain literal text, matching ``prefix`` alone.

    Deliberately conservative: an alternation at the top level, a leading group, flag or
    class gives an empty prefix (only a rule on ``*`` then covers the pattern). Escaped
    punctuation (``orders\\.eu``) counts as literal, as it is in every regex dialect.
    """
    if _top_level_alternation(regex):
        return "", False
    out: list[str] = []
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\" and i + 1 < len(regex) and not regex[i + 1].isalnum():
            literal, width = regex[i + 1], 2
        elif c in _REGEX_META:
            break
        else:
            literal, width = c, 1
        if i + width < len(regex) and regex[i + width] in _QUANTIFIERS:
            break  # this character may be absent (or repeated): the prefix ends before it
        out.append(literal)
        i += width
    return "".join(out), i == len(regex)


def _top_level_alternation(regex: str) -> bool:
    depth = 0
    in_class = False
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "]":  # a leading "]" is literal inside a class
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth <= 0:
            return True
        i += 1
    return False


@dataclass(frozen=True, slots=True)
class Rule:
    principals: frozenset[str]  # "User:x", "Group:x" or "*"
    resource: str  # "topic", "group", "subject"
    pattern: str
    operations: frozenset[str]  # as allowed, implications included

    def applies_to(self, principal: Principal) -> bool:
        if "*" in self.principals or f"User:{principal.name}" in self.principals:
            return True
        return any(f"Group:{g}" in self.principals for g in principal.groups)


def parse_rules(text: str, source: str = "rules file") -> tuple[Rule, ...]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise RulesFileError(f"{source}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"rules"} or not isinstance(doc["rules"], list):
        raise RulesFileError(f'{source}: expected {{"rules": [...]}}')
    return tuple(_rule(raw, f"{source}, rule {i}") for i, raw in enumerate(doc["rules"], 1))


def _rule(raw: Any, where: str) -> Rule:
    # Strict on purpose: a misspelt key or operation must stop the file, not silently
    # allow less (or, worse, more) than the operator meant.
    if not isinstance(raw, dict):
        raise RulesFileError(f"{where}: expected an object")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise RulesFileError(f"{where}: unknown key(s) {sorted(unknown)}")
    resources = [r for r in OPERATIONS if r in raw]
    if len(resources) != 1:
        raise RulesFileError(f"{where}: name exactly one of topic, group, subject")
    resource = resources[0]
    pattern = raw[resource]
    if not isinstance(pattern, str) or not pattern:
        raise RulesFileError(f"{where}: {resource} must be a non-empty pattern")
    principals = _strings(raw.get("principal"), where, "principal")
    for p in principals:
        kind, sep, name = p.partition(":")
        if p != "*" and not (sep and name and kind in ("User", "Group")):
            raise RulesFileError(f"{where}: principal {p!r} is not User:NAME, Group:NAME or *")
    allowed = _strings(raw.get("allow"), where, "allow")
    ops = set(OPERATIONS[resource]) if "*" in allowed else set(allowed)
    wrong = ops - OPERATIONS[resource]
    if wrong:
        valid = ", ".join(sorted(OPERATIONS[resource]))
        raise RulesFileError(f"{where}: {sorted(wrong)} not operations on a {resource} ({valid})")
    for op in list(ops):
        ops |= IMPLIED.get((resource, op), frozenset())
    return Rule(frozenset(principals), resource, pattern, frozenset(ops))


def _strings(value: Any, where: str, key: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise RulesFileError(f"{where}: {key} must be a string or a non-empty list of strings")
    return items


class Rules:
    """The rules of one file, re-read when it changes; the questions handlers ask."""

    def __init__(self, path: str) -> None:
        # A missing or malformed file stops start-up, naming the problem.
        self._file: WatchedFile[tuple[Rule, ...]] | None = WatchedFile(
            path, parse_rules, RulesFileError, "rules file"
        )
        self._fixed: tuple[Rule, ...] = ()

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> Rules:
        """Rules not read from a file (tests)."""
        self = cls.__new__(cls)
        self._file = None
        self._fixed = tuple(rules)
        return self

    @property
    def _rules(self) -> tuple[Rule, ...]:
        return self._file.current() if self._file is not None else self._fixed

    def _applicable(self, principal: Principal, resource: str, operation: str) -> list[Rule]:
        return [
            r
            for r in self._rules
            if r.resource == resource and operation in r.operations and r.applies_to(principal)
        ]

    def allows(self, principal: Principal, resource: str, operation: str, name: str) -> bool:
        return any(
            glob_match(r.pattern, name) for r in self._applicable(principal, resource, operation)
        )

    def allows_prefix(
        self, principal: Principal, resource: str, operation: str, prefix: str
    ) -> bool:
        """Whether one rule allows ``operation`` on every name starting with ``prefix``
        (``""``: on every name of the resource type)."""
        for rule in self._applicable(principal, resource, operation):
            p = glob_prefix(rule.pattern)
            if p is not None and prefix.startswith(p):
                return True
        return False

    def allows_any(self, principal: Principal, resource: str, operation: str) -> bool:
        """Whether some rule allows ``operation`` on some name of the resource type."""
        return bool(self._applicable(principal, resource, operation))

    def allows_regex(self, principal: Principal, operation: str, regex: str) -> bool:
        """Whether a ``topic_pattern`` subscription is covered: one rule must allow every
        topic the regex can match (see :func:`regex_literal_prefix`)."""
        prefix, exact = regex_literal_prefix(regex)
        if exact:
            return self.allows(principal, "topic", operation, prefix)
        return self.allows_prefix(principal, "topic", operation, prefix)
