"""Content negotiation as Confluent's JAX-RS resources do it."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway import media
from gateway.errors import GatewayError


def req(accept: str | None = None, ctype: str | None = None):
    headers = {}
    if accept is not None:
        headers["Accept"] = accept
    if ctype is not None:
        headers["Content-Type"] = ctype
    return make_mocked_request("GET", "/", headers=headers)


@pytest.mark.parametrize(
    ("accept", "offered", "chosen"),
    [
        (None, media.CONSUMERS_OFFER, media.V2),
        ("*/*", media.CONSUMERS_OFFER, media.V2),
        (media.JSON_V2, media.CONSUMERS_OFFER, media.JSON_V2),
        (None, media.RECORDS_OFFER, media.BINARY),
        (f"{media.JSON_V2}, {media.BINARY}", media.RECORDS_OFFER, media.BINARY),
        (f"{media.JSON_V2}, {media.BINARY};q=0.5", media.RECORDS_OFFER, media.JSON_V2),
        ("application/*", media.V2_ONLY, media.V2),
    ],
)
def test_negotiate(accept, offered, chosen) -> None:
    assert media.negotiate(req(accept), offered) == chosen


@pytest.mark.parametrize(
    "accept", ["application/xml", "text/plain", f"{media.V2};q=0", "application/json;q=0"]
)
def test_not_acceptable(accept) -> None:
    with pytest.raises(media.NotAcceptable):
        media.negotiate(req(accept), media.V2_ONLY)


def test_remembered_answers_are_the_same_answers() -> None:
    """The second request with an Accept header is answered from the cache: same type for
    the same offer, a different one for another offer, and a refusal stays a refusal."""
    accept = f"{media.JSON_V2}, {media.BINARY};q=0.5"
    for _ in range(3):
        assert media.negotiate(req(accept), media.RECORDS_OFFER) == media.JSON_V2
        assert media.negotiate(req(accept), media.CONSUMERS_OFFER) == media.JSON_V2
        with pytest.raises(media.NotAcceptable):
            media.negotiate(req("application/xml"), media.V2_ONLY)
    assert (accept, media.RECORDS_OFFER, frozenset()) in media._NEGOTIATED


def test_the_cache_stays_bounded() -> None:
    """A client inventing Accept headers cannot grow it: long ones are not kept, and it
    starts over when full."""
    long_header = "application/json;" + "x=1;" * 100
    assert media.negotiate(req(long_header), media.V2_ONLY) == media.JSON
    assert all(key[0] != long_header for key in media._NEGOTIATED)
    for i in range(media._NEGOTIATED_MAX + 10):
        assert media.negotiate(req(f"application/json;v={i}"), media.V2_ONLY) == media.JSON
    assert len(media._NEGOTIATED) <= media._NEGOTIATED_MAX


def test_content_type_check() -> None:
    assert media.check_content_type(req(ctype=media.BINARY), media.PRODUCE_CONSUMES) == media.BINARY
    assert media.check_content_type(req(), media.PRODUCE_CONSUMES) == ""
    with pytest.raises(GatewayError) as err:
        media.check_content_type(req(ctype="application/json"), media.PRODUCE_CONSUMES)
    assert (err.value.status, err.value.error_code) == (415, 415)


# --- tolerance: plain application/json ---------------------------------------------------------


@pytest.mark.parametrize(
    "offered",
    [media.V2_ONLY, media.V2_LOW, media.CONSUMERS_OFFER, media.RECORDS_OFFER],
    ids=["v2-only", "v2-low", "consumers", "records"],
)
def test_plain_json_is_accepted_wherever_json_is_answered(offered) -> None:
    assert media.negotiate(req("application/json"), offered) == media.JSON
    assert media.negotiate(req("application/json; charset=utf-8"), offered) == media.JSON
    # ... but never chosen over Confluent's own types when the client lets us choose.
    for accept in (None, "*/*", "application/*", "application/json;q=0.5, */*"):
        assert media.negotiate(req(accept), offered) != media.JSON, accept


def test_plain_json_loses_to_a_named_v2_type_of_equal_q() -> None:
    accept = f"application/json, {media.JSON_V2}"
    assert media.negotiate(req(accept), media.CONSUMERS_OFFER) == media.JSON_V2
    assert media.negotiate(req(accept), media.RECORDS_OFFER) == media.JSON_V2
    assert media.negotiate(req(f"application/json, {media.V2};q=0.5"), media.V2_ONLY) == media.JSON


def test_not_acceptable_is_a_confluent_error() -> None:
    with pytest.raises(GatewayError) as err:
        media.negotiate(req("text/html"), media.CONSUMERS_OFFER)
    assert isinstance(err.value, media.NotAcceptable)
    assert (err.value.status, err.value.error_code) == (406, 406)
    assert err.value.message == "HTTP 406 Not Acceptable"


# --- record streams on GET .../records ---------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("text/event-stream", "text/event-stream"),
        ("application/x-ndjson", "application/x-ndjson"),
        (f"text/event-stream, {media.BINARY}", "text/event-stream"),  # naming it asks for it
        (f"text/event-stream;q=0.5, {media.BINARY}", media.BINARY),  # the client's q first
        ("application/x-ndjson, application/json", "application/x-ndjson"),
        # Wildcards never start a stream: v2 clients keep getting one array.
        (None, media.BINARY),
        ("*/*", media.BINARY),
        ("application/*", media.BINARY),
        ("text/event-stream;q=0, */*", media.BINARY),
    ],
)
def test_records_type_streams_only_when_named(accept, chosen) -> None:
    assert media.records_type(req(accept)) == chosen


@pytest.mark.parametrize("accept", ["text/*", "text/event-stream;q=0", "text/plain"])
def test_records_type_never_guesses_a_stream(accept) -> None:
    with pytest.raises(media.NotAcceptable):
        media.records_type(req(accept))


@pytest.mark.parametrize("accept", ["text/event-stream", "application/x-ndjson"])
@pytest.mark.parametrize(
    "offered",
    [media.V2_ONLY, media.V2_LOW, media.CONSUMERS_OFFER, media.RECORDS_OFFER],
    ids=["v2-only", "v2-low", "consumers", "records-array"],
)
def test_stream_types_are_not_acceptable_elsewhere(accept, offered) -> None:
    with pytest.raises(media.NotAcceptable):
        media.negotiate(req(accept), offered)
