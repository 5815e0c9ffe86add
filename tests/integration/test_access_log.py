"""Access log lines, the JSON format, and aiokafka's endless repeats summarised."""

from __future__ import annotations

import asyncio
import logging
import uuid

import orjson
import pytest

from gateway.observability.log_filters import JsonFormatter, RepeatSummary
from tests.support.v2 import V2

ACCESS = "event_gateway.access"


async def test_one_line_per_request_with_template_status_principal_and_no_secrets(
    gateway, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with gateway.get(
        "/topics/secret-topic-name?password=hunter2",
        headers={"Authorization": "Basic Zm9vOmJhcg=="},
    ) as resp:
        assert resp.status == 404
    async with gateway.get("/healthz") as resp:
        assert resp.status == 200
    lines = [r for r in caplog.records if r.name == ACCESS]
    assert len(lines) == 2
    first = lines[0].getMessage()
    assert first.startswith("GET /topics/{topic} 404 ")
    assert "principal=ANONYMOUS forwarded=no" in first
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["route"] == "/topics/{topic}" and fields["status"] == 404
    assert fields["forwarded"] is False and fields["duration_ms"] >= 0
    text = " ".join(r.getMessage() for r in lines) + repr([r.__dict__ for r in lines])
    for secret in ("secret-topic-name", "hunter2", "Zm9vOmJhcg", "Authorization"):
        assert secret not in text


def test_json_format_is_one_object_per_line_with_the_access_fields():
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.fields = {"route": "/x", "status": 200}
    out = orjson.loads(JsonFormatter().format(record))
    assert out["message"] == "GET /x" and out["route"] == "/x" and out["status"] == 200
    assert out["level"] == "INFO" and out["logger"] == ACCESS
    assert "\n" not in JsonFormatter().format(record)


def test_repeats_are_summarised_once_per_interval():
    now = [0.0]
    summary = RepeatSummary(60, clock=lambda: now[0])

    def emit(msg: str = "Topic %s not found in cluster metadata", arg: str = "t1") -> bool:
        record = logging.LogRecord(
            "aiokafka.cluster", logging.ERROR, __file__, 1, msg, (arg,), None
        )
        passed = summary.filter(record)
        if passed:
            emitted.append(record.getMessage())
        return passed

    emitted: list[str] = []
    assert emit()  # the first occurrence passes as is
    for _ in range(599):  # ten a second for a minute
        now[0] += 0.1
        emit()
    assert emit("Topic %s not found in cluster metadata", "t2")  # another topic: its own key
    now[0] += 0.2
    assert emit()  # past the interval: one summary line
    assert emitted[0] == "Topic t1 not found in cluster metadata"
    assert emitted[2].startswith("Topic t1 not found in cluster metadata (repeated 600 times")
    assert len(emitted) == 3


async def test_a_consumer_on_a_missing_topic_does_not_flood_the_log(
    gateway, caplog: pytest.LogCaptureFixture
):
    """aiokafka logs this error on every metadata refresh for as long as the subscription
    lasts; with the filter the log gets the first line and nothing more within the minute."""
    caplog.set_level(logging.WARNING, logger="aiokafka")
    v2 = V2(gateway)
    group = f"g-{uuid.uuid4().hex[:8]}"
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    status, _, _ = await v2.call("POST", f"/consumers/{group}", {"name": "c"})
    assert status == 200
    inst = f"/consumers/{group}/instances/c"
    status, _, _ = await v2.call("POST", f"{inst}/subscription", {"topics": [missing]})
    assert status == 204
    for _ in range(6):  # keep the consumer polling for ~3 s
        await v2.call(
            "GET",
            f"{inst}/records",
            ctype=None,
            accept="application/vnd.kafka.binary.v2+json",
            params={"timeout": "500"},
        )
        await asyncio.sleep(0.05)
    about = [r for r in caplog.records if missing in r.getMessage()]
    summary = next(
        f for f in logging.getLogger("aiokafka.cluster").filters if isinstance(f, RepeatSummary)
    )
    repeats = [v for k, v in summary._seen.items() if missing in k[2]]
    # The real aiokafka records went through the filter (it is on the loggers that emit
    # them) and each distinct message reached the log at most once; how often they repeated
    # is counted in the filter (the clock-driven test above checks the summary itself).
    assert repeats, "aiokafka never complained: the test no longer exercises the filter"
    messages = [(r.name, r.getMessage()) for r in about]
    assert len(messages) == len(set(messages)), messages
