"""``TCPClient`` on the polysock core: one connection at a time, read by the event loop.

There is exactly one reader per connection (the loop), whatever ``autorecv()`` says: it only
decides whether a chunk is recorded (on) or held for ``recv_data()`` (off). 0.4.0 started a
new reader thread on every toggle, and two readers split the stream between them.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import socket
import threading
from collections.abc import Callable
from typing import Any

from polysock import Connection, ConnectionClosed, Handler
from polysock.runtime import CallbackDispatcher, connect_sync

from ._base import (
    CLOSE_TIMEOUT,
    DEFAULT_MAX_ITEM_SIZE,
    LIMITS,
    READ_HIGH_WATER,
    READ_LOW_WATER,
    Endpoint,
    EndpointEvents,
    send_payload,
)
from ._data import ReceivedData, Socket_Response, payload_of
from ._errors import Better_Exception, SetupError
from ._events import Event
from ._view import SocketView

__all__ = ["TCPClient"]

#: how long connect() tries one address before giving up on it
CONNECT_TIMEOUT = 30.0


class _ClientEvents(EndpointEvents):
    def __init__(self, client: TCPClient) -> None:
        super().__init__(client)
        #: True after a successful connect until reconnect()
        self.connected = False
        #: True once the connection ended (reset by connect()/reconnect())
        self.disconnected = False
        #: True exactly while connected
        self.is_connected = False


class _Session:
    """One connection of a client; every field is guarded by the client's lock."""

    def __init__(self, client: TCPClient, address: tuple[Any, int]) -> None:
        self.client = client
        self.address = address
        self._conn: Connection | None = None  # set on connection_made
        self.ended = False
        self.pending: collections.deque[Socket_Response] = collections.deque()
        self.pending_bytes = 0
        self.paused = False
        self.observers: list[list[Socket_Response | None]] = []
        self.connected_done: threading.Event | None = None
        self.socket = SocketView(self)
        self._send_lock = threading.Lock()

    def _send(self, data: object) -> int:
        payload = payload_of(data)
        if self.ended or self._conn is None:
            raise ConnectionError("the client is disconnected")
        if payload:
            send_payload(self._conn, self._send_lock, payload)
        return len(payload)

    def _recv_bytes(self, bufsize: int) -> bytes:
        return self.client._take_bytes(self, bufsize)

    def close(self) -> None:
        self.client._close_session(self)

    def _close_conn(self) -> None:
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(ConnectionClosed, RuntimeError):
            conn.call_threadsafe(lambda: conn.close(CLOSE_TIMEOUT))

    def _resume_reading(self) -> None:
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(RuntimeError):
            conn.loop.call_soon_threadsafe(conn.resume_reading)


class _Connection(Handler):
    __slots__ = ("client", "session")

    def __init__(self, client: TCPClient, session: _Session) -> None:
        self.client = client
        self.session = session

    def connection_made(self, conn: Connection) -> None:
        self.client._on_made(self.session, conn)

    def messages_received(self, conn: Connection, messages: list[bytes]) -> None:
        self.client._on_chunks(self.session, messages)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        self.client._on_lost(self.session, exc)


class TCPClient(Endpoint):
    """A TCP client that records what the server sends (see the package README)."""

    EVENT_DISCONNECT = Event("--DISCONNECT--")
    EVENT_CONNECTED = Event("--CONNECTED--")

    def __init__(self) -> None:
        super().__init__()
        #: a socket-like view of the current connection (``None`` before the first one)
        self.socket: SocketView | None = None
        self.on_connect: Callable[[], object] | None = None
        self.on_disconnect: Callable[[], object] | None = None
        self.on_receive: Callable[[ReceivedData], object] | None = None
        self.event = _ClientEvents(self)
        self._dispatcher = CallbackDispatcher("simplesockets client", self._dispatch_error)
        self._session: _Session | None = None
        self._autorecv = False
        self._connect_lock = threading.Lock()
        self._setup_done = False
        self._target_ip: str | None = None
        self._target_port: int = 25567
        self._recv_buffer = 2048
        self._max_item_size = DEFAULT_MAX_ITEM_SIZE

    def __repr__(self) -> str:
        state = "connected" if self.event.is_connected else "not connected"
        return f"<simplesockets.TCPClient {self._target_ip}:{self._target_port} {state}>"

    def __enter__(self) -> TCPClient:
        self.connect()
        with self._cond:
            if not self._autorecv:
                self.autorecv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def Address(self) -> tuple[str | None, int]:
        return (self._target_ip, self._target_port)

    @property
    def new_data_recved(self) -> bool:
        """The documentation's name for ``event.new_data``."""
        return self._new_data

    def setup(  # noqa: PLR0917 - the documented positional signature
        self,
        target_ip: str,
        target_port: int = 25567,
        recv_buffer: int = 2048,
        on_connect: Callable[[], object] | None = None,
        on_disconnect: Callable[[], object] | None = None,
        on_receive: Callable[[ReceivedData], object] | None = None,
        *,
        listen: int | None = None,
        handle_client: object = None,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    ) -> None:
        """Store where to connect; ``listen`` and ``handle_client`` (documented for the
        client but meaningless there) are accepted and ignored."""
        if recv_buffer <= 0 or max_item_size <= 0:
            raise ValueError("recv_buffer and max_item_size must be positive")
        self._target_ip = target_ip
        self._target_port = target_port
        self._recv_buffer = recv_buffer
        self._max_item_size = max_item_size
        if on_connect is not None:
            self.on_connect = on_connect
        if on_disconnect is not None:
            self.on_disconnect = on_disconnect
        if on_receive is not None:
            self.on_receive = on_receive
        self._setup_done = True

    def start(self) -> None:
        """Does nothing: the documentation's client example calls it."""

    # ------------------------------------------------------------ connecting

    def connect(self) -> bool:
        """Connect to the server; ``on_connect()`` has run when this returns ``True``.
        ``False`` (and a recorded exception) when it fails."""
        if not self._setup_done:
            raise SetupError("Client isn't setup")
        with self._connect_lock:
            current = self._session
            if current is not None and not current.ended:
                return True
            host, port = self._target_ip, self._target_port
            session = _Session(self, (host, port))
            error: BaseException | None = None
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                infos, error = [], exc
            for family, _type, _proto, _name, sockaddr in infos:
                try:
                    connect_sync(
                        str(sockaddr[0]),
                        port,
                        family=family,
                        framing="raw",
                        framing_options={"max_frame_size": self._max_item_size},
                        handler=_Connection(self, session),
                        limits=LIMITS,
                        timeout=CONNECT_TIMEOUT,
                    )
                except Exception as exc:
                    error = exc  # like socket.create_connection: the last address's error
                    continue
                error = None
                break
            if error is not None or session.connected_done is None:
                self._record_exception(error or ConnectionError(f"could not connect to {host}"))
                return False
            done = session.connected_done
        if not self._in_callback():
            done.wait()
        return True

    def reconnect(self) -> bool:
        """Close the current connection (if any), then ``connect()``."""
        self.close()
        with self._cond:
            self.event.connected = False
            self.event.disconnected = False
        return self.connect()

    def close(self) -> None:
        """Close gracefully (queued data first); ``on_disconnect()`` has run when this
        returns. Does nothing when not connected."""
        session = self._session
        if session is not None:
            self._close_session(session)

    disconnect = close
    shutdown = close

    def _close_session(self, session: _Session) -> None:
        done = self._end(session)
        if done is None:
            return
        session._close_conn()
        if not self._in_callback():
            done.wait()

    def _end(self, session: _Session) -> threading.Event | None:
        with self._cond:
            if session.ended or session._conn is None:
                return None
            session.ended = True
            if self._session is session:
                self.event.is_connected = False
                self.event.disconnected = True
            self._queue_event_locked(self.EVENT_DISCONNECT)
            done = threading.Event()
            self._dispatcher.submit(self._cb_disconnect, done)
            self._cond.notify_all()
        return done

    # ------------------------------------------------------------ loop-thread events

    def _on_made(self, session: _Session, conn: Connection) -> None:
        with self._cond:
            session._conn = conn
            self._session = session
            self.socket = session.socket
            self.event.connected = True
            self.event.is_connected = True
            self.event.disconnected = False
            self._queue_event_locked(self.EVENT_CONNECTED)
            session.connected_done = done = threading.Event()
            self._dispatcher.submit(self._cb_connect, done)

    def _on_chunks(self, session: _Session, messages: list[bytes]) -> None:
        now = datetime.datetime.now()
        callback = self.on_receive
        pause = False
        with self._cond:
            if session.ended:
                return  # closed by us: nothing is recorded after on_disconnect
            for chunk in messages:
                data = ReceivedData(chunk, now, None)
                item = Socket_Response._of(data, session.address)
                if self._autorecv:
                    self._record_item_locked(item)
                    if callback is not None:
                        self._dispatcher.submit(self._cb_receive, callback, data)
                    for observer in session.observers:
                        if observer[0] is None:
                            observer[0] = item
                else:
                    session.pending.append(item)
                    session.pending_bytes += len(data)
            if session.pending_bytes > READ_HIGH_WATER and not session.paused:
                session.paused = pause = True
            self._cond.notify_all()
        if pause and session._conn is not None:
            session._conn.pause_reading()

    def _on_lost(self, session: _Session, exc: BaseException | None) -> None:
        if exc is not None and not session.ended:
            self._record_exception(exc)
        self._end(session)

    # ------------------------------------------------------------ callbacks

    def _cb_connect(self, done: threading.Event) -> None:
        try:
            self._run_callback("on_connect", self.on_connect)
        finally:
            done.set()

    def _cb_receive(self, callback: Callable[..., object], data: ReceivedData) -> None:
        self._run_callback("on_receive", callback, data)

    def _cb_disconnect(self, done: threading.Event) -> None:
        try:
            self._run_callback("on_disconnect", self.on_disconnect)
        finally:
            done.set()

    # ------------------------------------------------------------ data

    def autorecv(self) -> bool:
        """Toggle automatic receiving (initially off). Turning it on records whatever
        arrived while it was off."""
        with self._cond:
            self._autorecv = not self._autorecv
            session = self._session
            if not self._autorecv or session is None or not session.pending:
                return True
            callback = self.on_receive
            while session.pending:
                item = session.pending.popleft()
                self._record_item_locked(item)
                if callback is not None:
                    self._dispatcher.submit(self._cb_receive, callback, item[2])
            session.pending_bytes = 0
            resume = session.paused
            session.paused = False
        if resume:
            session._resume_reading()
        return True

    def send_data(self, data: object) -> bool:
        """Queue ``data`` for the server, in order. ``False`` (and a recorded exception)
        when it cannot be sent; never raises."""
        session = self._session
        try:
            if session is None:
                raise ConnectionError("the client is not connected")
            session._send(data)
        except (TypeError, OSError) as exc:
            self._record_exception(exc)
            return False
        return True

    def recv_data(self) -> Socket_Response:
        """The next received chunk (blocking). With autorecv off it is consumed here;
        with autorecv on it is recorded as usual and also returned."""
        with self._cond:
            session = self._session
            if session is None:
                raise ConnectionError("the client is not connected")
            item = self._wait_item(session, None)
        return item

    def _wait_item(self, session: _Session, limit: int | None) -> Socket_Response:
        # Called with the lock held.
        observer: list[Socket_Response | None] | None = None
        try:
            while True:
                if observer is not None and observer[0] is not None:
                    return observer[0]
                if self._autorecv and limit is None:
                    if observer is None:
                        observer = [None]
                        session.observers.append(observer)
                elif session.pending:
                    return self._pop_pending(session, limit)
                if session.ended:
                    raise ConnectionError("the client is disconnected")
                self._cond.wait()
        finally:
            if observer is not None:
                with contextlib.suppress(ValueError):
                    session.observers.remove(observer)

    def _pop_pending(self, session: _Session, limit: int | None) -> Socket_Response:
        head = session.pending[0]
        data = head[2]
        if limit is None or limit >= len(data):
            session.pending.popleft()
            out = head
        else:
            out = Socket_Response._of(ReceivedData(data[:limit], data.time_), head[1])
            session.pending[0] = Socket_Response._of(
                ReceivedData(data[limit:], data.time_), head[1]
            )
        session.pending_bytes -= len(out[2])
        if session.paused and session.pending_bytes <= READ_LOW_WATER:
            session.paused = False
            session._resume_reading()
        return out

    def _take_bytes(self, session: _Session, bufsize: int) -> bytes:
        if bufsize <= 0:
            raise ValueError("bufsize must be positive")
        with self._cond:
            if self._autorecv:
                raise OSError(
                    "reading from the client socket is only possible with autorecv off"
                )
            return self._wait_item(session, bufsize).response

    def return_recved_data(self, clear_event: bool = True) -> list[Socket_Response]:
        """Every item received so far, oldest first; empties the list atomically."""
        return super().return_recved_data(clear_event)

    def return_exceptions(
        self, delete: bool = True, reset_exceptions: bool = True, *,
        reset_exception: bool | None = None,
    ) -> dict[str, Better_Exception]:
        """The recorded exceptions ``{time key: Better_Exception}``, oldest first."""
        if reset_exception is not None:
            reset_exceptions = reset_exception
        return self._return_exceptions(delete, reset_exceptions)

    def await_event(
        self, timeout: float = 0, disable_on_functions: bool = False
    ) -> tuple[Any, Any]:
        """Wait (``timeout`` ms, 0 = forever) for the next event and return it with its
        value; ``disable_on_functions`` first drops queued CONNECTED/DISCONNECT events."""
        drop = (self.EVENT_CONNECTED.name, self.EVENT_DISCONNECT.name)
        return self._await_event(timeout, drop if disable_on_functions else ())
