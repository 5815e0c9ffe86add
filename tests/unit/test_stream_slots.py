"""Stream slots: each stream's own end, set by the replica's drain or by its token."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.streaming.slots import ENDED_EARLY_MAX, StreamSlots


async def test_end_by_token_ends_only_that_stream_and_the_token_is_forgotten() -> None:
    slots = StreamSlots(10, 10)
    with slots.hold("alice", "t1") as first, slots.hold("alice", "t2") as second:
        with slots.hold("bob") as unnamed:
            assert slots.end("t1") is True
            assert first.is_set() and not second.is_set() and not unnamed.is_set()
            assert not slots.closing.is_set()  # the replica is not draining
            assert slots.end("nope") is False
    assert slots.end("t2") is False  # ended with its block
    assert slots.total == 0


async def test_a_drain_ends_every_stream_and_refuses_new_ones() -> None:
    slots = StreamSlots(10, 10)
    with slots.hold("alice", "t1") as named, slots.hold("bob") as unnamed:
        slots.close()
        assert named.is_set() and unnamed.is_set() and slots.closing.is_set()
        with pytest.raises(GatewayError) as refused, slots.hold("carol"):
            pass
    assert refused.value.status == 503


async def test_an_end_that_arrives_before_its_stream_opens_ends_it_at_once() -> None:
    """The relay drained while its hop was on the way: the stream must not run on until the
    relay's shutdown timeout cuts it."""
    slots = StreamSlots(10, 10)
    assert slots.end("early") is False
    with slots.hold("alice", "early") as ends, slots.hold("alice", "other") as other:
        assert ends.is_set() and not other.is_set()
    with slots.hold("alice", "early") as again:  # remembered once, not for good
        assert not again.is_set()


async def test_ends_kept_for_streams_not_open_yet_are_bounded() -> None:
    slots = StreamSlots(10, 10)
    for i in range(ENDED_EARLY_MAX + 10):
        slots.end(f"t{i}")
    with slots.hold("alice", "t0") as oldest, slots.hold("alice", f"t{ENDED_EARLY_MAX + 9}") as new:
        assert not oldest.is_set() and new.is_set()
