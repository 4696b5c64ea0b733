"""Names 0.4.0 exported for type annotations."""

from __future__ import annotations

from .simple_sockets import (
    Better_Exception,
    Event,
    Server_Client,
    SetupError,
    Socket_Response,
    SocketError,
    error,
)

__all__ = [
    "Better_Exception",
    "Event",
    "Server_Client",
    "SetupError",
    "SocketError",
    "Socket_Response",
    "error",
]
