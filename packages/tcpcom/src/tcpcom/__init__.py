"""tcpcom: the TigerJython / RaspiBrick TCP library (``TCPServer``, ``TCPClient``) on polysock.

Scripts written for the original run unchanged::

    from tcpcom import *

    def onStateChanged(state, msg):
        if state == TCPServer.MESSAGE:
            server.sendMessage("echo:" + msg)

    server = TCPServer(22000, stateChanged=onStateChanged)

Messages travel as UTF-8 text followed by one NUL byte, exactly as the Python 2, Jython and
Java originals send them, so either end may still be an original.

The star import also provides ``time``, ``socket``, ``sys``, ``Thread`` and ``thread``: the
original leaked them and classroom scripts rely on it (``time.sleep(1)`` without importing
``time``).
"""

from __future__ import annotations

import _thread as thread
import socket
import sys
import time
from threading import Thread

from .__about__ import __version__
from ._client import TCPClient
from ._server import TCPServer

#: The version of polysock-tcpcom (the original returned its own date-stamped string).
TCPCOM_VERSION: str = __version__

__all__ = [
    "TCPCOM_VERSION",
    "TCPClient",
    "TCPServer",
    "Thread",
    "socket",
    "sys",
    "thread",
    "time",
]
