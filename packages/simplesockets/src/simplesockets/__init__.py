"""simplesockets on polysock: the TCPServer/TCPClient API of the simplesockets manual.

Raw bytes on the wire, as the original; sockets run on polysock's shared event loop and
callbacks on worker threads. See the package README for what differs from the original.
"""

from __future__ import annotations

from . import simple_sockets, simplesockets, typehints
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

__version__ = "0.4.0.post1"

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
    "simple_sockets",
    "simplesockets",
    "typehints",
]

_NOT_PROVIDED = ("SecureServer", "SecureClient", "secure_sockets")


def __getattr__(name: str) -> object:
    # ImportError rather than AttributeError, so that "from simplesockets import
    # SecureServer" explains itself instead of "cannot import name".
    if name in _NOT_PROVIDED:
        raise ImportError(f"{name} is not provided by polysock-simplesockets")
    raise AttributeError(f"module 'simplesockets' has no attribute {name!r}")
