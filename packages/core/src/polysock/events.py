"""Connection events handed to the ``polysock_*`` event hooks.

Frozen so that one observer cannot change what the next one sees. Each carries the
:class:`~polysock.transport.Connection` it is about, for observers that want to act on it
(close it, read its addresses); treat it as read-only inside a hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transport import Connection

__all__ = [
    "ConnectionLost",
    "ConnectionMade",
    "HandshakeComplete",
    "MessageReceived",
    "MessageSent",
    "ProtocolErrorEvent",
]


@dataclass(frozen=True)
class _Event:
    connection: Connection

    @property
    def connection_id(self) -> int:
        return self.connection.id


@dataclass(frozen=True)
class ConnectionMade(_Event):
    """TCP is up (before any handshake). ``role`` is ``"client"`` or ``"server"``."""

    role: str
    peername: Any
    sockname: Any


@dataclass(frozen=True)
class HandshakeComplete(_Event):
    """The handshake finished; messages flow from now on. ``handshake`` is its name."""

    handshake: str


@dataclass(frozen=True)
class MessageReceived(_Event):
    """One decoded frame arrived (one event per frame, never per recv chunk)."""

    payload: bytes


@dataclass(frozen=True)
class MessageSent(_Event):
    """One payload was framed and handed to the transport."""

    payload: bytes


@dataclass(frozen=True)
class ProtocolErrorEvent(_Event):
    """The peer broke the framing or the handshake; the connection is being closed."""

    error: BaseException


@dataclass(frozen=True)
class ConnectionLost(_Event):
    """The connection is closed. ``reason`` is ``None`` for an orderly close."""

    reason: BaseException | None
