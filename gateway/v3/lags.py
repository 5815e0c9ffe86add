"""Consumer lag as Confluent computes it (reference 7.4, 7.5): rows, order, summary, 404s.

Pure logic over what Kafka said (committed offsets, log ends, members), so the rules are
tested without a broker. One row per partition the group has a committed offset for and
whose log end is known; the member that holds the partition in its assignment names the
consumer ("" and null when none does, e.g. after every member left). Lag is never negative:
a committed offset past the last stable offset (an open transaction) is simply caught up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import GatewayError
from .cluster import NOT_FOUND
from .group_kafka import Group, Member, TopicPartition


@dataclass(frozen=True)
class Lag:
    topic: str
    partition: int
    current_offset: int
    log_end_offset: int
    consumer_id: str
    instance_id: str | None
    client_id: str

    @property
    def lag(self) -> int:
        return max(0, self.log_end_offset - self.current_offset)


@dataclass(frozen=True)
class Summary:
    total_lag: int
    max: Lag  # the row with the largest lag (the first in lag order on a tie)


def lag_rows(
    committed: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    members: Iterable[Member],
) -> list[Lag]:
    """The rows, sorted as Confluent sorts them: lag descending, then topic, then partition."""
    owners: dict[TopicPartition, Member] = {}
    for member in members:
        for tp in member.assignment:
            owners.setdefault(tp, member)
    rows = []
    for tp, current in committed.items():
        end = ends.get(tp)
        if end is None:
            continue  # no log end (the partition is gone): Confluent leaves it out too
        owner = owners.get(tp)
        rows.append(
            Lag(
                topic=tp[0],
                partition=tp[1],
                current_offset=current,
                log_end_offset=end,
                consumer_id=owner.consumer_id if owner else "",
                instance_id=owner.instance_id if owner else None,
                client_id=owner.client_id if owner else "",
            )
        )
    rows.sort(key=lambda r: (-r.lag, r.topic, r.partition))
    return rows


def summarize(rows: Sequence[Lag]) -> Summary:
    """Total and largest lag of sorted ``rows`` (which :func:`require_lags` made non-empty)."""
    return Summary(total_lag=sum(r.lag for r in rows), max=rows[0])


# --- the 404s, in the order Confluent checks them -------------------------------------------


def require_group(group: Group) -> Group:
    if not group.exists:
        raise GatewayError(404, 404, f"Consumer Group {group.group_id} could not be found.")
    return group


def require_offsets(committed: Mapping[TopicPartition, int]) -> None:
    if not committed:
        raise GatewayError(404, 404, "Consumer group offsets could not be found.")


def require_lags(rows: Sequence[Lag]) -> None:
    if not rows:
        raise GatewayError(404, 404, "Consumer lags not found.")


def find_lag(rows: Iterable[Lag], topic: str, partition: int) -> Lag:
    """The row of one partition; a partition without a committed offset is a plain 404."""
    for row in rows:
        if row.topic == topic and row.partition == partition:
            return row
    raise GatewayError(404, 404, NOT_FOUND)
