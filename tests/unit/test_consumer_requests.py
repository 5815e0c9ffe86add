"""Consumer request parsing: Confluent's validation rules without its 500s."""

from __future__ import annotations

import pytest

from gateway.consume.requests import parse_create, parse_timestamp
from gateway.errors import GatewayError


def test_create_defaults_and_generated_name() -> None:
    spec = parse_create("g", None, "proxy1")
    assert spec.format == "binary"
    assert spec.name.startswith("rest-consumer-proxy1-")
    assert spec.auto_commit_enable is None and spec.auto_offset_reset is None


def test_create_coerces_like_jackson() -> None:
    spec = parse_create(
        "g",
        {
            "name": "n",
            "format": "JSON",
            "auto.commit.enable": False,
            "fetch.min.bytes": "10",
            "requestWaitMs": 250,
        },
    )
    assert (
        spec.format,
        spec.auto_commit_enable,
        spec.fetch_min_bytes,
        spec.request_timeout_ms,
    ) == ("json", False, 10, 250)


def test_legacy_id_wins_over_name() -> None:
    spec = parse_create("g", {"id": "legacy", "name": "n"})
    assert (spec.name, spec.consumer_id) == ("legacy", "legacy")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"format": "xml"}, 422, 422),
        ({"auto.offset.reset": "bad-config"}, 422, 42204),
        ({"auto.commit.enable": "maybe"}, 422, 42204),
        ({"fetch.min.bytes": -2}, 422, 40001),
        ({"fetch.min.bytes": 10_000_001}, 422, 40001),
        ({"unknown": 1}, 422, 422),
        ({"name": "a/b"}, 422, 422),
        ({"fetch.min.bytes": "lots"}, 400, 400),
        ([], 400, 400),
    ],
)
def test_create_rejections(body, status, code) -> None:
    with pytest.raises(GatewayError) as err:
        parse_create("g", body)
    assert (err.value.status, err.value.error_code) == (status, code)


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2020-10-30T19:39:45Z", 1604086785000),
        ("2020-10-30T19:39:45.5Z", 1604086785500),
        ("2020-10-30T21:39:45+0200", 1604086785000),
        ("2020-10-30T21:39:45+02:00", 1604086785000),
        (1604086785, 1604086785000),
    ],
)
def test_timestamps(value, ms) -> None:
    assert parse_timestamp(value) == ms


@pytest.mark.parametrize("value", ["yesterday", "2020-10-30T19:39:45", None, True, {}])
def test_bad_timestamps(value) -> None:
    with pytest.raises(GatewayError) as err:
        parse_timestamp(value)
    assert err.value.status == 422
