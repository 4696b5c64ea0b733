"""The module path of the documentation's client example (0.0.x):
``from simplesockets.simplesockets import TCPClient``. Same objects as the package."""

from __future__ import annotations

from .simple_sockets import (
    Better_Exception,
    Event,
    ReceivedData,
    Server_Client,
    SetupError,
    Socket_Response,
    SocketError,
    TCPClient,
    TCPServer,
    error,
)

__all__ = [
    "Better_Exception",
    "Event",
    "ReceivedData",
    "Server_Client",
    "SetupError",
    "SocketError",
    "Socket_Response",
    "TCPClient",
    "TCPServer",
    "error",
]
