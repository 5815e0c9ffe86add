"""Routing decisions of ``sessions.router.InstanceRouter`` over a shared ``MemoryDirectory``.

Two routers sharing one directory object are two replicas of a cluster. Consumer instances are
fakes (a real aiokafka consumer needs a broker): they record what the router asks of them, so
these tests check the decision (``Local`` / ``Forward`` / which error) and the directory's
record, not Kafka.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition

from sessions.directory import InstanceRecord, MemoryDirectory
from sessions.errors import (
    InstanceExists,
    InstanceNotFound,
    Moving,
    StoreUnavailable,
    TooManyInstances,
)
from sessions.instance import Handover, InstanceSpec
from sessions.router import Forward, InstanceRouter, Local

A_URL = "http://a:1"
B_URL = "http://b:2"
TIMEOUT_MS = 60_000  # no idle expiry during a test


class FakeInstance:
    """What the router and ``LocalInstances`` use of a ``ConsumerInstance``, recorded."""

    def __init__(self, spec: InstanceSpec, node: str) -> None:
        self.spec = spec
        self.node = node
        self.epoch = 0
        self.last_used = time.monotonic()
        self.busy = False
        self.started = False
        self.stops: list[bool] = []  # the commit= of every stop()
        self.restored: list[tuple[dict[str, Any], dict[TopicPartition, int]]] = []
        self.handed_over = False
        self.subscription: dict[str, Any] = {}
        self.positions: dict[TopicPartition, int] = {}

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.group, self.spec.name)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    async def start(self) -> None:
        self.started = True

    async def stop(self, *, commit: bool = True, wait_s: float | None = None) -> None:
        if not self.handed_over:  # after a hand-over, stop() only closes: nothing to commit
            self.stops.append(commit)

    async def restore(self, subscription: dict[str, Any], handover: Handover | None) -> None:
        self.restored.append((subscription, dict(handover.positions) if handover else {}))
        self.subscription = dict(subscription)

    async def prepare_handover(self, kafka_budget_s: float | None = None) -> Handover:
        self.handed_over = True
        return Handover(dict(self.positions), {tp: -1 for tp in self.positions})

    def subscription_state(self) -> dict[str, Any]:
        return dict(self.subscription)


class Factory:
    def __init__(self, node: str) -> None:
        self.node = node
        self.built: list[FakeInstance] = []

    def __call__(self, spec: InstanceSpec) -> FakeInstance:
        inst = FakeInstance(spec, self.node)
        self.built.append(inst)
        return inst


class FlakyDirectory(MemoryDirectory):
    """A MemoryDirectory whose named operations fail (Redis down) while listed in ``failing``.

    ``lost_answers`` lists operations that do their write, then fail (the reply was lost).
    Every operation yields to the event loop first, as a network round trip would, so
    concurrent requests really interleave.
    """

    ALL = frozenset({"create", "get", "update", "claim", "delete", "touch", "renew_lease"})

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.lost_answers: set[str] = set()
        self.gets = 0

    async def _check(self, op: str) -> None:
        await asyncio.sleep(0)
        if op in self.failing:
            raise StoreUnavailable("connection refused")

    async def create(self, record: InstanceRecord, ttl_ms: int, limit: int = 0) -> bool:
        await self._check("create")
        done = await super().create(record, ttl_ms, limit)
        if "create" in self.lost_answers:
            raise StoreUnavailable("timed out")
        return done

    async def get(self, group: str, name: str) -> InstanceRecord | None:
        self.gets += 1
        await self._check("get")
        return await super().get(group, name)

    async def update(
        self, record: InstanceRecord, ttl_ms: int, expect: tuple[str, int] | None = None
    ) -> bool:
        await self._check("update")
        return await super().update(record, ttl_ms, expect)

    async def claim(self, *args: Any) -> InstanceRecord | None:
        await self._check("claim")
        return await super().claim(*args)

    async def delete(self, group: str, name: str, owner: str, epoch: int) -> bool:
        await self._check("delete")
        return await super().delete(group, name, owner, epoch)

    async def touch(self, keys: list[tuple[str, str]], ttl_ms: int) -> None:
        await self._check("touch")
        await super().touch(keys, ttl_ms)

    async def renew_lease(
        self, node_id: str, url: str, ttl_ms: int, *, slot: str | None = None
    ) -> bool:
        await self._check("renew_lease")
        return await super().renew_lease(node_id, url, ttl_ms, slot=slot)


@pytest.fixture
async def cluster() -> AsyncIterator[Any]:
    """``await make(url, directory, **kw)`` starts a router; all are stopped at the end."""
    routers: list[InstanceRouter] = []

    async def make(
        url: str, directory: MemoryDirectory, **kw: Any
    ) -> tuple[InstanceRouter, Factory]:
        factory = Factory(url)
        router = InstanceRouter(
            directory=directory,
            factory=factory,
            node_url=url,
            instance_timeout_ms=kw.pop("instance_timeout_ms", TIMEOUT_MS),
            drain_timeout_ms=2_000,
            **kw,
        )
        await router.start()
        routers.append(router)
        return router, factory

    try:
        yield make
    finally:
        for router in routers:
            await router.stop()


def spec(name: str = "c1", **kw: Any) -> InstanceSpec:
    return InstanceSpec(group="g", name=name, format="json", **kw)


# --- (a) owner, other replica, one hop only ---------------------------------------------------


async def test_owner_serves_locally_others_forward_once(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, fa = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    inst = await a.create(spec(request_timeout_ms=4000))
    assert inst.epoch == 1 and inst.started

    here = await a.route("g", "c1")
    assert isinstance(here, Local) and here.instance is inst
    assert isinstance(await a.route("g", "c1", forwarded=True), Local)  # the hop's end

    there = await b.route("g", "c1")
    assert isinstance(there, Forward)
    assert there.url == A_URL
    assert (there.record.owner, there.record.epoch) == (a.node_id, 1)
    assert (there.record.group, there.record.name) == ("g", "c1")
    assert there.record.spec["request_timeout_ms"] == 4000
    assert InstanceSpec.from_dict(there.record.spec) == inst.spec

    with pytest.raises(Moving):  # a forwarded request is never forwarded again
        await b.route("g", "c1", forwarded=True)
    assert fb.built == []  # B built nothing: A is alive
    assert fa.built == [inst]
    rec = await directory.get("g", "c1")
    assert rec is not None and (rec.owner, rec.epoch) == (a.node_id, 1)


async def test_create_is_unique_across_the_cluster(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    await a.create(spec())
    with pytest.raises(InstanceExists):
        await a.create(spec())
    with pytest.raises(InstanceExists):
        await b.create(spec())
    assert fb.built == []
    other = await b.create(spec("c2"))
    assert isinstance(await b.route("g", "c2"), Local)
    fwd = await a.route("g", "c2")
    assert isinstance(fwd, Forward) and fwd.url == B_URL
    assert other.epoch == 1


# --- (b) unknown ------------------------------------------------------------------------------


async def test_unknown_instance_is_not_found(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, fa = await cluster(A_URL, directory)
    with pytest.raises(InstanceNotFound):
        await a.route("g", "nobody")
    with pytest.raises(InstanceNotFound):
        await a.route("g", "nobody", forwarded=True)
    await a.create(spec("c1"))
    with pytest.raises(InstanceNotFound):  # same name, other group
        await a.route("other", "c1")
    assert len(fa.built) == 1


# --- (c) dead owner: adopted --------------------------------------------------------------------


async def test_instance_of_a_dead_owner_is_adopted(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    inst = await a.create(spec(auto_offset_reset="earliest"))
    inst.subscription = {"topics": ["orders"]}
    await a.saved(inst)

    await a.lease.stop()  # A stops renewing (crashed) ...
    await directory.drop_lease(a.node_id)  # ... and its lease has run out

    got = await b.route("g", "c1")
    assert isinstance(got, Local)
    (adopted,) = fb.built
    assert got.instance is adopted
    assert adopted.spec == inst.spec  # rebuilt from the record
    assert adopted.started
    assert adopted.restored == [({"topics": ["orders"]}, {})]
    assert adopted.epoch == 2
    rec = await directory.get("g", "c1")
    assert rec is not None
    assert (rec.owner, rec.epoch) == (b.node_id, 2)
    assert rec.subscription == {"topics": ["orders"]}
    # B now serves it locally, and A (were it to come back) is refused by the directory.
    again = await b.route("g", "c1")
    assert isinstance(again, Local) and again.instance is adopted
    assert len(fb.built) == 1
    assert not await directory.update(
        InstanceRecord("g", "c1", a.node_id, 1, inst.spec.to_dict()), 60_000
    )


async def test_dead_owner_by_lease_expiry(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory, lease_ms=150)
    b, fb = await cluster(B_URL, directory)
    await a.create(spec())
    await a.lease.stop()  # no more renewals: the lease runs out by itself
    await asyncio.sleep(0.2)
    assert await directory.lease(a.node_id) is None
    got = await b.route("g", "c1")
    assert isinstance(got, Local) and got.instance is fb.built[0]
    rec = await directory.get("g", "c1")
    assert rec is not None and (rec.owner, rec.epoch) == (b.node_id, 2)


async def test_forwarded_request_for_a_dead_owner_is_adopted_not_refused(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    await a.create(spec())
    await a.lease.stop()
    await directory.drop_lease(a.node_id)
    got = await b.route("g", "c1", forwarded=True)
    assert isinstance(got, Local) and got.instance is fb.built[0]


# --- (d) drained owner: adopted at once, with its positions ---------------------------------------


async def test_drained_owner_hands_over_positions(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    inst = await a.create(spec())
    inst.subscription = {"partitions": [["orders", 0], ["orders:eu", 3]]}
    await a.saved(inst)
    inst.positions = {TopicPartition("orders", 0): 42, TopicPartition("orders:eu", 3): 7}
    assert isinstance(await b.route("g", "c1"), Forward)

    await a.stop()  # drain
    assert inst.handed_over
    assert inst.stops == []  # closed by the hand-over, not stopped (which would commit)
    rec = await directory.get("g", "c1")
    assert rec is not None
    assert rec.owner == ""  # released: nobody has to wait for a lease to lapse
    assert rec.positions == {"orders:0": 42, "orders:eu:3": 7}
    assert await directory.lease(a.node_id) is None
    with pytest.raises(Moving):
        await a.route("g", "c1")  # a draining replica serves nothing

    b.lease._urls.clear()  # B's cache of A's address plays no part: A's record is released
    got = await b.route("g", "c1")
    assert isinstance(got, Local)
    (adopted,) = fb.built
    assert adopted.restored == [
        (
            {"partitions": [["orders", 0], ["orders:eu", 3]]},
            {TopicPartition("orders", 0): 42, TopicPartition("orders:eu", 3): 7},
        )
    ]
    rec = await directory.get("g", "c1")
    assert rec is not None
    assert (rec.owner, rec.epoch) == (b.node_id, 2)
    assert rec.positions == {}  # single use: a later crash resumes from commits


async def test_drained_owner_is_adopted_even_while_its_address_is_cached(cluster: Any) -> None:
    """B learnt A's URL a moment ago; A drains; B must adopt at once, not forward to A."""
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    await a.create(spec())
    assert isinstance(await b.route("g", "c1"), Forward)  # caches A's URL
    await a.stop()
    got = await b.route("g", "c1")
    assert isinstance(got, Local) and got.instance is fb.built[0]


async def test_stop_is_idempotent(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    inst = await a.create(spec())
    await a.stop()
    await a.stop()
    assert inst.handed_over
    rec = await directory.get("g", "c1")
    assert rec is not None and rec.owner == ""
    with pytest.raises(Moving):
        await a.create(spec("c2"))


# --- (e) delete -------------------------------------------------------------------------------


async def test_deleted_instance_is_gone_everywhere(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, _ = await cluster(B_URL, directory)
    inst = await a.create(spec())
    await a.delete(inst)
    assert inst.stops == [True]  # a delete leaves the group normally (commit allowed)
    assert await directory.get("g", "c1") is None
    with pytest.raises(InstanceNotFound):
        await a.route("g", "c1")
    with pytest.raises(InstanceNotFound):
        await b.route("g", "c1")
    again = await b.create(spec())  # the name is free again
    assert again.epoch == 1


# --- (f) lapsed lease: the zombie steps back ----------------------------------------------------


async def test_lapsed_owner_drops_its_copy_after_adoption(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, fa = await cluster(A_URL, directory)
    b, _ = await cluster(B_URL, directory)
    inst = await a.create(spec())
    await directory.drop_lease(a.node_id)  # A was paused past its lease
    got = await b.route("g", "c1")
    assert isinstance(got, Local)

    await a.lease.renew()  # A wakes up: the renewal says the lease had lapsed
    assert inst.stops == [False]  # dropped without committing anything
    fwd = await a.route("g", "c1")
    assert isinstance(fwd, Forward)
    assert fwd.url == B_URL
    assert (fwd.record.owner, fwd.record.epoch) == (b.node_id, 2)
    assert fa.built == [inst]
    assert isinstance(await b.route("g", "c1"), Local)


async def test_lapsed_owner_keeps_instances_nobody_took(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    inst = await a.create(spec())
    await directory.drop_lease(a.node_id)
    await a.lease.renew()
    assert inst.stops == []
    got = await a.route("g", "c1")
    assert isinstance(got, Local) and got.instance is inst


async def test_stale_lease_is_confirmed_before_serving_locally(cluster: Any) -> None:
    """A paused owner renews before it serves: it notices the lapse and forwards instead."""
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory, lease_ms=300)
    b, _ = await cluster(B_URL, directory)
    inst = await a.create(spec())
    await a.lease.stop()  # the renewal loop is starved (paused process)
    await asyncio.sleep(0.35)  # the lease lapsed, and A's last renewal is stale
    assert isinstance(await b.route("g", "c1"), Local)  # B adopted
    fwd = await a.route("g", "c1")  # no explicit renew: route() confirms the lease itself
    assert isinstance(fwd, Forward) and fwd.url == B_URL
    assert inst.stops == [False]


async def test_lapse_noticed_while_the_store_blips_is_not_forgotten(cluster: Any) -> None:
    """The lease renewal succeeds but the ownership re-check cannot read the directory.

    Once the store answers again, the old owner must still find out that its instance was
    adopted elsewhere, instead of serving it alongside the new owner.
    """
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory)
    b, _ = await cluster(B_URL, directory)
    inst = await a.create(spec())
    await a.lease.stop()  # A is paused (renew by hand below, as its loop would)
    await directory.drop_lease(a.node_id)
    assert isinstance(await b.route("g", "c1"), Local)  # B adopted

    directory.failing = {"get"}  # Redis blips just as A wakes up: the renewal itself lands ...
    with pytest.raises(StoreUnavailable):
        await a.lease.renew()  # ... but re-checking ownership cannot read the records
    directory.failing = set()
    await a.lease.renew()  # the next periodic renewal, with the store healthy again

    got = await a.route("g", "c1")
    assert not (isinstance(got, Local) and got.instance is inst), (
        "A still serves the instance B adopted: two owners"
    )
    assert inst.stops == [False]


# --- (g) store down -----------------------------------------------------------------------------


async def test_store_down_fails_lookups_but_local_instances_keep_working(cluster: Any) -> None:
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    mine = await a.create(spec("mine"))
    await b.create(spec("theirs"))
    directory.failing = {"get"}

    got = await a.route("g", "mine")
    assert isinstance(got, Local) and got.instance is mine
    with pytest.raises(StoreUnavailable):
        await a.route("g", "theirs")
    with pytest.raises(StoreUnavailable):
        await a.route("g", "nobody")  # unknown: cannot tell, so retriable, not 404
    with pytest.raises(StoreUnavailable):
        await a.route("g", "theirs", forwarded=True)

    directory.failing = set()
    fwd = await a.route("g", "theirs")
    assert isinstance(fwd, Forward) and fwd.url == B_URL
    assert len(fb.built) == 1


async def test_local_route_does_not_read_the_directory(cluster: Any) -> None:
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory)
    await a.create(spec())
    before = directory.gets
    for _ in range(5):
        assert isinstance(await a.route("g", "c1"), Local)
    assert directory.gets == before


async def test_owner_cut_off_from_the_store_fences_itself_before_its_lease_expires(
    cluster: Any,
) -> None:
    """Others may adopt once the lease expires, so an owner that cannot renew stops serving
    (a retriable StoreUnavailable) and its instances leave their groups before that."""
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory, lease_ms=400)
    inst = await a.create(spec())
    assert isinstance(await a.route("g", "c1"), Local)
    directory.failing = set(FlakyDirectory.ALL)  # only A is cut off
    await asyncio.sleep(0.4 * 0.6 + 0.1)  # past the fence point, before the lease expires
    with pytest.raises(StoreUnavailable):
        await a.route("g", "c1")
    assert inst.stops == [True]  # left its group, committing what it delivered
    assert a.local.find("g", "c1") is None

    directory.failing = set()  # the store answers again: the instance is served again
    await a.lease.renew()
    got = await a.route("g", "c1")
    assert isinstance(got, Local) and got.instance is not inst  # re-adopted from its record
    rec = await directory.get("g", "c1")
    assert rec is not None and (rec.owner, rec.epoch) == (a.node_id, 2)


async def test_fenced_owner_answers_retriable_errors_even_before_the_fence_callback(
    cluster: Any,
) -> None:
    """Serving stops on time, even if the fence callback has not run (starved loop)."""
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory, lease_ms=200)
    inst = await a.create(spec())
    await a.lease.stop()  # renewal loop and watchdog starved
    await asyncio.sleep(0.2)
    directory.failing = set(FlakyDirectory.ALL)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await a.route("g", "c1")
    assert inst.stops == []


async def test_create_whose_answer_was_lost_can_be_retried(cluster: Any) -> None:
    directory = FlakyDirectory()
    a, fa = await cluster(A_URL, directory)
    directory.lost_answers = {"create"}  # the record lands, the reply does not
    with pytest.raises(StoreUnavailable):
        await a.create(spec())
    assert fa.built == []
    with pytest.raises(InstanceNotFound):  # not half-created: nothing serves it
        await a.route("g", "c1")
    directory.lost_answers = set()
    inst = await a.create(spec())  # not 409: the orphan record was A's own
    assert inst.epoch == 1
    assert isinstance(await a.route("g", "c1"), Local)
    rec = await directory.get("g", "c1")
    assert rec is not None and (rec.owner, rec.epoch) == (a.node_id, 1)


# --- adoption races, expiry ---------------------------------------------------------------------


async def test_two_replicas_racing_to_adopt_leave_one_owner(cluster: Any) -> None:
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    c, fc = await cluster("http://c:3", directory)
    await a.create(spec())
    await a.lease.stop()
    await directory.drop_lease(a.node_id)
    outcomes = await asyncio.gather(b.route("g", "c1"), c.route("g", "c1"), return_exceptions=True)
    winners = [o for o in outcomes if isinstance(o, Local)]
    assert len(winners) == 1, outcomes
    assert len(fb.built) + len(fc.built) == 1
    loser = c if isinstance(outcomes[0], Local) else b
    lost = outcomes[1] if loser is c else outcomes[0]
    assert isinstance(lost, Moving), lost  # it lost the claim: retriable, never a 2nd owner
    rec = await directory.get("g", "c1")
    assert rec is not None and rec.epoch == 2
    winner = b if loser is c else c
    assert rec.owner == winner.node_id
    again = await loser.route("g", "c1")  # the retry finds the new owner
    assert isinstance(again, Forward) and again.url == winner.node_url


async def test_concurrent_requests_adopt_once(cluster: Any) -> None:
    directory = FlakyDirectory()
    a, _ = await cluster(A_URL, directory)
    b, fb = await cluster(B_URL, directory)
    await a.create(spec())
    await a.lease.stop()
    await directory.drop_lease(a.node_id)
    routes = await asyncio.gather(*(b.route("g", "c1") for _ in range(5)))
    assert len(fb.built) == 1
    assert all(isinstance(r, Local) and r.instance is fb.built[0] for r in routes)
    rec = await directory.get("g", "c1")
    assert rec is not None and (rec.owner, rec.epoch) == (b.node_id, 2)


async def test_expired_instance_is_not_found_and_its_record_goes(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, _ = await cluster(B_URL, directory)
    inst = await a.create(spec())
    assert [s.name for s in a.local.expire(time.monotonic() + TIMEOUT_MS / 1000)] == ["c1"]
    await asyncio.sleep(0)  # let the closing task run
    assert inst.stops == [True]
    with pytest.raises(InstanceNotFound):
        await a.route("g", "c1")
    with pytest.raises(InstanceNotFound):  # what B's forwarded request meets on A
        await a.route("g", "c1", forwarded=True)
    await a._flush()  # what the background sync does within a second
    assert await directory.get("g", "c1") is None
    with pytest.raises(InstanceNotFound):
        await b.route("g", "c1")


# --- caps ---------------------------------------------------------------------------------------


async def test_instance_caps_per_replica_and_per_cluster(cluster: Any) -> None:
    """A full replica refuses creates and adoptions (another may have room); a full
    cluster refuses creates everywhere; deleting makes room again."""
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory, max_instances=2, max_cluster_instances=3)
    b, _ = await cluster(B_URL, directory, max_instances=2, max_cluster_instances=3)
    first = await a.create(spec("c1"))
    await a.create(spec("c2"))
    with pytest.raises(TooManyInstances) as full:
        await a.create(spec("c3"))
    assert full.value.scope == "replica"
    await b.create(spec("c3"))
    with pytest.raises(TooManyInstances) as full:
        await b.create(spec("c4"))
    assert full.value.scope == "cluster"
    await a.delete(first)
    await b.create(spec("c4"))
    assert {r.name for r in [await directory.get("g", n) for n in ("c2", "c3", "c4")] if r} == {
        "c2",
        "c3",
        "c4",
    }


async def test_an_instance_is_visible_only_to_the_principal_that_created_it(cluster: Any) -> None:
    directory = MemoryDirectory()
    a, _ = await cluster(A_URL, directory)
    b, _ = await cluster(B_URL, directory)
    bound = InstanceSpec(group="g", name="c1", principal="alice")
    inst = await a.create(bound)
    assert isinstance(await a.route("g", "c1", principal="alice"), Local)
    assert isinstance(await b.route("g", "c1", principal="alice"), Forward)
    for router in (a, b):
        for caller in ("bob", None):  # another principal, or none at all
            with pytest.raises(InstanceNotFound):
                await router.route("g", "c1", principal=caller)
    assert a.local.find("g", "c1") is inst  # refused callers touched nothing
    # Unbound instances (authentication off when created) serve anyone, as before.
    await a.create(spec("c2"))
    assert isinstance(await a.route("g", "c2", principal="bob"), Local)
