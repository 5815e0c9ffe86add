"""Authentication: a request's credentials become a :class:`Principal`, or a 401.

Off by default (``authentication.method=NONE``: every caller is ``ANONYMOUS``, as with
Confluent's proxy). ``authentication.method`` takes a comma-separated list of methods; a
request is authenticated by the first method whose credentials it carries (an
``Authorization: Basic``/``Bearer`` header, or a verified client certificate), so a
deployment can accept, say, service accounts with certificates and people with tokens.

A request another replica forwarded is not authenticated again: the replica that received it
did that, and its signed hop carries the principal (see :mod:`gateway.forwarding`). Health,
readiness, metrics and the API document are public: probes and scrapers carry no user
credentials.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import Config
from ..errors import GatewayError
from ..forwarding import FORWARDED
from ..observability import UNAUTHENTICATED_PATHS
from .basic import BasicUsers
from .jwt import bearer_method
from .mtls import mtls_method
from .principal import PRINCIPAL, Principal

# The live topic page (ui.enabled) is static; the stream it opens is authenticated as usual.
PUBLIC_PATHS = UNAUTHENTICATED_PATHS | {"/openapi.json", "/ui/stream"}
METHODS = ("NONE", "BASIC", "BEARER", "MTLS")

# One authentication method: the principal for a request that carries this method's
# credentials, None when it carries none of them, a 401 GatewayError when they are wrong.
Method = Callable[[web.Request], Awaitable[Principal | None]]


class Authenticator:
    """Built once per application from the config; ``enabled`` is False for ``NONE``."""

    def __init__(self, config: Config) -> None:
        self.realm = config.authentication_realm
        self._methods: list[tuple[str, Method]] = []
        for name in config.authentication_method:
            if name == "BASIC":
                self._methods.append(("Basic", self._basic_method(config)))
            elif name == "BEARER":
                self._methods.append(("Bearer", bearer_method(config)))
            elif name == "MTLS":
                self._methods.append(
                    ("mTLS", mtls_method(config.authentication_mtls_principal, self.refused))
                )
        self.enabled = bool(self._methods)

    def add(self, scheme: str, method: Method) -> None:
        """Register another method (bearer tokens, client certificates)."""
        self._methods.append((scheme, method))
        self.enabled = True

    def challenge(self) -> str:
        # Every 401 carries a challenge (HTTP requires one); a certificate-only deployment
        # names its scheme too, so a client can tell why it was refused.
        return ", ".join(f'{scheme} realm="{self.realm}"' for scheme, _ in self._methods)

    def refused(self, message: str) -> GatewayError:
        challenge = self.challenge()
        return GatewayError(
            401, 40101, message, headers={"WWW-Authenticate": challenge} if challenge else {}
        )

    async def authenticate(self, request: web.Request) -> Principal:
        for _, method in self._methods:
            principal = await method(request)
            if principal is not None:
                return principal
        raise self.refused("Authentication required: no valid credentials in the request")

    def _basic_method(self, config: Config) -> Method:
        users = BasicUsers(config.authentication_basic_users_file)

        async def basic(request: web.Request) -> Principal | None:
            header = request.headers.get("Authorization", "")
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise self.refused("Malformed Basic credentials") from None
            name, sep, password = decoded.partition(":")
            user = await users.check(name, password) if sep else None
            if user is None:
                raise self.refused("Invalid user name or password")
            return Principal(user.name, user.groups, "basic", secret=password)

        return basic


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


@web.middleware
async def authentication_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTHENTICATOR]
    if auth.enabled and not request.get(FORWARDED, False) and request.path not in PUBLIC_PATHS:
        request[PRINCIPAL] = await auth.authenticate(request)
    return await handler(request)
