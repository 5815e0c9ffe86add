"""TLS: the ``https://`` listener's context, its reload on SIGHUP, and the forwarder's context.

Certificates are PEM files named with librdkafka's keys (``ssl.certificate.location``,
``ssl.key.location``, ``ssl.ca.location``), not Confluent's Java keystores: PEM is what
cert-manager, Vault and Kubernetes secrets hand out, and Python reads it natively.

Reloading swaps the certificate and key *inside the same* :class:`ssl.SSLContext` the listener
was started with: new handshakes use the new pair, connections already open keep theirs, and
nothing is re-bound. A renewal tool may be half-way through writing the two files when the
signal arrives, so the pair is first read into memory, proven to match on a scratch context,
and only then loaded into the live one from that same in-memory copy: a bad pair leaves the
old one serving (OpenSSL would otherwise leave a live context holding a certificate without
its key). The files are small and loading them takes well under a millisecond, so it is done
on the event loop, where no handshake can run half-way through the swap.

Replicas forward to each other over HTTPS when their ``node.url`` is https. The forwarder
trusts ``node.ssl.ca.location`` (else ``ssl.ca.location``, else the system store), checks the
host name, and presents this replica's own certificate, so peers that require client
certificates accept it (the replica certificates must then be issued by the client CA).
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from cryptography import x509

from ..config import Config, ConfigError

log = logging.getLogger(__name__)

CLIENT_AUTH = {
    "NONE": ssl.CERT_NONE,
    "REQUESTED": ssl.CERT_OPTIONAL,
    "REQUIRED": ssl.CERT_REQUIRED,
}


@contextlib.contextmanager
def _private_copy(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open holding ``data`` (it takes file names only), in memory when
    the platform allows: a private key should not touch a disk it did not come from."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("event-gateway-tls", 0)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as tmp:  # created 0700
        path = Path(tmp) / "pem"
        path.write_bytes(data)
        yield str(path)


class TLS:
    """The TLS contexts of one application; built once from the config."""

    def __init__(self, config: Config) -> None:
        self._cert_file = config.ssl_certificate_location
        self._key_file = config.ssl_key_location
        self._password = config.ssl_key_password or None
        self.server: ssl.SSLContext | None = None
        self.client: ssl.SSLContext | None = None
        if config.listener.scheme == "https":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.verify_mode = CLIENT_AUTH[config.ssl_client_authentication]
            if config.ssl_ca_location:
                _load_ca(ctx, config.ssl_ca_location, "ssl.ca.location")
            self.server = ctx
        ca = config.node_ssl_ca_location or config.ssl_ca_location
        if self._cert_file or ca:
            key = "node.ssl.ca.location" if config.node_ssl_ca_location else "ssl.ca.location"
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            client.minimum_version = ssl.TLSVersion.TLSv1_2
            if ca:
                _load_ca(client, ca, key)
            self.client = client
        if self._cert_file and self._key_file:
            try:
                self._load_pair()
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"ssl.certificate.location: {exc}") from exc

    def reload(self) -> bool:
        """Load the certificate and key files again (SIGHUP); False, logged, if they are
        unusable, in which case the previous pair keeps serving."""
        if not (self._cert_file and self._key_file):
            return False
        try:
            expires = self._load_pair()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS certificate not reloaded, the previous one stays in use: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s (valid until %s)", self._cert_file, expires)
        return True

    def _load_pair(self) -> str:
        cert = Path(self._cert_file).read_bytes()
        key = Path(self._key_file).read_bytes()
        try:
            expires = x509.load_pem_x509_certificate(cert).not_valid_after_utc.isoformat()
        except ValueError:
            raise ValueError(f"{self._cert_file} is not a PEM certificate") from None
        with _private_copy(cert) as cert_path, _private_copy(key) as key_path:
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                scratch.load_cert_chain(cert_path, key_path, self._password)
            except ssl.SSLError as exc:
                raise ValueError(
                    f"{self._cert_file} and {self._key_file} are not a usable certificate and"
                    f" key ({exc.reason or exc})"
                ) from None
            for ctx in (self.server, self.client):
                if ctx is not None:
                    ctx.load_cert_chain(cert_path, key_path, self._password)
        return expires


def _load_ca(ctx: ssl.SSLContext, path: str, key: str) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}: cannot load CA certificates from {path}: {exc}") from exc


TLS_KEY = web.AppKey("tls", TLS)
