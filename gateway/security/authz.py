"""Authorisation checks as handlers call them: 403/40301 before anything is written or sent.

Off unless ``authorization.rules.file`` is set (everything allowed, as before). On, every
check asks the rules (:mod:`.rules`) about :func:`~.principal.principal_of` the request, so
the same answer comes on every replica: a forwarded request carries its principal, groups
included, in the signed hop and is checked again by the owner with the same rules.

A refusal is 403 with 40301, the code Confluent answers a Kafka authorization failure with.
It is answered before any Kafka or registry lookup, so it is the same whether the topic,
group or subject exists or not: a refusal never tells a caller what exists.

Consume rights are checked when an instance is created and on every operation on it (the
group), and when it subscribes or is assigned (the topics). A change of rules applies to the
next subscription or assignment; an instance keeps reading what it was allowed to subscribe
to, as a Kafka consumer keeps its fetch session until it resubscribes.

The in-process schema registration of a schema-format produce needs only the produce right on
the topic: its subjects (``<topic>-key``/``-value``) follow from the topic, as Confluent's
proxy registers them with its own registry credentials. Registry rules govern the registry's
own HTTP API.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from ..config import Config
from ..errors import GatewayError
from .principal import Principal, principal_of
from .rules import Rules

FORBIDDEN = 40301
# The name a ``cluster`` rule matches: Kafka's own name for the cluster resource in ACLs.
CLUSTER_RESOURCE = "kafka-cluster"


class Authorizer:
    """Built once per application; ``rules`` is None when authorisation is off."""

    def __init__(self, config: Config) -> None:
        path = config.authorization_rules_file
        self.rules: Rules | None = Rules(path) if path else None

    def _denied(self, principal: Principal, what: str) -> GatewayError:
        return GatewayError(403, FORBIDDEN, f"{_who(principal)} is not authorized to {what}")

    def topics(self, request: web.Request, operation: str, topics: Iterable[str]) -> None:
        """``operation`` (produce, consume, describe; create, delete, alter) on every topic, or 403 naming the
        refused ones."""
        if self.rules is None:
            return
        principal = principal_of(request)
        refused = sorted(
            {t for t in topics if not self.rules.allows(principal, "topic", operation, t)}
        )
        if refused:
            raise self._denied(principal, f"{operation} topics: [{', '.join(refused)}]")

    def topic_pattern(self, request: web.Request, pattern: str) -> None:
        """A regex subscription needs one rule covering every topic it can match: a rule on
        ``P*`` whose ``P`` the regex's literal prefix starts with (``orders-*`` covers
        ``orders-.*`` and ``orders-(eu|us)``), or the exact topic for a regex that is plain
        text. Filtering the matched topics instead would make what a subscription receives
        change silently with the rules and the topics created later, and would need the
        creator's groups wherever the instance is adopted."""
        if self.rules is None:
            return
        principal = principal_of(request)
        if not self.rules.allows_regex(principal, "consume", pattern):
            raise self._denied(
                principal,
                f"consume every topic matching {pattern!r} (a rule must cover the whole pattern,"
                " e.g. a topic rule on its literal prefix followed by *)",
            )

    def group(self, request: web.Request, group: str, operation: str = "consume") -> None:
        """Rights on a consumer group: ``consume`` (create and use its instances) or
        ``describe`` (v3: the group, its members, its lag)."""
        if self.rules is None:
            return
        principal = principal_of(request)
        if not self.rules.allows(principal, "group", operation, group):
            what = "consume in" if operation == "consume" else operation
            raise self._denied(principal, f"{what} group {group!r}")

    def visible_groups(self, request: web.Request, groups: Iterable[str]) -> list[str]:
        """The groups the caller may describe (all when authorisation is off)."""
        if self.rules is None:
            return list(groups)
        principal = principal_of(request)
        return [g for g in groups if self.rules.allows(principal, "group", "describe", g)]

    def cluster(self, request: web.Request, operation: str) -> None:
        """``describe`` or ``alter`` on the cluster (v3 brokers, broker configs, ACLs)."""
        if self.rules is None:
            return
        principal = principal_of(request)
        if not self.rules.allows(principal, "cluster", operation, CLUSTER_RESOURCE):
            raise self._denied(principal, f"{operation} the cluster")

    def visible_topics(self, request: web.Request, topics: Iterable[str]) -> list[str]:
        """The topics whose metadata the caller may read (all when authorisation is off)."""
        if self.rules is None:
            return list(topics)
        principal = principal_of(request)
        return [t for t in topics if self.rules.allows(principal, "topic", "describe", t)]

    def any_topic(self, request: web.Request) -> None:
        """Broker ids: the caller must be allowed to describe some topic, whose partition
        metadata names the brokers anyway (so nothing more is revealed)."""
        if self.rules is None:
            return
        principal = principal_of(request)
        if not self.rules.allows_any(principal, "topic", "describe"):
            raise self._denied(principal, "describe the cluster (no topic is visible to it)")

    def subject(self, request: web.Request, operation: str, subject: str | None) -> None:
        """``operation`` (read, write) on a registry subject; ``None`` is the registry-wide
        configuration, which needs a rule on every subject (pattern ``*``)."""
        if self.rules is None:
            return
        principal = principal_of(request)
        if subject is None:
            if not self.rules.allows_prefix(principal, "subject", operation, ""):
                raise self._denied(principal, f"{operation} the registry-wide configuration")
        elif not self.rules.allows(principal, "subject", operation, subject):
            raise self._denied(principal, f"{operation} subject {subject!r}")

    def registry_request(self, request: web.Request) -> None:
        """The check of a built-in registry route that names a subject (or the registry-wide
        ``/config``): PUT and DELETE, and registering (POST .../versions), write; everything
        else reads, including the POST of a lookup and of a compatibility check, which
        change nothing. Routes by schema id, and the subject list, filter by read instead."""
        if self.rules is None:
            return
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else request.path
        subject = request.match_info.get("subject")
        if subject is None and path != "/config":
            return
        write = request.method in ("PUT", "DELETE") or (
            request.method == "POST" and path == "/subjects/{subject}/versions"
        )
        self.subject(request, "write" if write else "read", subject)

    def readable_usage(self, request: web.Request, subjects: Iterable[str]) -> None:
        """A schema by id: readable through any subject the caller may read that uses it."""
        if self.rules is None:
            return
        principal = principal_of(request)
        if not any(self.rules.allows(principal, "subject", "read", s) for s in subjects):
            raise self._denied(principal, "read this schema (no readable subject uses it)")

    def visible_subjects(self, request: web.Request, subjects: Iterable[str]) -> list[str]:
        if self.rules is None:
            return list(subjects)
        principal = principal_of(request)
        return [s for s in subjects if self.rules.allows(principal, "subject", "read", s)]


def _who(principal: Principal) -> str:
    return f"User:{principal.name}"


AUTHORIZER = web.AppKey("authorizer", Authorizer)


def authorizer(request: web.Request) -> Authorizer:
    return request.app[AUTHORIZER]
