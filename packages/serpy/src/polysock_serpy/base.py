"""What serpy and serpy2 connections and servers share, on the polysock runtime.

A :class:`BaseConnection` is a pair of bounded queues around a *link*: one TCP connection of
the core (:class:`polysock.Connection`) running on the process's shared event-loop thread.
Application threads only touch the queues (under one lock, waiting on one condition, never
polling); the loop thread moves messages between the queues and the socket:

* ``sendData`` converts and encodes in the caller's thread, appends to the outgoing queue and
  wakes the loop once per burst; the loop's *pump* writes queued messages in order (the
  core coalesces a pass's writes into one syscall), stops while the socket's send buffer is
  above its high-water mark and resumes when it drains.
* received frames are turned into queue items on the loop thread; when the incoming queue
  holds ``queue_size`` items the link stops reading, so the peer feels TCP back-pressure.
* when a link breaks, a client with ``auto_restart`` reconnects from the loop thread (a task,
  not a thread); otherwise, or when the attempts run out, the connection is *gone*: waiting
  ``getData`` calls raise :class:`ConnectionClosed` once the queue is drained.

Nothing here keeps the interpreter alive; at exit every live connection flushes what is
queued (bounded by the runtime's 2 s) before the loop stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar, cast

import polysock
from polysock import Handler
from polysock.framing import Buffer, Framer
from polysock.runtime import LoopThread, get_runtime

from .errors import ConnectionClosed, ProtocolWarning

__all__ = ["BaseConnection", "BaseServer", "Dropped", "Outgoing"]

log = logging.getLogger("polysock.serpy")

CONNECT_TIMEOUT = 30.0  # connect(): resolution + TCP connect
RESTART_ATTEMPT_TIMEOUT = 5.0  # one auto-restart attempt
REFUSE_CLOSE_TIMEOUT = 2.0
_LINGER = 5.0  # after close() returned, the core may wait this long for the peer's FIN

C = TypeVar("C", bound="BaseConnection")


class Ack:
    """One awaited acknowledgement (protocol 1, modes 1/3/5). ``result`` is set once."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: bool | None = None


class Outgoing:
    """A queued outgoing message: the payload as the framer takes it, its protocol-1 mode
    (``-1`` for protocol 2) and, when the sender waits for an acknowledgement, its :class:`Ack`."""

    __slots__ = ("ack", "mode", "payload")

    def __init__(self, payload: Any, mode: int = -1, ack: Ack | None = None) -> None:
        self.payload = payload
        self.mode = mode
        self.ack = ack


class Dropped(Exception):
    """A received message turned out malformed when it was decoded for ``getData``."""


class Link(Handler):
    """The core's event sink for one TCP connection of a serpy connection (loop thread)."""

    def __init__(self, owner: BaseConnection | None, server: BaseServer | None = None) -> None:
        self.owner = owner
        self.server = server
        self.core: polysock.Connection | None = None
        self.refused = False
        self.closing = False  # close() in progress: flush without waiting, ignore input
        self.paused = False  # reading paused because the incoming queue is full
        self.blocked = False  # the pump waits for the send buffer to drain
        self.lost = False
        self.on_flushed: Callable[[], object] | None = None
        self.acks: collections.deque[Ack] = collections.deque()
        self.proto: Any = None  # protocol state of this TCP connection (see subclasses)

    def connection_made(self, conn: polysock.Connection) -> None:
        self.core = conn
        if self.server is not None:
            self.server._child_made(self, conn)
        elif self.owner is not None:
            self.owner._link_up(self)

    def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
        owner = self.owner
        if owner is not None and not self.refused and not self.closing:
            owner._on_frames(self, messages)

    def write_drained(self, conn: polysock.Connection) -> None:
        if self.on_flushed is not None and conn.write_buffer_size == 0:
            self._flushed()
        owner = self.owner
        if owner is not None and self.blocked:
            self.blocked = False
            owner._pump()

    def _flushed(self) -> None:
        callback, self.on_flushed = self.on_flushed, None
        if callback is not None:
            callback()

    def connection_lost(self, conn: polysock.Connection, exc: BaseException | None) -> None:
        self.lost = True
        self._flushed()
        if self.server is not None and not self.refused:
            self.server._child_lost(self)
        if self.owner is not None and not self.refused:
            self.owner._link_down(self, exc)


# Connections that hold a link, flushed at interpreter exit.
_live: weakref.WeakSet[BaseConnection] = weakref.WeakSet()
_live_lock = threading.Lock()
_exit_hooked: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _runtime() -> LoopThread:
    rt = get_runtime()
    if rt not in _exit_hooked:
        with _live_lock:
            if rt not in _exit_hooked:
                _exit_hooked.add(rt)
                rt.at_exit(_flush_at_exit)
    return rt


async def _flush_at_exit() -> None:
    """Close every live connection as close() would: queued messages first, then FIN."""
    with _live_lock:
        conns = list(_live)
    loop = asyncio.get_running_loop()
    waiters = []
    for conn in conns:
        fut: asyncio.Future[None] = loop.create_future()

        def done(fut: asyncio.Future[None] = fut) -> None:
            if not fut.done():
                fut.set_result(None)

        try:
            conn._closed_by_user = True
            conn._close_on_loop(done)
        except Exception:
            log.exception("polysock.serpy: flushing %r at exit failed", conn)
            continue
        waiters.append(fut)
    if waiters:
        await asyncio.wait(waiters)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return time.monotonic() + timeout


class BaseConnection:
    """The queues, lifetime and restart logic; subclasses add the wire protocol."""

    DEFAULT_QUEUE_SIZE: ClassVar[int] = 10
    DEFAULT_MAX_MESSAGE_SIZE: ClassVar[int] = 64 * 1024 * 1024
    #: serpy2 warns once per break before reconnecting, as the original did
    WARN_ON_RESTART: ClassVar[bool] = False

    def __init__(
        self,
        sock: socket.socket | None,
        auto_restart: bool,
        *,
        restart_attempts: int,
        restart_interval: float,
        queue_size: int | None,
        max_message_size: int | None,
        close_timeout: float,
    ) -> None:
        queue_size = self.DEFAULT_QUEUE_SIZE if queue_size is None else int(queue_size)
        max_size = self.DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        if max_size < 1:
            raise ValueError(f"max_message_size must be at least 1, not {max_size}")
        if restart_attempts < 0 or restart_interval < 0 or close_timeout < 0:
            raise ValueError("restart_attempts, restart_interval and close_timeout must be >= 0")
        self.auto_restart = bool(auto_restart)
        self.restart_attempts = int(restart_attempts)
        self.restart_interval = float(restart_interval)
        self.queue_size = queue_size
        self.max_message_size = int(max_size)
        self.close_timeout = float(close_timeout)
        #: ``0`` until :meth:`connect`, then ``(adr, port)``
        self.adr: Any = 0
        self._sock = sock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._inq: collections.deque[Any] = collections.deque()
        self._outq: collections.deque[Outgoing] = collections.deque()
        # "new" (never connected), "open", "restarting", "gone"
        self._state = "new"
        self._closed_by_user = False
        self._server_child = False
        self._link: Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump_scheduled = False
        self._resume_scheduled = False
        self._restart_task: asyncio.Task[None] | None = None
        self._rx_errors = 0

    # ------------------------------------------------------------ attributes

    def __repr__(self) -> str:
        peer = self._link.core.peername if self._link and self._link.core else self.adr or None
        return f"<{type(self).__module__}.{type(self).__name__} {self._state} peer={peer!r}>"

    @property
    def connected(self) -> bool:
        """True while a TCP connection is established (False while restarting)."""
        return self._state == "open"

    @property
    def rx_errors(self) -> int:
        """Malformed messages received so far (cumulative, also across restarts)."""
        return self._rx_errors

    @property
    def conn(self) -> Any:
        """The socket, for inspection only (the event loop owns it: do not read or write)."""
        link = self._link
        if link is not None and link.core is not None:
            return link.core.socket
        return self._sock

    def isConnected(self) -> bool:
        """True while a TCP connection is established."""
        return self._state == "open"

    def enableRestart(self) -> None:
        """Reconnect automatically when the connection breaks (client connections only)."""
        self.auto_restart = True

    def disableRestart(self) -> None:
        """Stop reconnecting; attempts in progress stop at once (the connection is then gone)."""
        self.auto_restart = False
        if self._restart_task is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                _runtime().call(self._stop_restart, timeout=10.0)

    def _stop_restart(self) -> None:
        task, self._restart_task = self._restart_task, None
        if task is not None and not task.done():
            task.cancel()
            self._set_gone()

    # ------------------------------------------------------------ opening

    def _make_framer(self) -> Framer:
        return self._framer_for({"max_message_size": self.max_message_size})

    @classmethod
    def _framer_for(cls, options: dict[str, Any]) -> Framer:
        """A framer for a connection made with ``options`` (server children)."""
        raise NotImplementedError

    def _bind_framer(self, framer: Framer) -> None:
        """Protocol hook (loop thread): connect a new link's framer to this object."""

    def _new_proto(self) -> Any:
        return None

    def _on_reconnect(self) -> None:
        """connect() on a connected object (serpy2 warns)."""

    def connect(self: C, adr: str, port: int) -> C:
        """Connect to ``(adr, port)`` (blocking) and start exchanging messages; returns self.

        A current connection is closed first; a closed or gone object is revived. Errors of
        the TCP connect propagate (``ConnectionRefusedError``, ``socket.gaierror``, ...).
        """
        rt = _runtime()
        if rt.in_loop_thread():
            raise RuntimeError("connect() cannot be called on the event-loop thread")
        self.adr = (adr, port)
        dropped = False
        if self._link is not None or self._restart_task is not None:
            if self._state == "open":
                self._on_reconnect()
            rt.call(self._drop_link, timeout=10.0)
            dropped = True
        with self._lock:
            self._closed_by_user = False
        link = Link(self)
        try:
            rt.run(
                polysock.connect(
                    adr, port, framing=self._make_framer, handler=link, family=socket.AF_INET,
                    timeout=CONNECT_TIMEOUT,
                ),
                CONNECT_TIMEOUT + 5.0,
            )
        except BaseException:
            if dropped or self._state != "new":
                self._set_gone()
            raise
        return self

    def _drop_link(self) -> None:
        """Close the current link quietly (loop thread); queued messages stay queued."""
        task, self._restart_task = self._restart_task, None
        if task is not None:
            task.cancel()
        link, self._link = self._link, None
        if link is None:
            return
        self._fail_acks(link.acks)
        link.owner = None
        self._end_proto(link)
        if link.core is not None and not link.lost:
            link.core.close(timeout=_LINGER)
        with self._lock:
            if self._state == "open":
                self._state = "restarting"  # not gone: connect() follows at once

    def start(self) -> None:
        """Start exchanging messages on the socket given as ``sock``. Idempotent."""
        if self._link is not None or self._state in ("open", "restarting"):
            return
        sock = self._sock
        if sock is None:
            raise ConnectionError("start(): this Connection has no socket (use connect())")
        if sock.fileno() < 0:
            raise ConnectionError("start(): the socket is closed")
        rt = _runtime()
        link = Link(self)

        async def adopt() -> None:
            loop = asyncio.get_running_loop()
            core = polysock.Connection(framer=self._make_framer(), role="client", handler=link)
            await loop.connect_accepted_socket(lambda: core, sock=sock)

        with self._lock:
            self._closed_by_user = False
        rt.run(adopt(), 30.0)

    def _link_up(self, link: Link) -> None:
        """A TCP connection is ready (loop thread): fresh protocol state, send the queue."""
        self._loop = asyncio.get_running_loop()
        self._link = link
        link.owner = self
        link.proto = self._new_proto()
        if link.core is not None:
            self._bind_framer(link.core.framer)
        with self._lock:
            self._state = "open"
            self._cond.notify_all()
        with _live_lock:
            _live.add(self)
        self._pump()

    # ------------------------------------------------------------ breaking

    def _end_proto(self, link: Link) -> None:
        """Protocol state of a link that ended (loop thread): cancel its timers."""

    def _fail_acks(self, acks: collections.deque[Ack]) -> None:
        if not acks:
            return
        with self._lock:
            for ack in acks:
                if ack.result is None:
                    ack.result = False
            acks.clear()
            self._cond.notify_all()

    def _link_down(self, link: Link, exc: BaseException | None) -> None:
        if link is not self._link:
            return
        self._link = None
        self._fail_acks(link.acks)
        self._end_proto(link)
        if (
            self._closed_by_user or link.closing or not self.auto_restart
            or self._server_child or not self.adr or self.restart_attempts == 0
        ):
            self._set_gone()
            return
        with self._lock:
            self._state = "restarting"
            self._cond.notify_all()
        self._restart_task = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        if self.WARN_ON_RESTART:
            self._warn("Attempting connection restart", UserWarning)
        host, port = self.adr
        for attempt in range(self.restart_attempts):
            if attempt:
                await asyncio.sleep(self.restart_interval)
            if not self.auto_restart or self._closed_by_user:
                break
            link = Link(self)
            try:
                await polysock.connect(
                    host, port, framing=self._make_framer, handler=link,
                    family=socket.AF_INET, timeout=RESTART_ATTEMPT_TIMEOUT,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("polysock.serpy: restart attempt %d to %s:%s failed: %r",
                          attempt + 1, host, port, exc)
                continue
            if self._restart_task is asyncio.current_task():
                self._restart_task = None
            return
        if self._restart_task is asyncio.current_task():
            self._restart_task = None
        self._set_gone()

    def _set_gone(self) -> None:
        with self._lock:
            self._state = "gone"
            for msg in self._outq:
                if msg.ack is not None and msg.ack.result is None:
                    msg.ack.result = False
            self._outq.clear()
            self._cond.notify_all()
        with _live_lock:
            _live.discard(self)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop restarts, flush queued messages (up to ``close_timeout``), send FIN.

        Pending acknowledged sends return False at once. Idempotent; never hangs; works on
        an object that never connected. Messages already received stay readable.
        """
        with self._lock:
            if self._closed_by_user and self._state == "gone":
                return
            self._closed_by_user = True
            for msg in self._outq:
                if msg.ack is not None and msg.ack.result is None:
                    msg.ack.result = False
            self._cond.notify_all()
        self._finish_close(self._begin_close())

    def _begin_close(self) -> threading.Event | None:
        if self._link is None and self._restart_task is None:
            if self._state == "new" and self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.close()
            return None
        flushed = threading.Event()
        try:
            _runtime().call(self._close_on_loop, flushed.set, timeout=self.close_timeout + 1.0)
        except (RuntimeError, TimeoutError):
            log.debug("polysock.serpy: %r: close on the event loop did not run", self)
            return None
        return flushed

    def _finish_close(self, flushed: threading.Event | None, deadline: float | None = None) -> None:
        if flushed is not None:
            wait = self.close_timeout if deadline is None else deadline - time.monotonic()
            flushed.wait(max(wait, 0.0))
        self._set_gone()

    def _close_on_loop(self, done: Callable[[], object]) -> None:
        """Start a graceful close (loop thread); ``done()`` once everything is written."""
        task, self._restart_task = self._restart_task, None
        if task is not None:
            task.cancel()
        link = self._link
        if link is None or link.core is None or link.lost:
            done()
            return
        link.closing = True
        self._fail_acks(link.acks)
        core = link.core
        self._pump()  # closing: everything queued goes out now, no waiting on the peer
        link.on_flushed = done
        with contextlib.suppress(Exception):  # resume_writing() then means "all written"
            core.transport.set_write_buffer_limits(high=0, low=0)
        core.close(timeout=self.close_timeout + _LINGER)
        if core.write_buffer_size == 0 or link.lost:
            link._flushed()

    # ------------------------------------------------------------ sending (loop side)

    def _schedule_pump(self) -> None:
        """Called with the lock held, after appending to the outgoing queue."""
        if self._pump_scheduled or self._state != "open" or self._loop is None:
            return
        self._pump_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._pump_soon)
        except RuntimeError:  # the loop is closed (interpreter exit)
            self._pump_scheduled = False

    def _pump_soon(self) -> None:
        with self._lock:
            self._pump_scheduled = False
        self._pump()

    def _before_write(self, link: Link, msg: Outgoing) -> bool:
        """Protocol hook (loop thread): False keeps ``msg`` queued for now."""
        return True

    def _pump(self) -> None:
        """Write queued messages in order while the socket takes them (loop thread)."""
        link = self._link
        if link is None or link.core is None or link.lost:
            return
        core = link.core
        if core.state != "open":
            return
        high = core.limits.write_high_water
        outq = self._outq
        while True:
            if not link.closing and core.write_buffer_size >= high:
                link.blocked = True
                return
            with self._lock:
                if not outq:
                    return
                msg = outq[0]
            if not self._before_write(link, msg):
                return
            with self._lock:
                if not outq or outq[0] is not msg:
                    continue
                outq.popleft()
                self._cond.notify_all()
            try:
                core.write(cast(Buffer, msg.payload))
            except polysock.ConnectionClosed:
                return
            except polysock.LocalProtocolError:
                log.exception("polysock.serpy: %r: message dropped", self)
                continue
            if msg.ack is not None:
                link.acks.append(msg.ack)

    def _write_control(self, link: Link, block: bytes) -> None:
        if link.core is not None and link.core.state == "open":
            link.core.write(block)

    # ------------------------------------------------------------ sending (user side)

    def _enqueue(self, msg: Outgoing, timeout: float | None) -> None:
        deadline = _check_timeout(timeout)
        with self._cond:
            while True:
                if self._state == "gone":
                    raise ConnectionClosed("cannot send: the connection is closed")
                if len(self._outq) < self.queue_size:
                    break
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Full
                    self._cond.wait(remaining)
            self._outq.append(msg)
            self._schedule_pump()

    def _wait_ack(self, ack: Ack, timeout: float | None) -> bool:
        deadline = _check_timeout(timeout)
        with self._cond:
            while ack.result is None:
                if self._state == "gone":
                    ack.result = False
                    break
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # Stays in the FIFO: the late acknowledgement is still consumed.
                        ack.result = False
                        break
                    self._cond.wait(remaining)
            return bool(ack.result)

    # ------------------------------------------------------------ receiving

    def _on_frames(self, link: Link, frames: list[bytes]) -> None:
        raise NotImplementedError

    def _deliver(self, link: Link, items: list[Any]) -> None:
        """Queue received items (loop thread); stop reading once the queue is full."""
        if not items:
            return
        with self._lock:
            self._inq.extend(items)
            full = len(self._inq) >= self.queue_size
            self._cond.notify_all()
        if full and not link.paused and link.core is not None:
            link.paused = True
            link.core.pause_reading()

    def _taken(self) -> None:
        """Called with the lock held after an item was removed from the incoming queue."""
        link = self._link
        if (
            link is not None and link.paused and not self._resume_scheduled
            and len(self._inq) < self.queue_size and self._loop is not None
        ):
            self._resume_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._resume_reading)
            except RuntimeError:
                self._resume_scheduled = False

    def _resume_reading(self) -> None:
        with self._lock:
            self._resume_scheduled = False
            resume = len(self._inq) < self.queue_size
        link = self._link
        if resume and link is not None and link.paused and link.core is not None:
            link.paused = False
            link.core.resume_reading()

    def _materialize(self, item: Any) -> Any:
        """The value ``getData`` returns for a queued item (caller's thread); raises
        :class:`Dropped` for a malformed one."""
        return item

    def getData(self, timeout: float | None = None) -> Any:
        """The next received message. ``queue.Empty`` after ``timeout`` seconds;
        :class:`ConnectionClosed` once the connection is gone and drained (with a timeout:
        when it expires, never earlier)."""
        deadline = _check_timeout(timeout)
        while True:
            with self._cond:
                while not self._inq:
                    gone = self._state == "gone"
                    if deadline is None:
                        if gone:
                            raise ConnectionClosed("the connection is closed")
                        self._cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if gone:
                            raise ConnectionClosed("the connection is closed")
                        raise queue.Empty
                    self._cond.wait(remaining)
                item = self._inq.popleft()
                self._taken()
            try:
                return self._materialize(item)
            except Dropped as exc:
                self._protocol_error(str(exc))

    def isDataAvailable(self) -> bool:
        """True if ``getData`` would return without waiting."""
        while True:
            with self._lock:
                if not self._inq:
                    return False
                item = self._inq[0]
            try:
                self._materialize(item)  # decodes in place: a malformed head is dropped now
            except Dropped as exc:
                with self._lock:
                    if self._inq and self._inq[0] is item:
                        self._inq.popleft()
                        self._taken()
                self._protocol_error(str(exc))
                continue
            return True

    def __iter__(self) -> Iterator[Any]:
        """Every queued message, until none arrived for 10 ms (as the original)."""
        while True:
            try:
                yield self.getData(timeout=0.01)
            except queue.Empty:
                return

    # ------------------------------------------------------------ errors

    def _peer(self) -> str:
        link = self._link
        peer = link.core.peername if link is not None and link.core is not None else None
        if peer is None and self.adr:
            peer = self.adr
        return "unknown peer" if peer is None else f"peer {peer[0]}:{peer[1]}"

    def _protocol_error(self, text: str) -> None:
        with self._lock:
            self._rx_errors += 1
        self._warn(f"{text} ({self._peer()})", ProtocolWarning)

    def _warn(self, text: str, category: type[Warning], stacklevel: int = 3) -> None:
        try:
            warnings.warn(text, category, stacklevel=stacklevel)
        except Exception:  # warnings turned into errors must not break the event loop
            log.warning("polysock.serpy: %s", text)


class BaseServer:
    """Accepts clients on a listening socket made in the constructor; one child
    connection per client, at most ``nb_conn`` connected at a time."""

    CONNECTION: ClassVar[type[BaseConnection]]

    def __init__(self, adr: str, port: int, nb_conn: int, child_options: dict[str, Any]) -> None:
        self.adr = adr
        self.port = port
        self.nb_conn = int(nb_conn)
        self._child_options = child_options
        serv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            serv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            serv.bind((adr, port))
            serv.listen(max(self.nb_conn, 0))
        except BaseException:
            serv.close()
            raise
        #: the listening socket (the event loop owns it once started)
        self.serv = serv
        self._address: tuple[str, int] = serv.getsockname()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._children: list[BaseConnection] = []
        self._new: collections.deque[BaseConnection] = collections.deque()
        self._frozen: list[BaseConnection] | None = None
        self._live = 0  # connected children (loop thread)
        self._core: polysock.Server | None = None
        self._closed = False
        self._refusing = False  # closeServer() in progress: no new children

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving" if self._core else "new"
        return f"<{type(self).__module__}.{type(self).__name__} {state} {self.adr}:{self.port}>"

    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound (the real port when ``port=0`` was asked)."""
        return self._address

    def start(self: Any) -> Any:
        """Start accepting; returns self. Idempotent; a closed server cannot restart."""
        if self._closed:
            raise ConnectionClosed("this Server was closed and cannot be restarted")
        if self._core is not None:
            return self
        cls = self.CONNECTION
        opts = self._child_options
        self._core = _runtime().run(
            polysock.serve(
                handler_factory=lambda: Link(None, self), sock=self.serv,
                framing=lambda: cls._framer_for(opts), backlog=max(self.nb_conn, 1),
            ),
            30.0,
        )
        return self

    def _child_made(self, link: Link, core: polysock.Connection) -> None:
        """A client connected (loop thread): refuse it or make it a child."""
        if self._closed or self._refusing or self._live >= self.nb_conn:
            link.refused = True
            core.close(timeout=REFUSE_CLOSE_TIMEOUT)
            return
        child = self.CONNECTION(**self._child_options)
        child._server_child = True
        self._live += 1
        child._link_up(link)
        with self._lock:
            self._children.append(child)
            self._new.append(child)
            self._cond.notify_all()

    def _child_lost(self, link: Link) -> None:
        self._live -= 1

    @property
    def connections(self) -> list[BaseConnection]:
        """Children that are connected or still hold unread messages, in accept order."""
        with self._lock:
            if self._frozen is not None:
                return list(self._frozen)
            self._children = [c for c in self._children if c._state == "open" or c._inq]
            return list(self._children)

    def getConnectionsList(self) -> list[BaseConnection]:
        """A new list of the children (see :attr:`connections`)."""
        return self.connections

    def readableConnections(self) -> list[BaseConnection]:
        """The children with data available."""
        return [c for c in self.connections if c.isDataAvailable()]

    def __iter__(self) -> Iterator[BaseConnection]:
        return iter(self.connections)

    def __len__(self) -> int:
        return len(self.connections)

    def _get_connection(self, timeout: float | None) -> BaseConnection:
        deadline = _check_timeout(timeout)
        with self._cond:
            while not self._new:
                if self._closed:
                    raise ConnectionClosed("the server is closed")
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Empty
                    self._cond.wait(remaining)
            return self._new.popleft()

    def close(self) -> None:
        """Stop accepting and close the listening socket. The children keep working (and
        are no longer pruned from :attr:`connections`). Idempotent."""
        if self._closed:
            return
        frozen = self.connections
        with self._lock:
            self._closed = True
            self._frozen = frozen
            self._cond.notify_all()
        core = self._core
        if core is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                _runtime().call(core.close, timeout=10.0)
        else:
            self.serv.close()

    def closeServer(self) -> None:
        """Close the server and every child (flushing each, all at once). Idempotent.

        The listening socket is closed first, so that no client (an auto-restarting one, say)
        becomes a new child while the others are being closed.
        """
        self._refusing = True
        with self._lock:
            children = list(self._frozen if self._frozen is not None else self._children)
        self.close()
        started: list[tuple[BaseConnection, threading.Event | None]] = []
        for child in children:
            with child._lock:
                if child._closed_by_user and child._state == "gone":
                    continue
                child._closed_by_user = True
                for msg in child._outq:
                    if msg.ack is not None and msg.ack.result is None:
                        msg.ack.result = False
                child._cond.notify_all()
            started.append((child, child._begin_close()))
        timeout = max((c.close_timeout for c, _ in started), default=0.0)
        deadline = time.monotonic() + timeout
        for child, flushed in started:
            child._finish_close(flushed, deadline)
