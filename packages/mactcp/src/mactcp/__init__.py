"""mactcp: the classic MacPython MacTCP interface, on real BSD sockets.

``TCPCreate(size)`` makes a TCP stream (one connection endpoint, opened with ``PassiveOpen`` or
``ActiveOpen``); ``IPAddr()``, ``NetMask()`` and ``MTU()`` describe the host's primary
interface; ``error`` is the exception of every call; the MacTCP constants (also in the
``MACTCPconst`` and ``MACTCP`` modules) name the asr event codes and error codes.
"""

from __future__ import annotations

import operator
import sys

from MACTCPconst import *  # noqa: F403
from MACTCPconst import __all__ as _const_names

from . import _netif, _watch
from .__about__ import __version__
from ._errors import driver_error, error
from ._stream import TCPStatus, TCPStream

__all__ = [
    "MTU",
    "IPAddr",
    "NetMask",
    "TCPCreate",
    "TCPStatus",
    "TCPStream",
    "__version__",
    "error",
]
__all__.extend(_const_names)


def TCPCreate(size: int) -> TCPStream:
    """A new TCP stream without a connection; ``size`` = receive buffer size in bytes
    (4096 is suggested): the most one ``Rcv`` returns, and the socket's ``SO_RCVBUF``."""
    try:
        size = operator.index(size)
    except TypeError:
        raise TypeError(f"TCPCreate() size must be an int, not {type(size).__name__}") from None
    if size < 1:
        raise driver_error(invalidLength)  # noqa: F405
    if not _watch.SUPPORTED:
        raise NotImplementedError(
            "mactcp streams need Linux (epoll, SIOCINQ/SIOCOUTQ/SIOCATMARK, TCP_INFO); "
            f"this is {sys.platform}"
        )
    return TCPStream(size)


def IPAddr() -> int:
    """The primary IPv4 address (of the default route's interface) as an unsigned int."""
    return _netif.ip_addr()


def NetMask() -> int:
    """The netmask of the interface holding ``IPAddr()``, as an unsigned int."""
    return _netif.netmask()


def MTU() -> int:
    """The MTU of the default route's interface (loopback's without one; 0 if unknown)."""
    return _netif.mtu()
