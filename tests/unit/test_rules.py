"""Authorisation rules: parsing, pattern matching, principals, implications, reload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.security import watched
from gateway.security.principal import ANONYMOUS, Principal
from gateway.security.rules import (
    Rules,
    RulesFileError,
    glob_match,
    parse_rules,
    regex_literal_prefix,
)

ALICE = Principal("alice", frozenset({"ops"}), "basic")
BOB = Principal("bob", frozenset(), "basic")


def rules(*docs: dict) -> Rules:
    return Rules.of(parse_rules(json.dumps({"rules": list(docs)})))


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("orders", "orders", True),
        ("orders", "orders-eu", False),
        ("orders-*", "orders-", True),
        ("orders-*", "orders-eu", True),
        ("orders-*", "order", False),
        ("*", "", True),
        ("*", "anything.at_all", True),
        ("*-eu", "orders-eu", True),
        ("*-eu", "orders-us", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXcYYb", False),
        ("a.b", "aXb", False),  # only * is special
        ("a?b", "aXb", False),
        ("*a*a*a*a*a*b", "a" * 200, False),  # no exponential backtracking
    ],
)
def test_glob_match(pattern: str, name: str, expected: bool) -> None:
    assert glob_match(pattern, name) is expected


@pytest.mark.parametrize(
    ("regex", "prefix", "exact"),
    [
        ("orders", "orders", True),
        (r"orders\.eu", "orders.eu", True),
        ("orders-.*", "orders-", False),
        ("orders-(eu|us)", "orders-", False),
        ("orders-eu|payments", "", False),  # top-level alternation: no common prefix
        ("orders-[a|b]", "orders-", False),  # "|" in a class is literal
        ("ordersx?", "orders", False),  # the optional character is not in the prefix
        ("orders+", "order", False),
        ("orders{2}", "order", False),
        (r"\d+", "", False),
        ("(?i)orders", "", False),
        ("^orders.*", "", False),
    ],
)
def test_regex_literal_prefix(regex: str, prefix: str, exact: bool) -> None:
    assert regex_literal_prefix(regex) == (prefix, exact)


def test_principals_users_groups_and_anyone() -> None:
    r = rules(
        {"principal": "User:alice", "topic": "a-*", "allow": ["produce"]},
        {"principal": "Group:ops", "topic": "ops-*", "allow": ["produce"]},
        {"principal": "*", "topic": "public", "allow": ["produce"]},
        {"principal": ["User:bob", "Group:none"], "topic": "b", "allow": ["produce"]},
    )
    assert r.allows(ALICE, "topic", "produce", "a-1")
    assert not r.allows(BOB, "topic", "produce", "a-1")
    assert r.allows(ALICE, "topic", "produce", "ops-x")  # through her group
    assert not r.allows(BOB, "topic", "produce", "ops-x")
    assert r.allows(BOB, "topic", "produce", "b") and not r.allows(ALICE, "topic", "produce", "b")
    for who in (ALICE, BOB, ANONYMOUS):
        assert r.allows(who, "topic", "produce", "public")
    # A group named like a user grants nothing to that user, and vice versa.
    assert not r.allows(Principal("ops", frozenset(), "basic"), "topic", "produce", "ops-x")


def test_anonymous_needs_a_rule_naming_it() -> None:
    r = rules({"principal": "User:alice", "topic": "*", "allow": ["*"]})
    assert not r.allows(ANONYMOUS, "topic", "describe", "t")
    r = rules({"principal": "User:ANONYMOUS", "topic": "t", "allow": ["consume"]})
    assert r.allows(ANONYMOUS, "topic", "consume", "t")


def test_operations_are_per_resource_type_and_imply_describe_and_read() -> None:
    r = rules(
        {"principal": "User:alice", "topic": "p", "allow": ["produce"]},
        {"principal": "User:alice", "topic": "c", "allow": ["consume"]},
        {"principal": "User:alice", "topic": "d", "allow": ["describe"]},
        {"principal": "User:alice", "subject": "s-*", "allow": ["write"]},
        {"principal": "User:alice", "group": "g", "allow": ["*"]},
    )
    ok = lambda *a: r.allows(ALICE, *a)  # noqa: E731
    assert ok("topic", "produce", "p") and ok("topic", "describe", "p")
    assert not ok("topic", "consume", "p")
    assert ok("topic", "consume", "c") and ok("topic", "describe", "c")
    assert not ok("topic", "produce", "c")
    assert ok("topic", "describe", "d") and not ok("topic", "produce", "d")
    assert ok("subject", "write", "s-1") and ok("subject", "read", "s-1")
    assert ok("group", "consume", "g") and not ok("group", "consume", "g2")
    # A topic rule says nothing about a group or subject of the same name, and back.
    assert not ok("group", "consume", "c") and not ok("topic", "consume", "g")


def test_regex_subscriptions_need_one_rule_covering_the_whole_pattern() -> None:
    r = rules({"principal": "User:alice", "topic": "orders-*", "allow": ["consume"]})
    assert r.allows_regex(ALICE, "consume", "orders-.*")
    assert r.allows_regex(ALICE, "consume", "orders-(eu|us)")
    assert r.allows_regex(ALICE, "consume", "orders-eu")  # plain text: that one topic
    assert not r.allows_regex(ALICE, "consume", "orders.*")  # would match "ordersX"
    assert not r.allows_regex(ALICE, "consume", "orders-eu|payments")
    assert not r.allows_regex(ALICE, "consume", ".*")
    assert not r.allows_regex(BOB, "consume", "orders-.*")
    # A rule with a wildcard in the middle cannot cover a prefix.
    mid = rules({"principal": "User:alice", "topic": "orders-*-eu", "allow": ["consume"]})
    assert not mid.allows_regex(ALICE, "consume", "orders-.*")
    everything = rules({"principal": "User:alice", "topic": "*", "allow": ["consume"]})
    assert everything.allows_regex(ALICE, "consume", "(?i).*|x")


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        ([], '{"rules": [...]}'),
        ({"rules": {}}, '{"rules": [...]}'),
        ({"rules": [], "extra": 1}, '{"rules": [...]}'),
        ({"rules": ["x"]}, "rule 1: expected an object"),
        ({"rules": [{"principal": "*", "allow": ["produce"]}]}, "exactly one of"),
        (
            {"rules": [{"principal": "*", "topic": "t", "group": "g", "allow": ["consume"]}]},
            "exactly one of",
        ),
        ({"rules": [{"principal": "*", "topic": "t", "alow": ["produce"]}]}, "unknown key"),
        ({"rules": [{"principal": "*", "topic": "t", "allow": ["write"]}]}, "not operations"),
        ({"rules": [{"principal": "*", "group": "g", "allow": ["produce"]}]}, "not operations"),
        ({"rules": [{"principal": "alice", "topic": "t", "allow": ["produce"]}]}, "User:NAME"),
        ({"rules": [{"principal": "User:", "topic": "t", "allow": ["produce"]}]}, "User:NAME"),
        ({"rules": [{"principal": [], "topic": "t", "allow": ["produce"]}]}, "principal must"),
        ({"rules": [{"principal": "*", "topic": "", "allow": ["produce"]}]}, "non-empty"),
        ({"rules": [{"principal": "*", "topic": "t", "allow": []}]}, "allow must"),
    ],
)
def test_malformed_rules_are_refused_naming_the_rule(doc: object, complaint: str) -> None:
    with pytest.raises(RulesFileError) as err:
        parse_rules(json.dumps(doc), "r.json")
    assert complaint in str(err.value) and "r.json" in str(err.value)


def test_not_json_is_refused() -> None:
    with pytest.raises(RulesFileError, match="not JSON"):
        parse_rules("allow User:alice produce topic:x")


def test_file_is_required_and_reloaded_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.json"
    with pytest.raises(RulesFileError, match="cannot read rules file"):
        Rules(str(path))
    path.write_text(json.dumps({"rules": [{"principal": "*", "topic": "a", "allow": ["*"]}]}))
    r = Rules(str(path))
    assert r.allows(BOB, "topic", "produce", "a") and not r.allows(BOB, "topic", "produce", "b")
    monkeypatch.setattr(watched, "RELOAD_CHECK_S", 0.0)

    def rewrite(text: str, bump: int) -> None:
        path.write_text(text)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))

    rewrite(json.dumps({"rules": [{"principal": "*", "topic": "b", "allow": ["*"]}]}), 5)
    assert r.allows(BOB, "topic", "produce", "b") and not r.allows(BOB, "topic", "produce", "a")
    # A broken edit keeps the last good rules rather than denying (or allowing) everything.
    rewrite("{not json", 10)
    assert r.allows(BOB, "topic", "produce", "b")
    path.unlink()
    assert r.allows(BOB, "topic", "produce", "b")
