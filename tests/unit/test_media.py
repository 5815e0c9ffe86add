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


@pytest.mark.parametrize("accept", ["application/json", "text/plain", f"{media.V2};q=0"])
def test_not_acceptable(accept) -> None:
    with pytest.raises(media.NotAcceptable):
        media.negotiate(req(accept), media.V2_ONLY)


def test_content_type_check() -> None:
    assert media.check_content_type(req(ctype=media.BINARY), media.PRODUCE_CONSUMES) == media.BINARY
    assert media.check_content_type(req(), media.PRODUCE_CONSUMES) == ""
    with pytest.raises(GatewayError) as err:
        media.check_content_type(req(ctype="application/json"), media.PRODUCE_CONSUMES)
    assert (err.value.status, err.value.error_code) == (415, 415)
