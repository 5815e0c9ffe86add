"""``POST /v3/clusters/{cid}/topics/{t}/records:batch``: up to N records, one 207 (reference 8.6).

The batch as a whole is validated first (422 / 42208, nothing produced): entries present,
not too many, every ``id`` a distinct 1-80 character ``[0-9a-zA-Z_-]`` string. Then each entry
is a streaming record with an ``id``: one that fails alone becomes a ``failures`` entry, the
others go to Kafka together and become ``successes``. Both arrays keep request order.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from ..body import as_list
from ..context import CONFIG
from ..errors import GatewayError
from ..media import check_content_type
from ..security.authz import authorizer
from ..topics import check_client_topics
from .cluster import checked_cluster
from .produce_limits import LIMITER
from .records_request import RECORD_FIELDS, Record, RecordError, parse_record
from .records_schemas import encode_side
from .records_sender import Result, error, produce, target
from .requests import V3_CONSUMES, read_object
from .urls import json_response

_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}")
_EMPTY = "Request body is empty. Data is required."


def _invalid(message: str) -> GatewayError:
    return GatewayError(422, 42208, message)


async def produce_batch(request: web.Request) -> web.Response:
    check_content_type(request, V3_CONSUMES)
    cluster_id = await checked_cluster(request)
    topic = request.match_info["topic_name"]
    config = request.app[CONFIG]
    check_client_topics(config, [topic])
    authorizer(request).topics(request, "produce", [topic])
    try:
        body = await read_object(request, ("entries",), empty=_EMPTY)
    except GatewayError as exc:
        if exc.error_code == 42206:  # the batch family answers a missing body with 42208
            raise _invalid(_EMPTY) from None
        raise
    entries = as_list(body.get("entries"), "entries")
    if not entries:
        raise _invalid("Empty batch.")
    if len(entries) > config.api_v3_produce_batch_maximum_entries:
        raise _invalid("Too many entries in batch.")
    ids = [_entry_id(entry) for entry in entries]
    if len(set(ids)) != len(ids):
        raise _invalid("Batch entry IDs are not distinct.")

    to = target(request, cluster_id, topic)
    limiter = request.app[LIMITER]
    results: list[Result | None] = [None] * len(entries)
    records: list[Record] = []
    sending: list[int] = []
    for i, entry in enumerate(entries):
        fields = {k: v for k, v in entry.items() if k != "id"}
        try:
            record = parse_record(fields)
            limiter.admit(cluster_id, _json_size(fields))
            if record.key_schema is not None:
                record.key, record.key_info = await encode_side(
                    request.app, topic, "key", record.key_schema
                )
            if record.value_schema is not None:
                record.value, record.value_info = await encode_side(
                    request.app, topic, "value", record.value_schema
                )
        except RecordError as exc:
            results[i] = error(exc.code, exc.message)
            continue
        records.append(record)
        sending.append(i)
    if records:
        for i, produced in zip(sending, await produce(to, records), strict=True):
            results[i] = produced
    successes: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for entry_id, settled in zip(ids, results, strict=True):
        result: Result = settled or error(500, "Internal Server Error")  # every slot is set
        if result["error_code"] == 200:
            successes.append(
                {"id": entry_id, **{k: v for k, v in result.items() if k != "error_code"}}
            )
        else:
            failures.append({"id": entry_id, **result})
    return json_response({"successes": successes, "failures": failures}, status=207)


def _entry_id(entry: Any) -> str:
    if not isinstance(entry, dict):
        raise GatewayError(400, 400, "Cannot deserialize a batch entry: expected a JSON object")
    for name in entry:
        if name != "id" and name not in RECORD_FIELDS:
            raise GatewayError(422, 422, f"Unrecognized field: {name}")
    entry_id = entry.get("id")
    if not isinstance(entry_id, str) or not _ID.fullmatch(entry_id):
        raise _invalid("Batch entry identifier is not a valid string.")
    return entry_id


def _json_size(fields: dict[str, Any]) -> int:
    """The entry's JSON size as the limiter counts it (its own text in a stream)."""
    try:
        return len(orjson.dumps(fields))
    except orjson.JSONEncodeError:  # e.g. an integer past 64 bits: parse_record refuses it
        return 0
