"""polysock: a pluggable TCP messaging core.

Sans-IO framers, pluggy plugins found through the ``polysock`` entry-point group, and one
event loop for every connection. Start with :func:`connect` and :func:`serve` (asyncio), or
:mod:`polysock.runtime` for threaded code.
"""

from __future__ import annotations

from typing import Any

from . import plugins
from .__about__ import __version__
from .errors import (
    ConnectionClosed,
    FrameTooLarge,
    HandshakeError,
    IncompleteFrame,
    LocalProtocolError,
    PluginError,
    PluginLoadError,
    PluginLoadWarning,
    PolysockError,
    ProtocolError,
    RemoteProtocolError,
)
from .framing import DelimiterFramer, Framer, LengthPrefixFramer, RawFramer
from .handshake import Handshake, HandshakeStream, NoHandshake, TLSHandshake, make_ssl_context
from .hookspecs import hookimpl, hookspec
from .plugins import Flavour
from .transport import Connection, Handler, Limits, Server, connect, serve

__all__ = [
    "Connection",
    "ConnectionClosed",
    "DelimiterFramer",
    "Flavour",
    "FrameTooLarge",
    "Framer",
    "Handler",
    "Handshake",
    "HandshakeError",
    "HandshakeStream",
    "IncompleteFrame",
    "LengthPrefixFramer",
    "Limits",
    "LocalProtocolError",
    "NoHandshake",
    "PluginError",
    "PluginLoadError",
    "PluginLoadWarning",
    "PolysockError",
    "ProtocolError",
    "RawFramer",
    "RemoteProtocolError",
    "Server",
    "TLSHandshake",
    "__version__",
    "connect",
    "framer",
    "handshake",
    "hookimpl",
    "hookspec",
    "make_ssl_context",
    "plugins",
    "serve",
]


def framer(name: str, **options: Any) -> Framer:
    """A new framer for framing ``name`` (built-in or from a plugin), e.g.
    ``polysock.framer("delimiter", delimiter=b"\\0")``."""
    return plugins.get_plugin_manager().make_framer(name, **options)


def handshake(name: str, role: str = "client", **options: Any) -> Handshake:
    """A new handshake object ``name`` for ``role`` (``"client"`` or ``"server"``)."""
    return plugins.get_plugin_manager().make_handshake(name, role, **options)
