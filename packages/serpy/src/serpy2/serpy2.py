"""serpy2 (protocol 2) on polysock: ``Connection`` and ``Server`` with the original API.

Each message is one frame: the 14-byte header ``DE CA FE CA FE``, a type byte (``01`` int,
``11`` float, ``21`` str, ``81`` bytes), the byte sum of the payload and its length (both
unsigned 32-bit little-endian), then the payload. ``getData`` returns the value in its
original type. Unlike the original, every frame of a read is delivered at once, garbage is
skipped up to the next frame instead of dropping the buffer, and malformed frames are counted
in ``rx_errors`` and reported as :class:`ProtocolWarning` without ending the connection.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import warnings
from time import sleep
from typing import Any, cast

from polysock.framing import Framer as _Framer
from polysock_serpy import base as _base
from polysock_serpy.errors import ConnectionClosed, ProtocolWarning
from polysock_serpy.framing import (
    BLOCKIDCODE,
    FLOATTYPECODE,
    HEADLEN,
    INTTYPECODE,
    RAWBYTESTYPECODE,
    STRTYPECODE,
)
from polysock_serpy.framing import SERPY2_MAX_MESSAGE_SIZE as _MAX
from polysock_serpy.framing import DeferredFrame as _Deferred
from polysock_serpy.framing import Serpy2Framer as _Framer2
from polysock_serpy.framing import Serpy2Payload as _Payload

__all__ = [
    "BLOCKIDCODE",
    "FLOATTYPECODE",
    "HEADLEN",
    "INTTYPECODE",
    "QUEUELEN",
    "RAWBYTESTYPECODE",
    "STIMEOUT",
    "STRTYPECODE",
    "Connection",
    "ConnectionClosed",
    "ProtocolWarning",
    "Server",
    "main",
    "queue",
    "select",
    "sleep",
    "socket",
    "threading",
    "warnings",
]

#: The original's polling period in seconds (kept as a constant; nothing polls any more).
STIMEOUT = 0.010
#: Default capacity of each queue of a Connection.
QUEUELEN = 20

_INT = INTTYPECODE[0]
_FLOAT = FLOATTYPECODE[0]
_STR = STRTYPECODE[0]
_RAW = RAWBYTESTYPECODE[0]


class Connection(_base.BaseConnection):
    """One serpy2 connection: ``getData``/``sendData`` of str, bytes, int and float values.

    ``Connection(sock=None, auto_restart=False)``; use :meth:`connect` for a client, or pass
    a connected ``sock`` and call :meth:`start`.
    """

    DEFAULT_QUEUE_SIZE = QUEUELEN
    DEFAULT_MAX_MESSAGE_SIZE = _MAX
    WARN_ON_RESTART = True

    def __init__(
        self,
        sock: socket.socket | None = None,
        auto_restart: bool = False,
        *,
        restart_attempts: int = 1000,
        restart_interval: float = 0.5,
        queue_size: int = QUEUELEN,
        max_message_size: int = _MAX,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            sock, auto_restart, restart_attempts=restart_attempts,
            restart_interval=restart_interval, queue_size=queue_size,
            max_message_size=max_message_size, close_timeout=close_timeout,
        )

    @classmethod
    def _framer_for(cls, options: dict[str, Any]) -> _Framer:
        return _Framer2(
            options.get("max_message_size", _MAX), defer_large=True, oversize="skip"
        )

    def _bind_framer(self, framer: _Framer) -> None:
        if isinstance(framer, _Framer2):
            framer.on_error = self._protocol_error

    def _on_reconnect(self) -> None:
        self._warn("Already connected !! -> Closing connection", UserWarning)

    def connect(self, adr: str, port: int) -> Connection:
        """Connect to ``(adr, port)`` (blocking); returns self. A current connection is
        closed first (with a warning, as the original)."""
        return super().connect(adr, port)

    # ------------------------------------------------------------ sending

    def sendData(self, data: Any, timeout: float | None = None) -> None:
        """Queue ``data`` for sending: ``str`` (UTF-8), ``bytes``/``bytearray``/
        ``memoryview`` (raw), ``int`` (64-bit) or ``float``; other types raise ``TypeError``.

        Blocks while the outgoing queue is full (``queue.Full`` after ``timeout`` seconds);
        raises :class:`ConnectionClosed` on a gone connection.
        """
        kind = type(data)
        payload: Any
        if kind is str:
            payload, type_code = data.encode("utf-8"), _STR
        elif kind is bytes:
            payload, type_code = data, _RAW
        elif kind is bytearray or kind is memoryview:
            # A copy: the caller may reuse its buffer as soon as sendData returns.
            payload, type_code = memoryview(data).tobytes(), _RAW
        elif kind is int:
            payload, type_code = data.to_bytes(8, "little", signed=True), _INT
        elif kind is float:
            payload, type_code = data.hex().encode("ascii"), _FLOAT
        else:
            raise TypeError("Unsupported data type. Cannot Send")
        if len(payload) > self.max_message_size:
            raise ValueError(
                f"payload of {len(payload)} bytes exceeds max_message_size="
                f"{self.max_message_size}"
            )
        # The checksum is computed here, in the caller's thread, not on the event loop.
        self._enqueue(_base.Outgoing(_Payload(payload, type_code)), timeout)

    # ------------------------------------------------------------ receiving (loop thread)

    def _on_frames(self, link: _base.Link, frames: list[bytes]) -> None:
        items: list[Any] = []
        errors: list[str] = []
        for frame in cast(list[Any], frames):
            if type(frame) is bytes or type(frame) is _Deferred:
                items.append(frame)  # large frames are checked by the reader (_materialize)
                continue
            try:
                items.append(_decode(frame))
            except _base.Dropped as exc:
                errors.append(str(exc))
        self._deliver(link, items)
        for text in errors:
            self._protocol_error(text)

    def _materialize(self, item: Any) -> Any:
        if type(item) is not _Deferred:
            return item
        try:
            frame = item.resolve()
        except ValueError as exc:
            raise _base.Dropped(str(exc)) from None
        return frame if type(frame) is bytes else _decode(frame)


def _decode(frame: Any) -> Any:
    """The value of a typed frame (str, int or float)."""
    type_code = frame.type_code
    if type_code == _STR:
        return frame.decode("utf-8", "replace")
    if type_code == _INT:
        return int.from_bytes(frame, "little", signed=True)
    try:
        return float.fromhex(frame.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise _base.Dropped(f"invalid float frame {bytes(frame[:40])!r}; dropped") from None


class Server(_base.BaseServer):
    """Accepts serpy2 clients: ``s = Server(adr, port, nb_conn).start()``.

    Children are reached with :meth:`getConnectionsList`, :meth:`readableConnections` or by
    iterating (serpy2 has no ``getConnection``). At most ``nb_conn`` children are connected
    at a time; further clients are accepted and closed at once.
    """

    CONNECTION = Connection

    def __init__(
        self,
        adr: str,
        port: int,
        nb_conn: int = 5,
        *,
        queue_size: int = QUEUELEN,
        max_message_size: int = _MAX,
    ) -> None:
        super().__init__(adr, port, nb_conn, {
            "queue_size": queue_size, "max_message_size": max_message_size,
        })

    def start(self) -> Server:
        """Start accepting; returns self."""
        return super().start()  # type: ignore[no-any-return]

    @property
    def connections(self) -> list[Connection]:  # type: ignore[override]
        return super().connections  # type: ignore[return-value]


def main(args: Any) -> int:
    """The original module's entry point stub."""
    return 0
