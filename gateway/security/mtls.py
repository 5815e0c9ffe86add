"""mTLS authentication: the verified client certificate of the connection names the principal.

Only a certificate the TLS handshake verified against ``ssl.ca.location`` counts (the listener
asks for one with ``ssl.client.authentication=REQUESTED|REQUIRED``; start-up refuses MTLS
otherwise). A connection without one carries no mTLS credentials (the next method is tried);
a verified certificate that lacks the configured name (say, no CN) is refused, since falling
through to another method would let a certificate holder be someone else.

Which part names the principal is ``authentication.mtls.principal``: the subject's CN, the
first DNS or e-mail SAN, or the whole subject as RFC 4514 text (``CN=alice,O=Acme``), which is
what Kafka's own SSL principal looks like.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import GatewayError
from .principal import Principal

Method = Callable[[web.Request], Awaitable[Principal | None]]

# Certificates seen recently: clients reuse one certificate for every request, and parsing
# DER on each would be wasted work.
_CACHE_SIZE = 1024


class NoName(ValueError):
    """The certificate has no value of the configured kind."""


@functools.lru_cache(maxsize=_CACHE_SIZE)
def principal_name(der: bytes, part: str) -> str:
    cert = x509.load_der_x509_certificate(der)
    if part == "SUBJECT":
        return cert.subject.rfc4514_string()
    if part == "CN":
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = names[0].value if names else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value:
            return value
        raise NoName("the client certificate has no subject CN")
    kind = x509.DNSName if part == "SAN_DNS" else x509.RFC822Name
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    values = sans.get_values_for_type(kind)
    if values:
        return values[0]
    raise NoName(f"the client certificate has no {part.replace('_', ' ')} name")


def mtls_method(part: str, refused: Callable[[str], GatewayError]) -> Method:
    """The ``MTLS`` method; ``refused`` builds the 401 (the Authenticator's)."""

    async def mtls(request: web.Request) -> Principal | None:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return None
        # getpeercert() is non-empty only for a certificate the handshake verified.
        if not ssl_object.getpeercert():
            return None
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return None
        try:
            name = principal_name(der, part)
        except (NoName, ValueError) as exc:
            raise refused(str(exc)) from None
        return Principal(name, frozenset(), "mtls")

    return mtls
