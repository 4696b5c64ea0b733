"""serpy (protocol 1) on polysock: ``Connection`` and ``Server`` with the original API.

The wire format is the original's: blocks separated by ``0x1F``; ``\\x01SETMODE<d>`` /
``\\x01ACKMODCG`` mode switches and ``\\x01ACKEOT!!`` acknowledgements in band; modes 0/1 raw
bytes (mode 1 ends a message with ``0x04`` and is acknowledged), 2/3 base85, 4/5 base85 of a
pickle. What changed is everything around it: one event loop instead of four polling threads
per connection, no unpickling of network data unless asked (``allow_unpickle=True``), modes
reset on every reconnection, bounded waits, and payloads that would break the framing are
sent base85-encoded (see the package README, "Differences from the original").
"""

from __future__ import annotations

import pickle
import queue
import select
import socket
import threading
import warnings
from base64 import b85decode, b85encode
from time import sleep
from typing import Any

from polysock.framing import Framer as _Framer
from polysock_serpy import base as _base
from polysock_serpy.codec import b85decode as _b85decode
from polysock_serpy.codec import b85encode as _b85encode
from polysock_serpy.codec import b85encoded_size as _b85size
from polysock_serpy.errors import ConnectionClosed, ProtocolWarning, UnpickleDisabledWarning
from polysock_serpy.framing import SERPY_MAX_MESSAGE_SIZE as _MAX
from polysock_serpy.framing import OversizedBlock as _Oversized
from polysock_serpy.framing import SerpyBlockFramer as _BlockFramer

__all__ = [
    "STIMEOUT",
    "Connection",
    "ConnectionClosed",
    "ProtocolWarning",
    "Server",
    "UnpickleDisabledWarning",
    "b85decode",
    "b85encode",
    "main",
    "pickle",
    "queue",
    "select",
    "sleep",
    "socket",
    "threading",
    "warnings",
]

#: The original's polling period in seconds (kept as a constant; nothing polls any more).
STIMEOUT = 0.050

_SEP = b"\x1f"
_EOT = b"\x04"
_ACKMODCG = b"\x01ACKMODCG"
_ACKEOT = b"\x01ACKEOT!!"
_SETMODE = b"\x01SETMODE"
_ACKED = (1, 3, 5)
_BYTES_LIKE = (bytes, bytearray, memoryview)
_BYTES, _TEXT, _OBJECT = 0, 1, 2


class _Proto:
    """Protocol-1 state of one TCP connection (loop thread). Both sides start at mode 0."""

    __slots__ = (
        "acks_owed", "in_mode", "mode_timer", "mode_wait", "msg_dropped", "msg_parts",
        "msg_size", "out_mode",
    )

    def __init__(self) -> None:
        self.in_mode = 0
        self.out_mode = 0
        self.mode_wait: int | None = None  # SETMODE sent, ACKMODCG awaited
        self.mode_timer: Any = None
        self.acks_owed = 0  # ACKMODCG replies still to come
        self.msg_parts: list[bytes] | None = None  # blocks of a mode-1/3/5 message
        self.msg_size = 0
        self.msg_dropped = False


class _Received:
    """A received message as queued: decoded for ``getData`` in the reader's thread (base85
    and pickle can be slow; the event loop never does it)."""

    __slots__ = ("mode", "raw", "ready", "value")

    def __init__(self, mode: int, raw: bytes) -> None:
        self.mode = mode
        self.raw = raw
        self.ready = mode < 2
        self.value: Any = raw if mode < 2 else None


class Connection(_base.BaseConnection):
    """One serpy connection: ``getData``/``sendData`` over a TCP connection.

    ``Connection(sock=None, encoding='utf-8', auto_restart=False, allow_unpickle=False)``;
    use :meth:`connect` for a client, or pass a connected ``sock`` and call :meth:`start`.
    """

    DEFAULT_QUEUE_SIZE = 10
    DEFAULT_MAX_MESSAGE_SIZE = _MAX

    def __init__(
        self,
        sock: socket.socket | None = None,
        encoding: str = "utf-8",
        auto_restart: bool = False,
        allow_unpickle: bool = False,
        *,
        restart_attempts: int = 1000,
        restart_interval: float = 0.5,
        queue_size: int = 10,
        max_message_size: int = _MAX,
        close_timeout: float = 2.0,
        mode_ack_timeout: float | None = 10.0,
        pickle_protocol: int = pickle.HIGHEST_PROTOCOL,
    ) -> None:
        super().__init__(
            sock, auto_restart, restart_attempts=restart_attempts,
            restart_interval=restart_interval, queue_size=queue_size,
            max_message_size=max_message_size, close_timeout=close_timeout,
        )
        self.encoding = encoding
        #: deliver modes 4/5 unpickled (True) or as the raw pickle bytes (False, default)
        self.allow_unpickle = bool(allow_unpickle)
        self.mode_ack_timeout = mode_ack_timeout
        self.pickle_protocol = pickle_protocol
        self._unpickle_warned = False

    # ------------------------------------------------------------ attributes

    @property
    def in_mode(self) -> int:
        """The mode the peer's data blocks currently use (0 when not connected)."""
        link = self._link
        return link.proto.in_mode if link is not None and link.proto is not None else 0

    @property
    def out_mode(self) -> int:
        """The mode our data blocks currently use (0 when not connected)."""
        link = self._link
        return link.proto.out_mode if link is not None and link.proto is not None else 0

    @classmethod
    def _framer_for(cls, options: dict[str, Any]) -> _Framer:
        return _BlockFramer(options.get("max_message_size", _MAX), oversize="skip")

    def _new_proto(self) -> _Proto:
        return _Proto()

    def _end_proto(self, link: _base.Link) -> None:
        proto = link.proto
        if proto is not None and proto.mode_timer is not None:
            proto.mode_timer.cancel()
            proto.mode_timer = None

    # ------------------------------------------------------------ sending

    def sendData(
        self, data: Any, mode: int = 0, timeout: float | None = None, *, force_mode: bool = False
    ) -> bool | None:
        """Send ``data`` in ``mode`` (0 plain, 1 acknowledged, 2/3 base85, 4/5 pickled).

        Returns None for modes 0/2/4; for 1/3/5 True once acknowledged, False if not within
        ``timeout`` (or the connection broke or was closed). Raises ``queue.Full`` when the
        outgoing queue stays full for ``timeout`` seconds, :class:`ConnectionClosed` on a
        gone connection, ``ValueError`` for an unknown mode or an oversized message.
        """
        final, payload = self._encode(data, _check_mode(mode), force_mode)
        if len(payload) > self.max_message_size:
            raise ValueError(
                f"message of {len(payload)} bytes on the wire exceeds max_message_size="
                f"{self.max_message_size}"
            )
        if final in _ACKED:
            ack = _base.Ack()
            self._enqueue(_base.Outgoing(payload, final, ack), timeout)
            return self._wait_ack(ack, timeout)
        if not payload:
            self._warn(
                f"an empty message in mode {final} is sent as a bare separator, which no "
                "protocol-1 receiver delivers", ProtocolWarning, 3,
            )
        self._enqueue(_base.Outgoing(payload, final), timeout)
        return None

    def _encode(self, data: Any, mode: int, force: bool) -> tuple[int, bytes]:
        """Steps 1-8 of the sending rules: the final mode and the block's payload (with the
        0x04 end marker for modes 1/3/5)."""
        requested = mode
        if type(data) is int or type(data) is float:
            data = str(data)
        if isinstance(data, _BYTES_LIKE):
            kind = _BYTES
            if mode in (0, 4):
                mode = 2
                self._warn(f"Wrong mode used, using mode {mode} instead", UserWarning, 4)
            elif mode in (1, 5):
                mode = 3
                self._warn(f"Wrong mode used, using mode {mode} instead", UserWarning, 4)
        elif type(data) is str:
            kind = _TEXT
        else:
            kind = _OBJECT
            if mode in (0, 2):
                mode = 4
                self._warn(f"Wrong mode used, using mode {mode} instead", UserWarning, 4)
            elif mode in (1, 3):
                mode = 5
                self._warn(f"Wrong mode used, using mode {mode} instead", UserWarning, 4)
        if force:
            self._warn(f"Discouraged. Forcing mode {requested} instead of {mode}", UserWarning)
        final = requested if force else mode
        raw: Any
        if kind == _TEXT:
            raw = data.encode(self.encoding)
            if mode >= 4:
                raw = pickle.dumps(raw, self.pickle_protocol)
        elif kind == _OBJECT:
            raw = pickle.dumps(data, self.pickle_protocol)
        elif type(data) is bytes:
            raw = data
        else:
            view = memoryview(data)
            raw = view.cast("B") if view.c_contiguous else view.tobytes()
        # Forced bytes keep the caller's mode (raw in 0/1, base85 without pickling in 2-5);
        # everything else is encoded for the mode it was converted to.
        encode = final >= 2 if kind == _BYTES else mode >= 2
        if not encode:
            raw = bytes(raw)
            # Step 8: payloads that protocol 1 cannot carry raw go base85 (same delivery).
            if final == 0 and (_SEP in raw or raw[:1] == b"\x01"):
                final, encode = 2, True
            elif final == 1 and (_SEP in raw or _EOT in raw or raw[:1] == b"\x01"):
                final, encode = 3, True
        suffix = _EOT if final in _ACKED else b""
        if not encode:
            return final, raw + suffix if suffix else raw
        wire = _b85size(len(raw)) + len(suffix)
        if wire > self.max_message_size:
            raise ValueError(
                f"message of {wire} bytes on the wire (base85) exceeds max_message_size="
                f"{self.max_message_size}"
            )
        return final, _b85encode(raw, suffix)

    # ------------------------------------------------------------ sending (loop thread)

    def _before_write(self, link: _base.Link, msg: _base.Outgoing) -> bool:
        proto: _Proto = link.proto
        if msg.mode == proto.out_mode and proto.mode_wait is None:
            return True
        if proto.mode_wait is not None:
            if not link.closing:
                return False  # the switch to mode_wait is not acknowledged yet
            proto.out_mode = proto.mode_wait
            proto.mode_wait = None
            if msg.mode == proto.out_mode:
                return True
        self._write_control(link, _SETMODE + str(msg.mode).encode())
        proto.acks_owed += 1
        if link.closing or self.mode_ack_timeout == 0:
            proto.out_mode = msg.mode  # the peer handles blocks in order: no need to wait
            return True
        proto.mode_wait = msg.mode
        if self.mode_ack_timeout is not None and link.core is not None:
            proto.mode_timer = link.core.loop.call_later(
                self.mode_ack_timeout, self._mode_ack_timed_out, link
            )
        return False

    def _mode_ack_timed_out(self, link: _base.Link) -> None:
        proto: _Proto = link.proto
        proto.mode_timer = None
        if proto.mode_wait is None or link is not self._link:
            return
        self._warn(
            f"no ACKMODCG for SETMODE{proto.mode_wait} within {self.mode_ack_timeout} s "
            f"({self._peer()}); sending anyway", ProtocolWarning,
        )
        proto.out_mode = proto.mode_wait
        proto.mode_wait = None
        self._pump()

    # ------------------------------------------------------------ receiving (loop thread)

    def _on_frames(self, link: _base.Link, blocks: list[bytes]) -> None:
        proto: _Proto = link.proto
        items: list[_Received] = []
        replies: list[bytes] = []
        errors: list[str] = []
        released = False
        for block in blocks:
            if proto.msg_parts is not None:
                self._message_block(proto, block, items, replies, errors)
                continue
            if type(block) is _Oversized:
                if proto.in_mode in _ACKED:
                    proto.msg_parts = []
                    proto.msg_size = 0
                    proto.msg_dropped = False
                    self._message_block(proto, block, items, replies, errors)
                else:
                    errors.append(
                        f"block of {block.size} bytes exceeds max_message_size="
                        f"{self.max_message_size}; dropped"
                    )
                continue
            if not block:
                continue
            if block[0] == 1 and len(block) == 9:
                if block == _ACKEOT:
                    if link.acks:
                        ack = link.acks.popleft()
                        with self._lock:
                            if ack.result is None:
                                ack.result = True
                            self._cond.notify_all()
                    else:
                        errors.append("unexpected ACKEOT!! (no acknowledged message pending)")
                    continue
                if block == _ACKMODCG:
                    if proto.acks_owed:
                        proto.acks_owed -= 1
                    if proto.mode_wait is not None and not proto.acks_owed:
                        if proto.mode_timer is not None:
                            proto.mode_timer.cancel()
                            proto.mode_timer = None
                        proto.out_mode = proto.mode_wait
                        proto.mode_wait = None
                        released = True
                    continue
                if block.startswith(_SETMODE) and 0x30 <= block[8] <= 0x35:
                    proto.in_mode = block[8] - 0x30
                    replies.append(_ACKMODCG)
                    continue
            mode = proto.in_mode
            if mode in _ACKED:
                proto.msg_parts = []
                proto.msg_size = 0
                proto.msg_dropped = False
                self._message_block(proto, block, items, replies, errors)
            else:
                items.append(_Received(mode, block))
        self._deliver(link, items)
        for reply in replies:
            self._write_control(link, reply)
        for text in errors:
            self._protocol_error(text)
        if released:
            self._pump()

    def _message_block(
        self, proto: _Proto, block: bytes, items: list[_Received], replies: list[bytes],
        errors: list[str],
    ) -> None:
        """One block of a mode-1/3/5 message; the block ending in 0x04 completes it."""
        parts = proto.msg_parts
        assert parts is not None
        if type(block) is _Oversized:
            ends = block.last == 4
            if not proto.msg_dropped:
                proto.msg_dropped = True
                parts.clear()
                errors.append(
                    f"message larger than max_message_size={self.max_message_size}; dropped"
                )
        else:
            ends = block[-1:] == _EOT
            if not proto.msg_dropped:
                size = proto.msg_size + len(block) + (1 if parts else 0)
                if size > self.max_message_size:
                    proto.msg_dropped = True
                    parts.clear()
                    errors.append(
                        f"message larger than max_message_size={self.max_message_size}; "
                        "dropped"
                    )
                else:
                    parts.append(block)
                    proto.msg_size = size
        if not ends:
            return
        if not proto.msg_dropped:
            whole = parts[0] if len(parts) == 1 else _SEP.join(parts)
            items.append(_Received(proto.in_mode, whole[:-1]))
        replies.append(_ACKEOT)  # also for a dropped message: the sender's FIFO stays aligned
        proto.msg_parts = None

    # ------------------------------------------------------------ receiving (reader thread)

    def _materialize(self, item: _Received) -> Any:
        if item.ready:
            return item.value
        mode = item.mode
        try:
            data = _b85decode(item.raw)
        except ValueError as exc:
            raise _base.Dropped(
                f"invalid base85 in a mode-{mode} message ({exc}); dropped"
            ) from None
        if mode >= 4:
            if self.allow_unpickle:
                try:
                    value: Any = pickle.loads(data)
                except Exception as exc:
                    raise _base.Dropped(
                        f"mode-{mode} message could not be unpickled ({exc!r}); dropped"
                    ) from None
            else:
                value = data
                if not self._unpickle_warned:
                    self._unpickle_warned = True
                    self._warn(
                        f"a pickled (mode {mode}) message from {self._peer()} is delivered as "
                        "raw pickle bytes: allow_unpickle is False (unpickling data from the "
                        "network can run arbitrary code; set allow_unpickle=True only for "
                        "peers you trust)", UnpickleDisabledWarning, 4,
                    )
        else:
            value = data
        item.value = value
        item.raw = b""
        item.ready = True
        return value

    # ------------------------------------------------------------ misc

    def connect(self, adr: str, port: int) -> Connection:
        """Connect to ``(adr, port)``; see :meth:`BaseConnection.connect`."""
        return super().connect(adr, port)


def _check_mode(mode: Any) -> int:
    try:
        value = mode.__index__()
    except AttributeError:
        raise ValueError(f"mode must be an integer from 0 to 5, not {mode!r}") from None
    if not 0 <= value <= 5:
        raise ValueError(f"unknown mode {value!r}: serpy modes are 0 to 5")
    return int(value)


class Server(_base.BaseServer):
    """Accepts serpy clients: ``s = Server(adr, port, nb_conn, encoding).start()``.

    Each client becomes a child :class:`Connection` (same ``encoding`` and
    ``allow_unpickle``); at most ``nb_conn`` are connected at a time, further clients are
    accepted and closed at once.
    """

    CONNECTION = Connection

    def __init__(
        self,
        adr: str,
        port: int,
        nb_conn: int = 5,
        encoding: str = "utf-8",
        allow_unpickle: bool = False,
        *,
        queue_size: int = 10,
        max_message_size: int = _MAX,
    ) -> None:
        self.encoding = encoding
        self.allow_unpickle = allow_unpickle
        super().__init__(adr, port, nb_conn, {
            "encoding": encoding, "allow_unpickle": allow_unpickle,
            "queue_size": queue_size, "max_message_size": max_message_size,
        })

    def start(self) -> Server:
        """Start accepting; returns self."""
        return super().start()  # type: ignore[no-any-return]

    def getConnection(self, timeout: float | None = None) -> Connection:
        """The next new child, in accept order (blocks; ``queue.Empty`` after ``timeout``).
        After :meth:`close`, the children still queued, then :class:`ConnectionClosed`."""
        return self._get_connection(timeout)  # type: ignore[return-value]

    @property
    def connections(self) -> list[Connection]:  # type: ignore[override]
        return super().connections  # type: ignore[return-value]


def main(args: Any) -> int:
    """The original module's entry point stub."""
    return 0

