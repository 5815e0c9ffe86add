"""Who is calling: the principal that authentication established for one request.

Everything downstream reads :func:`principal_of` and nothing else: authorisation rules, the
binding of a consumer instance to its creator (kept in the directory record, checked on every
replica), the forwarding hop (which carries the principal inside its signed envelope), quotas,
access logs, and Kafka pass-through (which connects to Kafka *as* the principal, with the
credentials it proved itself with).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Principal:
    """``name`` identifies the caller (user name, JWT claim, certificate subject or SAN);
    ``groups`` are the caller's groups for authorisation rules; ``method`` says how it proved
    itself (``"none"``, ``"basic"``, ``"bearer"``, ``"mtls"``, ``"hop"`` for a forwarded
    request). ``secret`` is what it proved itself with (a Basic password or a bearer token),
    kept only for Kafka pass-through and never shown: it is excluded from ``repr``."""

    name: str
    groups: frozenset[str] = frozenset()
    method: str = "none"
    secret: str | None = field(default=None, repr=False, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.method == "none"


# The caller when authentication is off: every request is this principal, and consumer
# instances are bound to no one (any caller may use any instance, as in Confluent's proxy).
ANONYMOUS = Principal("ANONYMOUS")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    found: Principal = request.get(PRINCIPAL, ANONYMOUS)
    return found
