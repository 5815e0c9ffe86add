"""A thin v2 client over any aiohttp client for tests: explicit, no magic, real HTTP."""

from __future__ import annotations

from typing import Any

import orjson

V2_JSON = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/vnd.kafka.json.v2+json"


class V2:
    """Wraps an ``aiohttp`` TestClient or ClientSession whose base URL is the gateway."""

    def __init__(self, http: Any, prefix: str = "") -> None:
        self.http = http
        self.prefix = prefix

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str | None = V2_JSON,
        accept: str | None = None,
        raw: bytes | None = None,
        params: dict | None = None,
    ) -> tuple[int, Any, dict]:
        headers = {}
        data = raw
        if body is not None:
            data = orjson.dumps(body)
        if ctype and data is not None:
            headers["Content-Type"] = ctype
        if accept:
            headers["Accept"] = accept
        async with self.http.request(
            method, self.prefix + path, data=data, headers=headers, params=params
        ) as resp:
            text = await resp.read()
            parsed = orjson.loads(text) if text else None
            return resp.status, parsed, dict(resp.headers)

    async def create(self, group: str, **cfg: Any) -> tuple[int, Any]:
        status, body, _ = await self.call("POST", f"/consumers/{group}", cfg)
        return status, body

    def inst(self, group: str, name: str) -> str:
        return f"/consumers/{group}/instances/{name}"

    async def subscribe(self, group: str, name: str, topics: list[str]) -> int:
        status, _, _ = await self.call(
            "POST", self.inst(group, name) + "/subscription", {"topics": topics}
        )
        return status

    async def records(
        self, group: str, name: str, accept: str = BINARY, **params: Any
    ) -> tuple[int, Any, dict]:
        return await self.call(
            "GET", self.inst(group, name) + "/records", accept=accept, params=params or None
        )

    async def drain(
        self,
        group: str,
        name: str,
        want: int,
        accept: str = BINARY,
        deadline_reads: int = 40,
        **params: Any,
    ) -> list[dict]:
        """Read until ``want`` records arrived (bounded number of reads)."""
        got: list[dict] = []
        for _ in range(deadline_reads):
            status, body, _ = await self.records(group, name, accept, **params)
            assert status == 200, body
            got.extend(body)
            if len(got) >= want:
                break
        return got

    async def delete(self, group: str, name: str) -> int:
        status, _, _ = await self.call("DELETE", self.inst(group, name))
        return status
