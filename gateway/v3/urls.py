"""Absolute links, resource names (CRNs) and the two envelopes of every v3 body.

Every ``self`` and ``related`` link is absolute and starts at :func:`~gateway.origin.public_origin`
(``advertised.listeners``, else the Host the client used), so a link followed through the load
balancer reaches any replica. Path segments are percent-encoded (Confluent leaves them raw):
topic names never need it, and a consumer group named ``a b`` still gets a usable link.

Optional resource fields are emitted as ``null``, as Confluent's Jackson does; only produce
results omit absent fields (that rule lives with produce).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from ..origin import public_origin

JSON = "application/json"


def segment(value: object) -> str:
    return quote(str(value), safe="~")


class Links:
    """Links and CRNs of one request, all under ``/v3/clusters/{cluster_id}``."""

    def __init__(self, request: web.Request, cluster_id: str) -> None:
        self.origin = public_origin(request)
        self.cluster_id = cluster_id

    def v3(self, *parts: object) -> str:
        """``<origin>/v3/<parts>``; each part percent-encoded (``-`` stays ``-``)."""
        return "/".join([f"{self.origin}/v3", *(segment(p) for p in parts)])

    def cluster(self, *parts: object) -> str:
        """``<origin>/v3/clusters/{cid}/<parts>``."""
        return self.v3("clusters", self.cluster_id, *parts)

    def related(self, *parts: object) -> dict[str, str]:
        return {"related": self.cluster(*parts)}

    def crn(self, *pairs: tuple[str, object]) -> str:
        """``crn:///kafka=C/<type>=<id>...``; a pair with value ``None`` is just ``/<type>``."""
        path = "".join(f"/{k}" if v is None else f"/{k}={v}" for k, v in pairs)
        return f"crn:///kafka={self.cluster_id}{path}"


def resource(kind: str, self_url: str, resource_name: str | None, **fields: Any) -> dict[str, Any]:
    """One resource: ``kind`` and ``metadata`` first, then its fields in the order given."""
    metadata: dict[str, Any] = {"self": self_url}
    if resource_name is not None:
        metadata["resource_name"] = resource_name
    return {"kind": kind, "metadata": metadata, **fields}


def collection(kind: str, self_url: str, data: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A list: no paging ever, so ``next`` is always null (clients following it stop)."""
    return {"kind": kind, "metadata": {"self": self_url, "next": None}, "data": list(data)}


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type=JSON, headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)
