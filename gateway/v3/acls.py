"""v3 ACLs (reference 9): search, create one, create a batch, delete by filter.

The ACLs are Kafka's own (its authorizer's, e.g. StandardAuthorizer), read and written with
the gateway's admin identity; the gateway keeps none. Who may call these is the gateway's own
decision first: listing needs ``describe`` on the cluster, every change ``alter``, checked
before anything reaches Kafka.

Links carry the seven fields as a query string in Confluent's fixed order, values encoded as
Java's URLEncoder does, so a client can follow an ACL's ``self`` (or a create's ``Location``)
with DELETE to remove exactly that ACL.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..body import as_list
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from .acl_kafka import create_acls, delete_acls, describe_acls
from .acl_model import FIELDS, Acl, acl_query, parse_acl, parse_filter
from .cluster import checked_cluster
from .failures import kafka_deadline
from .requests import check_no_body_type, payload_error, read_object
from .urls import Links, collection, json_response, no_content


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/clusters/{cluster_id}/acls", search)
    app.router.add_post("/v3/clusters/{cluster_id}/acls", create)
    app.router.add_delete("/v3/clusters/{cluster_id}/acls", delete)
    app.router.add_post("/v3/clusters/{cluster_id}/acls:batch", create_batch)


async def search(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    wanted = parse_filter(request.query, delete=False)
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        found = await describe_acls(admin, wanted)
    links = Links(request, cid)
    return json_response(
        collection("KafkaAclList", _url(links, wanted.wire()), _listed(links, found))
    )


async def create(request: web.Request) -> web.Response:
    authorizer(request).cluster(request, "alter")
    acl = parse_acl(await read_object(request, FIELDS))
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        await create_acls(admin, [acl])
    return web.Response(status=201, headers={"Location": _url(Links(request, cid), acl.wire())})


async def create_batch(request: web.Request) -> web.Response:
    """Every entry is checked before any is sent, so a malformed one creates nothing; the
    rest go to Kafka in one request, which judges each ACL alone (as Confluent's
    ``createAcls``): the first it refuses is the answer, the others may exist by then."""
    authorizer(request).cluster(request, "alter")
    body = await read_object(request, ("data",))
    entries = body.get("data")
    if entries is None:
        raise payload_error("Empty input provided. Data is required.")
    acls = [parse_acl(entry) for entry in as_list(entries, "data") or ()]
    await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        await create_acls(admin, acls)
    return no_content()


async def delete(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "alter")
    wanted = parse_filter(request.query, delete=True)
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        deleted = await delete_acls(admin, wanted)
    return json_response({"data": _listed(Links(request, cid), deleted)})


def _listed(links: Links, acls: list[Acl]) -> list[dict[str, Any]]:
    # Built here rather than with urls.resource(), whose CRN parameter is also called
    # resource_name; an ACL's metadata has no CRN anyway, only ``self``.
    return [
        {
            "kind": "KafkaAcl",
            "metadata": {"self": _url(links, acl.wire())},
            "cluster_id": links.cluster_id,
            **acl.wire(),
        }
        for acl in sorted(acls, key=Acl.sort_key)
    ]


def _url(links: Links, fields: dict[str, str]) -> str:
    return f"{links.cluster('acls')}?{acl_query(fields)}"
