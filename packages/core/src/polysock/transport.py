"""Connections and servers on asyncio: the only module of the core that touches sockets.

One :class:`Connection` is the ``asyncio.Protocol`` of one TCP connection. It feeds received
bytes to the connection's framer and hands complete messages to a :class:`Handler` on the event
loop thread. Two kinds of user sit on top:

* new asyncio code uses the default handler through ``await conn.recv()``,
  ``async for msg in conn``, ``await conn.send(msg)`` and ``await conn.close()``;
* the legacy flavours install their own :class:`Handler` (the "raw event sink": it runs on
  the loop thread and must not block) and send from their own threads with
  :meth:`Connection.send_threadsafe`, which coalesces a burst into one loop wake-up.

Writes made in one pass of the event loop are coalesced: the first goes straight to the
socket (no added latency for request/response traffic), the following ones are joined and
written once at the end of the pass, so a burst of small messages costs one syscall per
64 KiB instead of one per message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
import ssl as _ssl
import struct
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from socket import socket as _Socket  # the name "socket" is a Connection property
from typing import Any, Literal, cast

from .errors import (
    ConnectionClosed,
    HandshakeError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from .events import (
    ConnectionLost,
    ConnectionMade,
    HandshakeComplete,
    MessageReceived,
    MessageSent,
    ProtocolErrorEvent,
)
from .framing import Buffer, DeferrableFramer, Framer
from .handshake import Handshake
from .plugins import EventHooks, PluginManager, get_plugin_manager

__all__ = [
    "Connection",
    "Handler",
    "Limits",
    "Server",
    "connect",
    "serve",
]

log = logging.getLogger("polysock")
plugin_log = logging.getLogger("polysock.plugins")

State = Literal["connecting", "handshake", "open", "closing", "closed"]
FramingSpec = str | Callable[[], Framer]
_ids = itertools.count(1)
_LINGER_RST = struct.pack("ii", 1, 0)
# Payloads at least this large are written as (header, payload, trailer) pieces with a
# gathering write instead of being copied into one framed buffer.
_GATHER_MIN = 64 * 1024
_SHARED_RECV_SIZE = 256 * 1024
_shared = threading.local()


@dataclass(frozen=True)
class Limits:
    """Per-connection memory bounds (bytes). Defaults suit messages up to a few MiB.

    ``write_high_water``/``write_low_water``: the transport's send buffer; above the high mark
    ``send`` waits (async) or blocks (thread-safe) until the peer has read below the low mark.
    ``recv_queue``: messages received but not yet taken by ``recv`` (async API); above it the
    connection stops reading from the socket until the application catches up.
    ``flush_threshold``: coalesced writes are handed to the socket once this much is pending.
    """

    write_high_water: int = 256 * 1024
    write_low_water: int = 64 * 1024
    recv_queue: int = 1024 * 1024
    flush_threshold: int = 64 * 1024


DEFAULT_LIMITS = Limits()


class Handler:
    """Receives one connection's events on the event-loop thread, in order.

    Subclass and override what you need. Every method runs on the loop thread, so it must not
    block: hand work to another thread (see :class:`polysock.runtime.CallbackDispatcher`). An
    exception escaping a method is logged and aborts this connection only.
    """

    def connection_made(self, conn: Connection) -> None:
        """The connection is ready for messages (after the handshake)."""

    def messages_received(self, conn: Connection, messages: list[bytes]) -> None:
        """Complete frames, in order. One call per read, however many frames it completed."""

    def eof_received(self, conn: Connection) -> bool:
        """The peer closed its sending side; every message it sent was delivered already.

        Return True to keep the connection open for sending (half-close; not possible over
        TLS); the default False closes it gracefully.
        """
        return False

    def protocol_error(self, conn: Connection, exc: ProtocolError | HandshakeError) -> None:
        """The peer broke the framing or the handshake; the connection is being closed."""

    def write_drained(self, conn: Connection) -> None:
        """The send buffer fell below the low-water mark after having been full."""

    def tls_ready(self, conn: Connection) -> None:
        """An upgrade started with :meth:`Connection.start_tls` completed."""

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        """The connection is closed; ``exc`` is why (``None``: orderly close by either side)."""


_XCOND_INIT = threading.Lock()


class _SendWaker:
    """One loop wake-up for the thread-safe sends of many connections: worker threads
    answering a burst of messages on 200 connections wake the loop once, not 200 times."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.conns: list[Connection] = []

    def schedule(self, conn: Connection) -> None:
        with self.lock:
            self.conns.append(conn)
            if len(self.conns) > 1:
                return  # a wake-up is already on its way
        try:
            self.loop.call_soon_threadsafe(self.run)
        except RuntimeError:
            with self.lock:
                self.conns.clear()
            raise

    def run(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn._run_xq()
            except Exception:  # one connection's failure must not strand the others' sends
                log.exception("polysock: thread-safe send on %r failed", conn)
                conn.abort()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SendWaker] = (
    weakref.WeakKeyDictionary()
)
_wakers_lock = threading.Lock()


def _send_waker(loop: asyncio.AbstractEventLoop) -> _SendWaker:
    waker = _wakers.get(loop)
    if waker is None:
        with _wakers_lock:
            waker = _wakers.get(loop)
            if waker is None:
                waker = _wakers[loop] = _SendWaker(loop)
    return waker


class _MessageQueue(Handler):
    """The handler behind the async API: a bounded queue of received messages."""

    def __init__(self, limit: int) -> None:
        self.messages: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.limit = limit
        self.waiter: asyncio.Future[None] | None = None
        self.ended = False
        self.error: BaseException | None = None
        self.paused = False

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def messages_received(self, conn: Connection, messages: list[bytes]) -> None:
        self.messages.extend(messages)
        self.size += sum(map(len, messages))
        if self.size > self.limit and not self.paused:
            self.paused = True
            conn._set_reading(queue_paused=True)
        self._wake()

    def eof_received(self, conn: Connection) -> bool:
        self.ended = True
        self._wake()
        return not conn.is_tls  # the application decides when to close (half-close)

    def protocol_error(self, conn: Connection, exc: ProtocolError | HandshakeError) -> None:
        # Nothing after the error will be delivered: recv() raises it as soon as the frames
        # that preceded it were taken, not only once the close handshake has finished.
        self.error = exc
        self.ended = True
        self._wake()

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        self.ended = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()

    def taken(self, conn: Connection, size: int) -> None:
        self.size -= size
        if self.paused and self.size <= self.limit // 2:
            self.paused = False
            conn._set_reading(queue_paused=False)

    def end_error(self) -> ConnectionClosed | BaseException:
        if isinstance(self.error, (ProtocolError, HandshakeError)):
            return self.error
        if self.error is not None:
            return ConnectionClosed(f"connection lost: {self.error}", self.error)
        return ConnectionClosed("connection closed by peer")


class _HandshakeStream:
    """What a :class:`~polysock.handshake.Handshake` sees of the connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.role: str = conn.role
        self.buffer = bytearray()
        self.eof = False
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        if self.eof:
            return
        self._waiter = self._conn._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read(self, max_bytes: int = -1) -> bytes:
        while not self.buffer and not self.eof:
            await self._wait()
        n = len(self.buffer) if max_bytes < 0 else min(max_bytes, len(self.buffer))
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.eof:
                raise HandshakeError(
                    f"connection closed during the handshake ({len(self.buffer)} of {n} bytes)"
                )
            await self._wait()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def readuntil(self, separator: bytes, limit: int = 65536) -> bytes:
        start = 0
        while True:
            idx = self.buffer.find(separator, start)
            if idx >= 0:
                end = idx + len(separator)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            if len(self.buffer) > limit:
                raise HandshakeError(f"no {separator!r} within {limit} bytes of handshake data")
            if self.eof:
                raise HandshakeError("connection closed during the handshake")
            start = max(0, len(self.buffer) - len(separator) + 1)
            await self._wait()

    def unread(self, data: bytes) -> None:
        self.buffer[:0] = data

    def write(self, data: bytes) -> None:
        self._conn._raw_write(data)

    async def drain(self) -> None:
        await self._conn.drain()

    async def start_tls(
        self, context: _ssl.SSLContext, *, server_hostname: str | None = None
    ) -> None:
        if self.buffer:
            # These bytes were read in clear and cannot be handed to the TLS layer: a
            # handshake must consume its clear-text exchange before it switches to TLS.
            raise HandshakeError(
                f"{len(self.buffer)} bytes arrived before start_tls() and would be lost to "
                "TLS: the peer started TLS early, or the handshake did not read its data"
            )
        await self._conn.start_tls(context, server_hostname=server_hostname)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._conn.get_extra_info(name, default)


class _TLSUpgradeHold(asyncio.Protocol):
    """Stands in for a connection while :meth:`Connection.start_tls` runs.

    The SSL layer hands over data decrypted right after the TLS handshake before the awaiting
    ``start_tls`` resumes; holding it here lets the handler see ``tls_ready`` first.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.held: list[bytes | None] = []  # None: end of stream

    def data_received(self, data: bytes) -> None:
        self.held.append(data)

    def eof_received(self) -> bool:
        self.held.append(None)
        return False

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)


class Connection(asyncio.BufferedProtocol):
    """One TCP connection: framing, handshake, flow control, graceful close.

    Methods without ``threadsafe`` in their name must be called on the connection's event
    loop. Create connections with :func:`connect` or :func:`serve`, not directly.
    """

    def __init__(
        self,
        *,
        framer: Framer,
        role: Literal["client", "server"],
        handler: Handler | None = None,
        handshake: Handshake | None = None,
        handshake_timeout: float | None = 30.0,
        limits: Limits = DEFAULT_LIMITS,
        nodelay: bool = True,
        plugin_manager: PluginManager | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = next(_ids)
        self.role = role
        self.limits = limits
        self._framer = framer
        self._handshake = handshake
        self._handshake_timeout = handshake_timeout
        self._nodelay = nodelay
        self._queue: _MessageQueue | None = None
        if handler is None:
            handler = self._queue = _MessageQueue(limits.recv_queue)
        self._handler = handler
        self._pm = plugin_manager or get_plugin_manager()
        self._ev: EventHooks | None = None
        self._extra = dict(extra or {})
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self.state: State = "connecting"
        #: the exception that ended (or is ending) the connection, ``None`` if orderly
        self.error: BaseException | None = None
        self._is_tls = False
        self._peer_eof = False
        self._eof_sent = False
        self._discard_input = False
        # writes coalesced within one loop pass
        self._wbuf: list[bytes] = []
        self._wbuf_size = 0
        self._flush_threshold = limits.flush_threshold
        self._defer = bool(getattr(framer, "deferrable", False))
        self._direct_ok = callable(getattr(framer, "get_buffer", None))
        self._direct = False
        # A deferrable framer offers frame_pieces() and max_send_size() (DeferrableFramer).
        self._dframer = cast(DeferrableFramer, framer)
        self._max_send = self._dframer.max_send_size() if self._defer else 0
        self._flush_pending = False
        self._fast = False  # True only between a direct write and the end of that loop pass
        self._fast_ok = False
        # flow control
        self._write_paused = False
        # Lists and a lazily made Condition rather than deques: an idle connection should
        # cost little memory (a deque is ~760 bytes; 10,000 idle connections are a use case).
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._user_paused = False
        self._queue_paused = False
        self._reading_paused = False
        # thread-safe sends: items are payloads (bytes) or callables run in order on the loop
        self._xq: list[Any] = []
        self._xq_bytes = 0
        self._xq_scheduled = False
        self._xq_waiting = 0
        self._xcond: threading.Condition | None = None
        self._xlock: Any = None  # the Condition's lock: `with lock` is a C call, `with cond` is not
        self._hs_stream: _HandshakeStream | None = None
        self._hs_task: asyncio.Task[None] | None = None
        # server-side TLS begun inside connection_made (see there): waiter, hold, SSL protocol
        self._early_tls: tuple[asyncio.Future[Any], _TLSUpgradeHold, Any] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- properties

    def __repr__(self) -> str:
        return (
            f"<polysock.Connection #{self.id} {self.role} {self.state} "
            f"peer={self._extra.get('peername')!r}>"
        )

    @property
    def framer(self) -> Framer:
        return self._framer

    @property
    def handler(self) -> Handler:
        return self._handler

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def transport(self) -> asyncio.Transport:
        return self._transport

    @property
    def peername(self) -> Any:
        return self._extra.get("peername")

    @property
    def sockname(self) -> Any:
        return self._extra.get("sockname")

    @property
    def socket(self) -> Any:
        """The transport's socket for options the core does not wrap (``setsockopt``,
        ``getsockopt``, ``fileno``); see :meth:`duplicate_socket` for ``send(MSG_OOB)``."""
        return self.get_extra_info("socket")

    def duplicate_socket(self) -> _Socket:
        """A new ``socket.socket`` on a dup of this connection's descriptor.

        For calls the transport's socket wrapper does not offer (``send(data, MSG_OOB)``,
        ``recv(1, MSG_OOB)``). Bytes sent through it bypass the connection's buffer: call
        :meth:`drain` first if order matters. Close it when done.
        """
        sock = self.socket
        if sock is None or self.state == "closed":
            raise ConnectionClosed("the connection has no socket (closed)", self.error)
        return socket.socket(fileno=os.dup(sock.fileno()))

    @property
    def is_tls(self) -> bool:
        return self._is_tls

    @property
    def write_buffer_size(self) -> int:
        """Bytes accepted for sending that the kernel has not taken yet."""
        size = self._wbuf_size + self._xq_bytes
        if self._transport is not None:
            size += self._transport.get_write_buffer_size()
        return size

    @property
    def closed(self) -> asyncio.Future[None]:
        """Resolves when the connection is closed (for any reason)."""
        assert self._closed is not None, "connection not started"
        return self._closed

    def is_closing(self) -> bool:
        return self.state in ("closing", "closed")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        transport = cast("asyncio.Transport | None", self._transport)  # None until made
        if transport is not None:
            return transport.get_extra_info(name, default)
        return default

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        # Always called on the loop's thread. Remember it: uvloop's loop has no _thread_id.
        self._loop_thread_id = threading.get_ident()
        self._loop = loop
        self._ready = loop.create_future()
        self._closed = loop.create_future()
        self._ev = self._pm.event_hooks()
        if not self._ev.any:
            self._ev = None
        self._fast_ok = (
            self._defer and self._ev is None and self._max_send >= self._flush_threshold
        )
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        self._done = done

    async def wait_ready(self) -> None:
        """Returns once the handshake is done; raises what ended the connection otherwise."""
        assert self._ready is not None
        await asyncio.shield(self._ready)

    # ---------------------------------------------------------------- asyncio.Protocol

    def get_buffer(self, sizehint: int) -> memoryview:
        # A framer that knows the rest of a large frame gets the bytes straight into the
        # frame's own buffer (one copy fewer). Everything else is read into one buffer
        # shared by every connection of this thread: buffer_updated() consumes it before
        # the loop reads the next socket, so an idle connection holds no receive buffer.
        if self._direct_ok and self.state == "open":
            view = self._framer.get_buffer(sizehint)  # type: ignore[attr-defined]
            if view is not None:
                self._direct = True
                return view  # type: ignore[no-any-return]
        self._direct = False
        shared = _shared.__dict__.get("view")
        if shared is None:
            shared = _shared.view = memoryview(bytearray(_SHARED_RECV_SIZE))
        return shared

    def buffer_updated(self, nbytes: int) -> None:
        if not self._direct:
            self.data_received(bytes(_shared.view[:nbytes]))
            return
        self._direct = False
        try:
            frames = self._framer.buffer_updated(nbytes)  # type: ignore[attr-defined]
        except ProtocolError as exc:
            if exc.frames:
                self._deliver(exc.frames)
            self._remote_error(exc)
            return
        if frames:
            self._deliver(frames)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: duck typing only.
        transport = cast(asyncio.Transport, transport)
        if cast("asyncio.AbstractEventLoop | None", self._loop) is None:
            self._attach(asyncio.get_running_loop())
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self._extra.setdefault("peername", transport.get_extra_info("peername"))
        self._extra.setdefault("sockname", transport.get_extra_info("sockname"))
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Always set: asyncio and uvloop turn TCP_NODELAY on by themselves, so
            # nodelay=False (Nagle) must clear it explicitly.
            with contextlib.suppress(OSError):  # some platforms refuse after connect
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self._nodelay))
        transport.set_write_buffer_limits(
            high=self.limits.write_high_water, low=self.limits.write_low_water
        )
        self._emit("polysock_connection_made", ConnectionMade, role=self.role,
                   peername=self.peername, sockname=self.sockname)
        if self._handshake is None:
            self._become_ready("none")
        else:
            self.state = "handshake"
            self._hs_stream = _HandshakeStream(self)
            context = getattr(self._handshake, "context", None)
            if (
                self.role == "server"
                and getattr(self._handshake, "tls_first", False)
                and isinstance(context, _ssl.SSLContext)
            ):
                # Put the TLS layer under the transport now, before the loop reads a byte:
                # a ClientHello already waiting in the socket must reach it, and neither
                # pause_reading() here (uvloop starts reading after connection_made) nor
                # loop.start_tls() later (it cannot take back bytes read in clear) can
                # guarantee that.
                self._early_tls = self._begin_server_tls(context)
            self._hs_task = self._loop.create_task(self._run_handshake())

    def data_received(self, data: bytes) -> None:
        if self.state == "open":
            try:
                frames = self._framer.receive_data(data)
            except ProtocolError as exc:
                if exc.frames:
                    self._deliver(exc.frames)
                self._remote_error(exc)
                return
            if frames:
                self._deliver(frames)
        elif self.state == "handshake":
            assert self._hs_stream is not None
            self._hs_stream.feed(data)
        elif self.state == "closing" and not self._discard_input:
            # The peer sent this before it saw our FIN: still deliver it.
            try:
                frames = self._framer.receive_data(data)
            except ProtocolError as exc:
                frames = exc.frames
                self._discard_input = True
            if frames:
                self._deliver(frames)

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self.state == "handshake":
            assert self._hs_stream is not None
            self._hs_stream.feed_eof()
            return True
        if self.state in ("open", "closing") and not self._discard_input:
            try:
                frames = self._framer.receive_data(b"")
            except ProtocolError as exc:
                if exc.frames:
                    self._deliver(exc.frames)
                self._remote_error(exc)
                return False
            if frames:
                self._deliver(frames)
        if self.state == "closing":
            self._flush()
            return False  # our FIN is out (or queued): the transport may close now
        keep_open = False
        try:
            keep_open = bool(self._handler.eof_received(self))
        except Exception:
            log.exception("polysock: handler %r failed in eof_received", self._handler)
        if keep_open and not self._is_tls:
            return True
        self.state = "closing"
        self._fast = False
        self._flush()
        return False

    def pause_writing(self) -> None:
        self._write_paused = True
        self._fast = False

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._notify_senders()
        try:
            self._handler.write_drained(self)
        except Exception:
            log.exception("polysock: handler %r failed in write_drained", self._handler)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == "closed":
            return
        previous = self.state
        self.state = "closed"
        self._fast = False
        if exc is not None and self.error is None:
            self.error = exc
        # The handshake started and never completed (the stream is dropped once it does):
        # whatever ended the connection is a handshake failure. With TLS the SSL layer
        # reports a bad certificate here, before the handshake task sees its exception.
        handshake_failed = self._hs_stream is not None
        if handshake_failed and not isinstance(self.error, HandshakeError):
            name = self._handshake.name if self._handshake is not None else "handshake"
            cause = self.error
            self.error = HandshakeError(
                f"{name} handshake failed: "
                + (str(cause) or repr(cause) if cause else "connection closed during the handshake")
            )
            self.error.__cause__ = cause
            self._emit("polysock_protocol_error", ProtocolErrorEvent, error=self.error)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._hs_stream is not None:
            self._hs_stream.feed_eof()
        if self._hs_task is not None and not self._hs_task.done():
            self._hs_task.cancel()
        self._wbuf.clear()
        self._wbuf_size = 0
        closed = ConnectionClosed("connection closed", self.error)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(closed)
        self._notify_senders()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                self.error if isinstance(self.error, HandshakeError)
                else ConnectionClosed("connection closed before it was ready", self.error)
            )
            self._ready.exception()  # retrieved: nobody may be waiting
        if handshake_failed:
            self._call_handler("protocol_error", self.error)
            self._call_handler("connection_lost", self.error)
        elif previous != "connecting":
            self._call_handler("connection_lost", self.error)
        self._emit("polysock_connection_lost", ConnectionLost, reason=self.error)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._transport = self._transport  # keep for get_extra_info after close

    # ---------------------------------------------------------------- internals

    def _emit(self, hookname: str, event_type: Any, **fields: Any) -> None:
        ev = self._ev
        if ev is None:
            return
        caller = getattr(ev, hookname)
        if caller is None:
            return
        try:
            caller(event=event_type(connection=self, **fields))
        except Exception:
            plugin_log.exception("polysock: a %s hook implementation failed", hookname)

    def _call_handler(self, method: str, *args: Any) -> None:
        try:
            getattr(self._handler, method)(self, *args)
        except Exception:
            log.exception("polysock: handler %r failed in %s", self._handler, method)

    def _deliver(self, frames: list[bytes]) -> None:
        try:
            self._handler.messages_received(self, frames)
        except Exception as exc:
            log.exception("polysock: handler %r failed in messages_received", self._handler)
            self.error = exc
            self.abort()
            return
        ev = self._ev
        if ev is not None and ev.polysock_message_received is not None:
            for frame in frames:
                self._emit("polysock_message_received", MessageReceived, payload=frame)

    def _become_ready(self, handshake_name: str) -> None:
        self.state = "open"
        leftover = b""
        if self._hs_stream is not None:
            leftover = bytes(self._hs_stream.buffer)
            self._hs_stream = None
        self._emit("polysock_handshake_complete", HandshakeComplete, handshake=handshake_name)
        try:
            self._handler.connection_made(self)
        except Exception as exc:
            log.exception("polysock: handler %r failed in connection_made", self._handler)
            self.error = exc
            self.abort()
            return
        assert self._ready is not None
        if not self._ready.done():
            self._ready.set_result(None)
        if self._wbuf:  # written during the handshake by a thread-safe sender
            self._flush()
        if leftover:
            self.data_received(leftover)
        if self._peer_eof and self.state == "open" and not self.eof_received():
            self._transport.close()

    async def _run_handshake(self) -> None:
        assert self._handshake is not None and self._hs_stream is not None
        handshake = self._handshake
        # A timer rather than wait_for(): the timeout must be recorded as the reason before
        # the abort, whose connection_lost can run before this task sees its cancellation.
        timer = None
        if self._handshake_timeout is not None:
            timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)
        try:
            await handshake.perform(self._hs_stream)
        except asyncio.CancelledError:
            if self.state == "closed":
                return
            raise
        except Exception as exc:
            if isinstance(exc, HandshakeError):
                error = exc
            else:
                error = HandshakeError(f"{handshake.name} handshake failed: {exc!r}")
                error.__cause__ = exc
            self._handshake_failed(error)
            return
        finally:
            if timer is not None:
                timer.cancel()
        if self.state == "handshake":
            self._become_ready(handshake.name)

    def _handshake_failed(self, error: HandshakeError) -> None:
        if self.error is None:
            self.error = error
            self._emit("polysock_protocol_error", ProtocolErrorEvent, error=error)
        self.abort()

    def _handshake_timed_out(self) -> None:
        if self.state == "handshake" and self._handshake is not None:
            self._handshake_failed(HandshakeError(
                f"{self._handshake.name} handshake did not finish within "
                f"{self._handshake_timeout} s"
            ))

    def _remote_error(self, exc: ProtocolError) -> None:
        if self.error is None:
            self.error = exc
        self._call_handler("protocol_error", exc)
        self._emit("polysock_protocol_error", ProtocolErrorEvent, error=exc)
        self._discard_input = True
        if self.state != "closed":
            self.close(timeout=2.0)

    def _raw_write(self, data: bytes) -> None:
        self._transport.write(data)

    def _append_many(self, items: list[Buffer]) -> None:
        """Queue a batch and hand it to the socket now (it is coalesced already)."""
        if self._defer:
            if items and max(map(len, items)) > self._max_send:
                self._framer.frame_many(items)  # raises the framer's LocalProtocolError
            self._wbuf.extend(items)  # type: ignore[arg-type]
            self._wbuf_size += sum(map(len, items))
        else:
            data = self._framer.frame_many(items)
            self._wbuf.append(data)
            self._wbuf_size += len(data)
        self._flush_wbuf()

    def _flush(self) -> None:
        self._flush_pending = False
        self._fast = False
        self._flush_wbuf()

    def _flush_wbuf(self) -> None:
        # With a deferrable framer _wbuf holds payloads, framed here in one frame_many();
        # otherwise it holds bytes framed at write time.
        wbuf = self._wbuf
        if not wbuf or self.state == "handshake":
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._defer:
            if len(wbuf) == 1 and self._wbuf_size >= _GATHER_MIN:
                self._write_pieces(transport, self._dframer.frame_pieces(wbuf.pop()))
                self._wbuf_size = 0
                return
            data = self._framer.frame_many(wbuf)
        else:
            data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self._wbuf_size = 0
        transport.write(data)

    def _set_reading(self, *, queue_paused: bool | None = None, user: bool | None = None) -> None:
        if queue_paused is not None:
            self._queue_paused = queue_paused
        if user is not None:
            self._user_paused = user
        want_paused = self._queue_paused or self._user_paused
        if want_paused == self._reading_paused or self._transport is None:
            return
        if self.state == "closed" or self._transport.is_closing():
            return
        self._reading_paused = want_paused
        if want_paused:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def _check_writable(self) -> None:
        if self.state not in ("open", "handshake") or self._eof_sent:
            raise ConnectionClosed(
                "cannot send: the connection is "
                + ("half-closed (write_eof)" if self._eof_sent else self.state),
                self.error,
            )

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.state != "closed":
            log.debug("polysock: %r: graceful close timed out, aborting", self)
            self.abort()

    def _notify_senders(self) -> None:
        cond = self._xcond
        if self._xq_waiting and cond is not None:
            with cond:
                cond.notify_all()

    # ---------------------------------------------------------------- loop-thread API

    def write(self, payload: Buffer) -> None:
        """Frame ``payload`` and queue it for sending (never blocks; see :meth:`drain`).

        The first write of a loop pass goes to the socket at once; the following ones are
        coalesced and written together at the end of the pass (or every
        ``limits.flush_threshold`` bytes), so bursts cost one syscall, not one per message.
        """
        if self.state != "open" or self._eof_sent:
            self._check_writable()
        if self._defer:
            size = len(payload)
            if size > self._max_send:
                self._framer.frame(payload)  # raises the framer's LocalProtocolError
            unit: Buffer = payload
        else:
            unit = self._framer.frame(payload)
            size = len(unit)
        if self._flush_pending or self.state == "handshake":
            self._wbuf.append(unit)  # type: ignore[arg-type]
            self._wbuf_size += size
            if self._wbuf_size >= self._flush_threshold:
                self._flush_wbuf()
        else:
            if size >= _GATHER_MIN:
                self._write_pieces(self._transport, self._dframer.frame_pieces(payload))
            else:
                self._transport.write(self._framer.frame(payload) if self._defer else unit)
            self._flush_pending = True
            self._loop.call_soon(self._flush)
            # Until the end of this pass, send() may take the short path (see there).
            self._fast = self._fast_ok and not self._write_paused and self.state == "open"
        if self._ev is not None:
            self._emit("polysock_message_sent", MessageSent, payload=bytes(payload))

    def write_many(self, payloads: Iterable[Buffer]) -> None:
        """Frame a batch into one buffer and send it: the fastest way to send many."""
        self._check_writable()
        items = payloads if isinstance(payloads, list) else list(payloads)
        self._append_many(items)
        if self._ev is not None and self._ev.polysock_message_sent is not None:
            for payload in items:
                self._emit("polysock_message_sent", MessageSent, payload=bytes(payload))

    async def drain(self) -> None:
        """Wait until the send buffer is below the high-water mark."""
        if self.state == "closed":
            raise ConnectionClosed("connection closed", self.error)
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def write_eof(self) -> None:
        """Half-close: flush what is queued, then send FIN; receiving goes on."""
        if self._eof_sent or self.state in ("closed", "connecting"):
            return
        if not self._transport.can_write_eof():
            raise LocalProtocolError("this transport cannot half-close (TLS): use close()")
        self._flush()
        self._eof_sent = True
        self._fast = False
        self._transport.write_eof()

    def close(self, timeout: float | None = 10.0) -> asyncio.Future[None]:
        """Graceful close: every queued message is sent, then FIN.

        Messages the peer sent before it saw our FIN are still delivered. The connection is
        closed when the peer acknowledges with its own FIN; if that takes longer than
        ``timeout`` seconds it is aborted. Returns the :attr:`closed` future (await it or not).
        """
        assert self._closed is not None, "connection not started"
        if self.state == "closed" or self._transport is None:
            return self._closed
        if self._close_timer is None and timeout is not None:
            self._close_timer = self._loop.call_later(timeout, self._close_timed_out)
        if (self.state == "closing" and self._eof_sent) or self._transport.is_closing():
            # FIN already sent, or the transport is going (aborted, failed TLS upgrade): a
            # write_eof now would send a FIN after the RST (uvloop even raises).
            return self._closed
        self._run_xq()
        self.state = "closing"
        self._fast = False
        self._flush()
        transport = self._transport
        if self._peer_eof or not transport.can_write_eof():
            transport.close()  # flushes the transport's buffer first; TLS sends close_notify
        elif not self._eof_sent:
            self._eof_sent = True
            self._fast = False
            transport.write_eof()
        if self._reading_paused and not self._discard_input:
            self._set_reading(queue_paused=False, user=False)  # must see the peer's FIN
        return self._closed

    def abort(self) -> None:
        """Close at once with a TCP reset; anything unsent is dropped."""
        if self.state == "closed" or self._transport is None:
            return
        self.state = "closing"
        self._fast = False
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):  # already gone (uvloop: ValueError)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self._transport.abort()

    def pause_reading(self) -> None:
        """Stop reading from the socket (the peer's sends block once buffers fill)."""
        self._set_reading(user=True)

    def resume_reading(self) -> None:
        self._set_reading(user=False)

    @staticmethod
    def _write_pieces(transport: asyncio.Transport, pieces: list[Buffer]) -> None:
        # writelines() avoids copying a large payload, but asyncio's selector transport on
        # CPython 3.12/3.13 never calls pause_writing() from it: send() would never wait for
        # a peer that does not read. write() per piece keeps flow control everywhere (and
        # on 3.12+ buffers memoryviews, no copy); uvloop's writelines() is correct.
        if type(transport).__module__.startswith("uvloop"):
            transport.writelines(pieces)
        else:
            for piece in pieces:
                transport.write(piece)

    def _begin_server_tls(
        self, context: _ssl.SSLContext
    ) -> tuple[asyncio.Future[Any], _TLSUpgradeHold, Any]:
        """What ``loop.start_tls`` does, done synchronously (asyncio's SSL protocol works
        over any loop's transport); :meth:`start_tls` awaits the handshake."""
        from asyncio import sslproto

        waiter: asyncio.Future[Any] = self._loop.create_future()
        hold = _TLSUpgradeHold(self)
        proto = sslproto.SSLProtocol(
            self._loop,
            hold,
            context,
            waiter,
            server_side=True,
            server_hostname=None,
            call_connection_made=False,
            ssl_handshake_timeout=cast(Any, self._handshake_timeout),
        )
        self._transport.set_protocol(proto)
        proto.connection_made(self._transport)
        return waiter, hold, proto

    async def start_tls(
        self,
        context: _ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        server_side: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        """Upgrade this open connection to TLS in place (Kamaelia's ``makessl``).

        Everything queued before is sent in clear first. Returns once the TLS handshake is
        complete; the handler's ``tls_ready`` is called then (for upgrades after the
        connection was ready).
        """
        if self._is_tls:
            raise LocalProtocolError("the connection already uses TLS")
        if self.state not in ("open", "handshake"):
            raise ConnectionClosed("cannot start TLS: the connection is " + self.state, self.error)
        if server_side is None:
            server_side = self.role == "server"
        if not server_side and server_hostname is None and context.check_hostname:
            server_hostname = self._extra.get("polysock_host")
        self._flush()
        early, self._early_tls = self._early_tls, None
        try:
            if early is not None and early[2]._sslcontext is context:
                waiter, hold, proto = early
                await waiter
                new_transport = proto._app_transport
            else:
                if early is not None:
                    raise HandshakeError(
                        "the TLS handshake already started with another SSL context"
                    )
                hold = _TLSUpgradeHold(self)
                new_transport = await self._loop.start_tls(
                    self._transport,
                    hold,
                    context,
                    server_side=server_side,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=timeout,
                )
        except BaseException as exc:
            # The SSL layer owns the socket now and does not always report its loss to us
            # (asyncio does not while the TLS handshake runs): close it and report it here;
            # a later report from the SSL layer finds the connection closed and is ignored.
            self._transport.abort()
            reason = exc if isinstance(exc, Exception) else None
            self._loop.call_soon(self.connection_lost, reason)
            raise
        if new_transport is None or new_transport.is_closing():
            # Closed (or aborted) during the TLS handshake: asyncio returns None, uvloop a
            # closed transport, and neither reports the loss to us.
            self._loop.call_soon(self.connection_lost, None)
            raise ConnectionClosed("connection closed during the TLS handshake", self.error)
        new_transport.set_write_buffer_limits(
            high=self.limits.write_high_water, low=self.limits.write_low_water
        )
        new_transport.set_protocol(self)
        self._transport = new_transport
        self._is_tls = True
        self._reading_paused = False
        if self._user_paused or self._queue_paused:
            self._set_reading()
        if self.state == "open":
            self._call_handler("tls_ready")
        for data in hold.held:  # what arrived over TLS before we got here, in order
            if cast(str, self.state) == "closed":  # a handler may have closed it
                break
            if data is None:
                self.eof_received()
            else:
                self.data_received(data)

    # ---------------------------------------------------------------- async API

    def _need_queue(self) -> _MessageQueue:
        queue = self._queue
        if queue is None:
            raise LocalProtocolError(
                "recv() is only available on connections without a custom handler"
            )
        return queue

    def send(self, payload: Buffer) -> Awaitable[None]:
        """Send one message: ``await conn.send(msg)``; the await waits only while the peer
        is not keeping up (backpressure). The message is queued before the await, in order.

        A plain method returning an awaitable, not a coroutine: the usual case (room in the
        buffer) costs no coroutine object and no task switch.
        """
        if self._fast:
            # Open, not paused, no event observers, a deferrable framer and a flush
            # already scheduled for this pass: queue the payload, nothing else to decide.
            self._wbuf.append(payload)  # type: ignore[arg-type]
            self._wbuf_size += len(payload)
            if self._wbuf_size < self._flush_threshold:
                return self._done
            return self._send_overflow()
        self.write(payload)
        if self._write_paused:
            return self.drain()
        return self._done

    def _send_overflow(self) -> Awaitable[None]:
        last = self._wbuf[-1]
        if len(last) > self._max_send:
            self._wbuf.pop()
            self._wbuf_size -= len(last)
            self._framer.frame(last)  # raises the framer's LocalProtocolError
        self._flush_wbuf()
        if self._write_paused:
            return self.drain()
        return self._done

    async def send_many(self, payloads: Iterable[Buffer]) -> None:
        """Send a batch of messages in one buffer; waits while the peer is not keeping up."""
        self.write_many(payloads)
        if self._write_paused:
            await self.drain()

    async def recv(self) -> bytes:
        """The next message. Raises :class:`ConnectionClosed` (or the protocol error that
        ended the connection) once every message received before the end was returned."""
        queue = self._need_queue()
        while True:
            if queue.messages:
                msg = queue.messages.popleft()
                queue.size -= len(msg)
                if queue.paused:
                    queue.taken(self, 0)
                return msg
            if queue.ended:
                raise queue.end_error()
            queue.waiter = waiter = self._new_waiter(queue)
            await waiter

    def _new_waiter(self, queue: _MessageQueue) -> asyncio.Future[None]:
        # Two concurrent readers would each steal half the messages in racy order; refuse
        # it loudly as asyncio.StreamReader does.
        if queue.waiter is not None and not queue.waiter.done():
            raise RuntimeError(
                "recv() called while another coroutine is already waiting for a message "
                "on this connection"
            )
        return self._loop.create_future()

    async def recv_batch(self, max_messages: int | None = None) -> list[bytes]:
        """Every message already received (at least one, waiting if needed), up to
        ``max_messages``: one await for a whole burst. Raises like :meth:`recv` at the end."""
        queue = self._need_queue()
        while not queue.messages:
            if queue.ended:
                raise queue.end_error()
            queue.waiter = waiter = self._new_waiter(queue)
            await waiter
        messages = queue.messages
        if max_messages is None or len(messages) <= max_messages:
            batch = list(messages)
            messages.clear()
        else:
            batch = [messages.popleft() for _ in range(max_messages)]
        queue.taken(self, sum(map(len, batch)))
        return batch

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                msg = await self.recv()
            except ConnectionClosed as exc:
                if exc.reason is None:
                    return
                raise
            yield msg

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- thread-safe API

    def send_threadsafe(self, payload: Buffer, *, timeout: float | None = None) -> None:
        """Send from any thread. Bursts cost one loop wake-up; order is kept.

        Blocks while more than ``limits.write_high_water`` bytes are waiting for a slow peer,
        up to ``timeout`` seconds (``TimeoutError``); ``None`` waits as long as needed.
        Raises :class:`ConnectionClosed` once the connection is closing.
        """
        self._enqueue(bytes(payload), len(payload), timeout)

    def send_many_threadsafe(
        self, payloads: Iterable[Buffer], *, timeout: float | None = None
    ) -> None:
        for payload in payloads:
            self._enqueue(bytes(payload), len(payload), timeout)

    def call_threadsafe(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the loop after every send queued before by this thread."""
        self._enqueue(fn, 0, None)

    def _enqueue(self, item: Any, size: int, timeout: float | None) -> None:
        if self.state in ("closing", "closed") and not callable(item):
            raise ConnectionClosed("cannot send: the connection is " + self.state, self.error)
        lock = self._xlock
        if lock is None:
            self._make_xcond()
            lock = self._xlock
        with lock:
            if size and (self._write_paused or self._xq_bytes >= self.limits.write_high_water):
                self._wait_for_room(timeout)
            self._xq.append(item)
            self._xq_bytes += size
            if self._xq_scheduled:
                return
            self._xq_scheduled = True
        try:
            _send_waker(self._loop).schedule(self)
        except RuntimeError:
            raise ConnectionClosed("the event loop is closed", self.error) from None

    def _make_xcond(self) -> threading.Condition:
        with _XCOND_INIT:  # two threads' first sends must not make two conditions
            if self._xcond is None:
                lock = threading.Lock()
                self._xcond = threading.Condition(lock)
                self._xlock = lock
            return self._xcond

    def _wait_for_room(self, timeout: float | None) -> None:
        # called with self._xcond held
        if threading.get_ident() == self._loop_thread_id:
            return  # never block the loop thread: it is the one that makes room
        # time.monotonic, not loop.time(): uvloop's clock only advances when its loop wakes.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._xq_waiting += 1
        try:
            while (self._write_paused or self._xq_bytes >= self.limits.write_high_water):
                if self.state == "closed":
                    raise ConnectionClosed("connection closed", self.error)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"send timed out after {timeout} s: the peer is not reading"
                    )
                assert self._xcond is not None
                self._xcond.wait(remaining)
        finally:
            self._xq_waiting -= 1

    def _run_xq(self) -> None:
        cond = self._xcond or self._make_xcond()
        with cond:
            items, self._xq = self._xq, []
            self._xq_bytes = 0
            self._xq_scheduled = False
            if self._xq_waiting:
                cond.notify_all()
        batch: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):
                batch.append(item)
                continue
            if batch:
                self._write_batch(batch)
                batch = []
            try:
                item()
            except Exception:
                log.exception("polysock: call_threadsafe callable %r failed", item)
        if batch:
            self._write_batch(batch)

    def _write_batch(self, batch: list[bytes]) -> None:
        if self.state not in ("open", "handshake", "closing") or self._eof_sent:
            log.debug("polysock: %r: dropping %d messages sent after close", self, len(batch))
            return
        try:
            self._append_many(batch)  # type: ignore[arg-type]
        except LocalProtocolError:
            # Find the culprit without losing the good ones around it.
            for payload in batch:
                try:
                    self._append_many([payload])
                except LocalProtocolError:
                    log.exception("polysock: %r: message dropped", self)
        if self._ev is not None and self._ev.polysock_message_sent is not None:
            for payload in batch:
                self._emit("polysock_message_sent", MessageSent, payload=payload)


# -------------------------------------------------------------------- factories


def _framer_factory(
    framing: FramingSpec, options: Mapping[str, Any] | None, pm: PluginManager
) -> Callable[[], Framer]:
    if callable(framing):
        return framing
    opts = dict(options or {})
    pm.framer_factory(framing)  # unknown names fail here, at connect/serve time
    return lambda: pm.make_framer(framing, **opts)


def _handshake_factory(
    handshake: str | None,
    options: Mapping[str, Any] | None,
    ssl: _ssl.SSLContext | bool | None,
    role: Literal["client", "server"],
    pm: PluginManager,
) -> Callable[[], Handshake | None]:
    opts = dict(options or {})
    if ssl is not None and ssl is not False:
        if handshake not in (None, "none", "tls"):
            raise ValueError("ssl= and a handshake other than 'tls' cannot be combined")
        handshake = "tls"
        if isinstance(ssl, _ssl.SSLContext):
            opts.setdefault("ssl_context", ssl)
    if handshake is None or handshake == "none":
        return lambda: None
    pm.handshake_factory(handshake)
    name = handshake
    return lambda: pm.make_handshake(name, role, **opts)


async def connect(
    host: str,
    port: int,
    *,
    framing: FramingSpec = "length-prefix",
    framing_options: Mapping[str, Any] | None = None,
    handshake: str | None = None,
    handshake_options: Mapping[str, Any] | None = None,
    ssl: _ssl.SSLContext | bool | None = None,
    handler: Handler | None = None,
    timeout: float | None = 30.0,
    handshake_timeout: float | None = 30.0,
    local_addr: tuple[str, int] | None = None,
    family: int = 0,
    nodelay: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    plugin_manager: PluginManager | None = None,
) -> Connection:
    """Open a client connection and return it once the handshake is done.

    ``host`` may be a name or an IPv4/IPv6 literal; every address it resolves to is tried in
    turn. ``timeout`` bounds resolution, connect and handshake together. ``ssl=True`` (or an
    ``SSLContext``) is short for ``handshake="tls"``. With ``handler``, events go to it on the
    loop thread instead of the ``recv()`` queue.
    """
    loop = asyncio.get_running_loop()
    pm = plugin_manager or get_plugin_manager()
    make_framer = _framer_factory(framing, framing_options, pm)
    make_handshake = _handshake_factory(handshake, handshake_options, ssl, "client", pm)
    conn = Connection(
        framer=make_framer(),
        role="client",
        handler=handler,
        handshake=make_handshake(),
        handshake_timeout=handshake_timeout,
        limits=limits,
        nodelay=nodelay,
        plugin_manager=pm,
        extra={"polysock_host": host},
    )
    conn._attach(loop)

    async def _open() -> None:
        await loop.create_connection(
            lambda: conn, host, port, family=family, local_addr=local_addr
        )
        await conn.wait_ready()

    try:
        if timeout is None:
            await _open()
        else:
            await asyncio.wait_for(_open(), timeout)
    except asyncio.TimeoutError:
        conn.abort()
        raise TimeoutError(f"could not connect to {host}:{port} within {timeout} s") from None
    except BaseException:
        conn.abort()
        raise
    return conn


class Server:
    """A listening server (from :func:`serve`): its sockets and its live connections."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.connections: set[Connection] = set()
        # Remembered so that port/addresses still answer after close() (for messages and
        # for tests that reconnect to a closed server to see it refused).
        self._addresses = [sock.getsockname() for sock in server.sockets]

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self._server.sockets)

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses (still known after :meth:`close`)."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        """The port of the first listening socket (the one picked when port 0 was asked)."""
        return int(self._addresses[0][1])

    def is_serving(self) -> bool:
        return self._server.is_serving()

    def close(self) -> None:
        """Stop accepting; live connections go on (see :meth:`aclose`)."""
        self._server.close()

    async def close_connections(self, timeout: float | None = 10.0, *, abort: bool = False) -> None:
        conns = list(self.connections)
        for conn in conns:
            conn.abort() if abort else conn.close(timeout)
        if conns:
            await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Stop accepting, close every connection gracefully, return when all are closed."""
        self.close()
        await self.close_connections(timeout)
        await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


ClientConnected = Callable[[Connection], Awaitable[None]]


async def serve(
    client_connected: ClientConnected | None = None,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    framing: FramingSpec = "length-prefix",
    framing_options: Mapping[str, Any] | None = None,
    handshake: str | None = None,
    handshake_options: Mapping[str, Any] | None = None,
    ssl: _ssl.SSLContext | None = None,
    handler_factory: Callable[[], Handler] | None = None,
    sock: socket.socket | None = None,
    backlog: int = 128,
    reuse_address: bool = True,
    family: int = socket.AF_UNSPEC,
    handshake_timeout: float | None = 30.0,
    nodelay: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    plugin_manager: PluginManager | None = None,
) -> Server:
    """Listen on ``host``:``port`` (loopback and an ephemeral port by default).

    Give either ``client_connected``, a coroutine function run once per ready connection (the
    connection is closed gracefully when it returns), or ``handler_factory`` for loop-thread
    handlers. ``sock`` serves on an already bound, listening socket instead of host/port.
    """
    if (client_connected is None) == (handler_factory is None):
        raise ValueError("give exactly one of client_connected and handler_factory")
    loop = asyncio.get_running_loop()
    pm = plugin_manager or get_plugin_manager()
    make_framer = _framer_factory(framing, framing_options, pm)
    make_handshake = _handshake_factory(handshake, handshake_options, ssl, "server", pm)
    server: Server

    def factory() -> Connection:
        handler = handler_factory() if handler_factory is not None else _Session(client_connected)  # type: ignore[arg-type]
        conn = Connection(
            framer=make_framer(),
            role="server",
            handler=handler,
            handshake=make_handshake(),
            handshake_timeout=handshake_timeout,
            limits=limits,
            nodelay=nodelay,
            plugin_manager=pm,
        )
        conn._attach(loop)
        server.connections.add(conn)
        conn.closed.add_done_callback(lambda _f: server.connections.discard(conn))
        return conn

    if sock is not None:
        aserver = await loop.create_server(factory, sock=sock, backlog=backlog)
    else:
        aserver = await loop.create_server(
            factory, host, port, family=family, backlog=backlog, reuse_address=reuse_address
        )
    server = Server(aserver)
    return server


class _Session(_MessageQueue):
    """Server-side handler for ``client_connected``: the queue plus the session task."""

    def __init__(self, client_connected: ClientConnected) -> None:
        super().__init__(DEFAULT_LIMITS.recv_queue)
        self._client_connected = client_connected
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, conn: Connection) -> None:
        conn._queue = self
        self.limit = conn.limits.recv_queue
        self.task = conn.loop.create_task(self._run(conn))

    async def _run(self, conn: Connection) -> None:
        try:
            await self._client_connected(conn)
        except (ConnectionClosed, RemoteProtocolError, HandshakeError) as exc:
            # The peer went away or broke the protocol while the session was talking to
            # it: already reported (protocol_error / connection_lost events), not a bug.
            log.debug("polysock: session on %r ended: %s", conn, exc)
        except asyncio.CancelledError:
            conn.abort()
            raise
        except Exception:
            log.exception("polysock: session %r failed on %r", self._client_connected, conn)
            conn.abort()
            return
        if conn.state != "closed":
            conn.close()
