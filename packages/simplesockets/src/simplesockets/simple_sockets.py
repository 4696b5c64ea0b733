"""The module 0.4.0 code imports from: ``simplesockets.simple_sockets``."""

from __future__ import annotations

from ._client import TCPClient
from ._data import ReceivedData, Socket_Response
from ._errors import Better_Exception, SetupError, SocketError, error
from ._events import Event
from ._server import Server_Client, TCPServer

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
