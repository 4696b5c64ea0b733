"""Handshakes: an exchange after TCP connect and before the first message.

A handshake gets a :class:`HandshakeStream` (read, write, upgrade to TLS) and returns when the
connection is ready for messages. Bytes the peer sent after its part of the handshake stay in
the stream and are handed to the framer, so a handshake never eats the first message.
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol, runtime_checkable

from .errors import HandshakeError

__all__ = [
    "Handshake",
    "HandshakeStream",
    "NoHandshake",
    "TLSHandshake",
    "make_ssl_context",
]


@runtime_checkable
class HandshakeStream(Protocol):
    """The view of a connection a handshake works with (implemented by the transport)."""

    role: str  # "client" or "server"

    async def read(self, max_bytes: int = -1) -> bytes:
        """At least one byte (up to ``max_bytes``); ``b""`` at end of stream."""
        ...

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`HandshakeError` if the stream ends first."""
        ...

    async def readuntil(self, separator: bytes, limit: int = 65536) -> bytes:
        """Bytes up to and including ``separator``; :class:`HandshakeError` past ``limit``."""
        ...

    def unread(self, data: bytes) -> None:
        """Give bytes back: they go to the framer (or the next read) in front of the rest."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def start_tls(
        self, context: ssl.SSLContext, *, server_hostname: str | None = None
    ) -> None:
        """Upgrade to TLS in place; returns after the TLS handshake."""
        ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


@runtime_checkable
class Handshake(Protocol):
    """One handshake for one connection. ``name`` is what events report.

    A handshake whose first act is ``stream.start_tls()`` sets a class attribute
    ``tls_first = True``: the transport then reads nothing in clear before TLS starts (bytes
    read in clear cannot be handed to the TLS layer afterwards).
    """

    name: str

    async def perform(self, stream: HandshakeStream) -> None: ...


class NoHandshake:
    """Messages flow as soon as TCP is up (the transport skips it without a task switch)."""

    name = "none"

    def __init__(self, role: str = "client", **_ignored: Any) -> None:
        self.role = role

    async def perform(self, stream: HandshakeStream) -> None:
        return None


def make_ssl_context(
    role: str,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    cafile: str | None = None,
    verify: bool = True,
    check_hostname: bool | None = None,
) -> ssl.SSLContext:
    """Build a context with the standard library's secure defaults for ``role``.

    Server: presents ``certfile``/``keyfile`` (required); with ``cafile`` it also requires and
    verifies client certificates. Client: verifies the server against ``cafile`` (or the
    system store); ``verify=False`` turns verification off, for tests and lab gear only.
    """
    if role == "server":
        if not certfile:
            raise HandshakeError("a TLS server needs certfile (and keyfile unless the cert has it)")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile)
        if cafile:
            ctx.load_verify_locations(cafile)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
    if role != "client":
        raise ValueError(f"role must be 'client' or 'server', not {role!r}")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif check_hostname is not None:
        ctx.check_hostname = check_hostname
    return ctx


class TLSHandshake:
    """TLS on connect: ``ssl_context`` as given, or one built by :func:`make_ssl_context`.

    ``server_hostname`` (clients) is the name checked against the certificate; it defaults to
    the host passed to ``connect``.
    """

    name = "tls"
    #: The transport reads nothing in clear before this handshake starts TLS, so that a
    #: ClientHello already waiting in the socket reaches the TLS layer.
    tls_first = True

    def __init__(
        self,
        role: str = "client",
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        cafile: str | None = None,
        verify: bool = True,
        check_hostname: bool | None = None,
    ) -> None:
        self.role = role
        self.context = ssl_context or make_ssl_context(
            role,
            certfile=certfile,
            keyfile=keyfile,
            cafile=cafile,
            verify=verify,
            check_hostname=check_hostname,
        )
        self.server_hostname = server_hostname

    async def perform(self, stream: HandshakeStream) -> None:
        hostname = None
        if self.role == "client":
            hostname = self.server_hostname or stream.get_extra_info("polysock_host")
        try:
            await stream.start_tls(self.context, server_hostname=hostname)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            raise HandshakeError(f"TLS handshake failed: {exc}") from exc
