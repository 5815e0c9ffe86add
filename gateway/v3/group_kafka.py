"""Consumer groups as Kafka describes them: list, describe, committed offsets, log ends.

aiokafka's admin client covers part of this, but not as v3 needs it: its list merges every
broker's answer into a set (Kafka's order is lost), it describes groups one coordinator lookup
at a time, its DescribeGroups stops at v3 (no static member ids, and its v3 reads the answer
with the v2 layout), its offset fetch ignores the group-level error, and it has no ListOffsets.
So the requests are sent here, through the shared admin client's connections.

Only the classic group protocol is described (the one aiokafka, and so every consumer this
gateway runs, speaks): DescribeGroups below v6 reports a group of another protocol (KIP-848
``consumer``, ``share``, ``streams``) as ``Dead`` with no members, the same answer as for an
id Kafka does not know, so such a group is "not found" here, in the list as on its own.

Coordinator moves and loads (Kafka's retriable answers) are retried with a short backoff; the
caller's ``kafka_deadline`` bounds the whole, so a cluster that never settles is a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import ListGroupsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.commit import OffsetFetchRequest
from aiokafka.protocol.group import MemberAssignment
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest
from aiokafka.protocol.types import Array, Boolean, Bytes, Int16, Int32, Schema, String

from sessions import kafka_internals

TopicPartition: TypeAlias = tuple[str, int]

# Java's listConsumerGroups keeps these protocol types: "consumer" and "" (a "simple" group,
# one that only ever committed offsets). Connect workers and others are not consumer groups.
CONSUMER_PROTOCOL = "consumer"
_CONSUMER_PROTOCOL_TYPES = frozenset({CONSUMER_PROTOCOL, ""})

DEAD = "Dead"
_READ_COMMITTED = 1
_LATEST = -1
# Kafka's "no such topic or partition" (3): a committed offset for a deleted topic has no end.
_UNKNOWN_TOPIC_OR_PARTITION = 3


@dataclass(frozen=True)
class Member:
    consumer_id: str
    instance_id: str | None
    client_id: str
    host: str
    # (topic, partition) pairs, sorted.
    assignment: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class Group:
    group_id: str
    state: str  # Kafka's text: "Stable", "Empty", "PreparingRebalance", ...
    protocol_type: str
    protocol: str  # the partition assignor for a consumer group ("" when empty)
    members: tuple[Member, ...]
    coordinator: int

    @property
    def exists(self) -> bool:
        # Kafka answers an id it does not know (and a group of another protocol) as Dead.
        return self.state != DEAD


# --- DescribeGroups v4: group-level layout of v3 plus the static member id (KIP-345) --------


class _DescribeGroupsResponse_v4(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 15
    API_VERSION = 4
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "groups",
            Array(
                ("error_code", Int16),
                ("group", String("utf-8")),
                ("state", String("utf-8")),
                ("protocol_type", String("utf-8")),
                ("protocol", String("utf-8")),
                (
                    "members",
                    Array(
                        ("member_id", String("utf-8")),
                        ("group_instance_id", String("utf-8")),
                        ("client_id", String("utf-8")),
                        ("client_host", String("utf-8")),
                        ("member_metadata", Bytes),
                        ("member_assignment", Bytes),
                    ),
                ),
                ("authorized_operations", Int32),
            ),
        ),
    )


class _DescribeGroupsRequest_v4(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 15
    API_VERSION = 4
    RESPONSE_TYPE = _DescribeGroupsResponse_v4
    SCHEMA = Schema(("groups", Array(String("utf-8"))), ("include_authorized_operations", Boolean))


class _DescribeGroups(Request[_DescribeGroupsRequest_v4]):  # type: ignore[misc]
    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(
        self, request_struct_class: type[_DescribeGroupsRequest_v4]
    ) -> _DescribeGroupsRequest_v4:
        return request_struct_class(self._groups, False)


# --- lookups ---------------------------------------------------------------------------------


async def list_groups(admin: AIOKafkaAdminClient) -> list[tuple[str, int]]:
    """(group id, coordinator) of every consumer group, in Kafka's order.

    Each broker lists the groups it coordinates, so the broker that named a group is its
    coordinator (at that moment): describing them needs no FindCoordinator round trips.
    Brokers are asked at once, and their answers kept in broker id order.
    """
    brokers = sorted(b["node_id"] for b in (await admin.describe_cluster())["brokers"])
    answers = await asyncio.gather(
        *(kafka_internals.admin_request(admin, ListGroupsRequest(), b) for b in brokers)
    )
    seen: set[str] = set()
    listed: list[tuple[str, int]] = []
    for broker, response in zip(brokers, answers, strict=True):
        if response.error_code:
            raise for_code(response.error_code)("Error listing consumer groups")
        for group_id, protocol_type in response.groups:
            if protocol_type in _CONSUMER_PROTOCOL_TYPES and group_id not in seen:
                seen.add(group_id)
                listed.append((group_id, broker))
    return listed


async def describe_groups(
    admin: AIOKafkaAdminClient, groups: Iterable[tuple[str, int | None]]
) -> dict[str, Group]:
    """Every group described by its coordinator (``None``: looked up first), keyed by id.

    One DescribeGroups per coordinator, all at once; a group whose coordinator moved or is
    still loading is asked again, of the coordinator Kafka names now.
    """
    pending = dict(groups)
    described: dict[str, Group] = {}
    delay = 0.05
    while True:
        unknown = [g for g, node in pending.items() if node is None]
        found = await asyncio.gather(*(_coordinator(admin, g) for g in unknown))
        pending.update(zip(unknown, found, strict=True))
        by_node: dict[int, list[str]] = {}
        for group_id, node in pending.items():
            assert node is not None
            by_node.setdefault(node, []).append(group_id)
        answers = await asyncio.gather(
            *(
                kafka_internals.admin_request(admin, _DescribeGroups(ids), n)
                for n, ids in by_node.items()
            )
        )
        retry: dict[str, int | None] = {}
        for node, response in zip(by_node, answers, strict=True):
            for entry in response.to_object()["groups"]:
                code = entry["error_code"]
                if code:
                    error = for_code(code)
                    if not error.retriable:
                        raise error(f"Cannot describe consumer group {entry['group']}")
                    retry[entry["group"]] = None  # ask who coordinates it now
                else:
                    described[entry["group"]] = _group(entry, node)
        if not retry:
            return described
        pending = retry
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def describe_group(admin: AIOKafkaAdminClient, group_id: str) -> Group:
    return (await describe_groups(admin, [(group_id, None)]))[group_id]


async def committed_offsets(admin: AIOKafkaAdminClient, group: Group) -> dict[TopicPartition, int]:
    """The group's committed offsets (every partition that has one), asked of its coordinator."""
    node: int | None = group.coordinator
    delay = 0.05
    while True:
        if node is None:
            node = await _coordinator(admin, group.group_id)
        response = await kafka_internals.admin_request(
            admin, OffsetFetchRequest(group.group_id, None), node
        )
        code = getattr(response, "error_code", 0)
        if not code:
            for _, partitions in response.topics:
                for _, _, _, p_code in partitions:
                    if p_code:
                        code = p_code
                        break
        if not code:
            return {
                (topic, partition): offset
                for topic, partitions in response.topics
                for partition, offset, _, _ in partitions
                if offset >= 0
            }
        error = for_code(code)
        if not error.retriable:
            raise error(f"Cannot fetch the committed offsets of group {group.group_id}")
        node = None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def log_end_offsets(
    admin: AIOKafkaAdminClient, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Each partition's last stable offset (ListOffsets, latest, read_committed).

    Read-committed, as Confluent's lag is: records of open or aborted transactions are not
    something a read-committed consumer is behind on. One request per partition leader, all
    at once. A partition that no longer exists (its topic was deleted after the group
    committed to it) has no end and is left out; one whose leader is moving is asked again.
    """
    pending = set(partitions)
    ends: dict[TopicPartition, int] = {}
    delay = 0.05
    while pending:
        leaders = await _leaders(admin, {t for t, _ in pending})
        by_leader: dict[int, list[TopicPartition]] = {}
        retry: set[TopicPartition] = set()
        for tp in pending:
            if tp not in leaders:
                continue  # gone: no row
            leader = leaders[tp]
            if leader < 0:
                retry.add(tp)
            else:
                by_leader.setdefault(leader, []).append(tp)
        answers = await asyncio.gather(
            *(_list_latest(admin, leader, tps) for leader, tps in by_leader.items())
        )
        for answer in answers:
            for tp, (code, offset) in answer.items():
                if not code:
                    ends[tp] = offset
                elif code == _UNKNOWN_TOPIC_OR_PARTITION:
                    continue
                elif for_code(code).retriable:
                    retry.add(tp)
                else:
                    raise for_code(code)(f"Cannot list the end offset of {tp[0]}-{tp[1]}")
        pending = retry
        if pending:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    return ends


async def _coordinator(admin: AIOKafkaAdminClient, group_id: str) -> int:
    # Right after a broker starts (or while __consumer_offsets moves) Kafka answers
    # "coordinator not available": a moment later it names one.
    delay = 0.05
    while True:
        try:
            node: int = await admin.find_coordinator(group_id)
            return node
        except KafkaError as exc:
            if not exc.retriable:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _leaders(admin: AIOKafkaAdminClient, topics: set[str]) -> dict[TopicPartition, int]:
    # Never auto-creates a topic (aiokafka's own describe would, on a broker that allows it).
    request = MetadataRequest(sorted(topics), allow_auto_topic_creation=False)
    response = await kafka_internals.admin_request(admin, request)
    leaders: dict[TopicPartition, int] = {}
    for topic in response.to_object()["topics"]:
        code = topic["error_code"]
        if code == _UNKNOWN_TOPIC_OR_PARTITION:
            continue
        if code:
            error = for_code(code)
            if error.retriable:  # e.g. leader not available: every partition asked again
                for p in topic["partitions"]:
                    leaders[(topic["topic"], p["partition"])] = -1
                continue
            raise error(f"Cannot describe topic {topic['topic']}")
        for p in topic["partitions"]:
            leader = p["leader"]
            leaders[(topic["topic"], p["partition"])] = leader if leader is not None else -1
    return leaders


async def _list_latest(
    admin: AIOKafkaAdminClient, leader: int, tps: list[TopicPartition]
) -> dict[TopicPartition, tuple[int, int]]:
    by_topic: dict[str, list[tuple[int, int]]] = {}
    for topic, partition in sorted(tps):
        by_topic.setdefault(topic, []).append((partition, _LATEST))
    request = OffsetRequest(-1, _READ_COMMITTED, list(by_topic.items()))
    response = await kafka_internals.admin_request(admin, request, leader)
    answer: dict[TopicPartition, tuple[int, int]] = {}
    for topic in response.to_object()["topics"]:
        for p in topic["partitions"]:
            answer[(topic["topic"], p["partition"])] = (p["error_code"], p["offset"])
    return answer


# --- shaping ---------------------------------------------------------------------------------


def _group(entry: dict[str, Any], coordinator: int) -> Group:
    consumer_protocol = entry["protocol_type"] in _CONSUMER_PROTOCOL_TYPES
    members = tuple(
        Member(
            consumer_id=m["member_id"],
            instance_id=m["group_instance_id"],
            client_id=m["client_id"],
            host=m["client_host"],
            assignment=decode_assignment(m["member_assignment"]) if consumer_protocol else (),
        )
        for m in entry["members"]
    )
    return Group(
        group_id=entry["group"],
        state=entry["state"],
        protocol_type=entry["protocol_type"],
        protocol=entry["protocol"] or "",
        members=members,
        coordinator=coordinator,
    )


def decode_assignment(data: bytes | None) -> tuple[TopicPartition, ...]:
    """The partitions of a consumer protocol Assignment (versions 0-3 share one layout).

    Empty while the member has not been assigned yet (mid-rebalance); bytes that are not an
    Assignment (a client speaking its own protocol under the "consumer" type) mean none,
    not a failed request.
    """
    if not data:
        return ()
    try:
        decoded = MemberAssignment.decode(data)
    except Exception:
        return ()
    return tuple(sorted((t, p) for t, ps in decoded.assignment for p in ps))
