"""Call signatures of the fixtures that return callables (tests/conftest.py and
tests/cluster/conftest.py).

Annotate a test's parameters with these (``new_topic: NewTopicFn``) to get completion and
type checking of the calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import ConsumerRecord

if TYPE_CHECKING:
    from tests.harness.cluster import GatewayCluster


class MakeGatewayFn(Protocol):
    async def __call__(
        self, props: Mapping[str, str] | None = None
    ) -> TestClient[web.Request, web.Application]: ...


class NewTopicFn(Protocol):
    async def __call__(
        self,
        partitions: int = 1,
        name: str | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> str: ...


class ReadBackFn(Protocol):
    async def __call__(
        self,
        topic: str,
        n: int,
        timeout: float = 15.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
    ) -> list[ConsumerRecord[bytes, bytes]]: ...


class MakeClusterFn(Protocol):
    """``make_cluster`` in tests/cluster/conftest.py: started replicas behind HAProxy."""

    async def __call__(
        self, n: int = 3, props: Mapping[str, str] | None = None
    ) -> GatewayCluster: ...
