"""``TCPServer`` and ``Server_Client`` on the polysock core.

Every accepted connection lives on the core's shared event-loop thread (no thread per
client). The listening socket stays ours: the core serves on a *duplicate* of its descriptor,
so pausing (``stop()``) closes only the duplicate and new clients wait in the kernel's backlog
until ``start()`` serves a fresh duplicate; ``exit_accept()`` closes both, and new clients are
refused by the kernel at once.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import inspect
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import polysock
from polysock import Connection, ConnectionClosed, Handler
from polysock.runtime import CallbackDispatcher, get_runtime, serve_sync

from ._base import (
    CLOSE_TIMEOUT,
    DEFAULT_MAX_ITEM_SIZE,
    LIMITS,
    READ_HIGH_WATER,
    READ_LOW_WATER,
    CallableBool,
    Endpoint,
    EndpointEvents,
    log,
    send_payload,
)
from ._data import ReceivedData, Socket_Response, payload_of
from ._errors import Better_Exception, SetupError
from ._view import SocketView

__all__ = ["Server_Client", "TCPServer"]

Address = tuple[Any, ...]


def _address(peername: Any) -> Address:
    return tuple(peername) if peername is not None else ("", 0)


class Server_Client:
    """One accepted connection (the documentation's "client socket").

    ``[0]``/``[1]`` give the documented ``clients`` value layout ``[thread, socket]``.
    Equal and hashed by identity.
    """

    key: None = None
    cipher: None = None

    def __init__(self, server: TCPServer, conn: Connection, address: Address) -> None:
        self.address: Address = address
        self.recv_buffer: int = server._recv_buffer
        #: the thread running a custom ``handle_client``, else ``None``
        self.thread: threading.Thread | None = None
        self.socket = SocketView(self)
        self._server = server
        self._conn = conn
        self._dispatcher = CallbackDispatcher(
            f"simplesockets client {address}", on_error=server._dispatch_error
        )
        self._handler_mode = server._handle_client is not None
        #: the disconnect was claimed (on_disconnect queued); guarded by the server's lock
        self._ended = False
        #: no more bytes will arrive (peer FIN or connection gone)
        self._lost = False
        self._icond = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._observers: list[list[Socket_Response | None]] = []
        # handle_client mode: bytes held for the handler
        self._inbox: collections.deque[ReceivedData] = collections.deque()
        self._inbox_bytes = 0
        self._paused = False

    # ------------------------------------------------------------ 0.4.0 methods

    def send(self, data: object, raw: bool = False) -> None:
        """Queue ``data`` for this client; ``ConnectionError`` once it is gone."""
        self._send(data)

    def recv(self, raw: bool = False) -> Socket_Response:
        """The next received chunk (blocking); see ``TCPServer.recv_data``."""
        return self._server.recv_data(self)

    def close(self) -> None:
        """Disconnect this client (idempotent)."""
        self._server._disconnect(self, record=False)

    # ------------------------------------------------------------ seed layout

    def __getitem__(self, index: int) -> Any:
        return (self.thread, self.socket)[index]

    def __iter__(self) -> Any:
        return iter((self.thread, self.socket))

    def __len__(self) -> int:
        return 2

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Server_Client(address={self.address!r})"

    __str__ = __repr__

    # ------------------------------------------------------------ internals

    def _send(self, data: object) -> int:
        payload = payload_of(data)
        if self._ended:
            raise ConnectionError(f"client {self.address} is disconnected")
        if payload:
            send_payload(self._conn, self._send_lock, payload)
        return len(payload)

    def _close_conn(self) -> None:
        """Graceful close after everything queued so far (loop side, from any thread)."""
        conn = self._conn
        with contextlib.suppress(ConnectionClosed, RuntimeError):
            conn.call_threadsafe(lambda: conn.close(CLOSE_TIMEOUT))

    def _mark_lost(self) -> None:
        with self._icond:
            self._lost = True
            self._icond.notify_all()

    def _wake_readers(self) -> None:
        with self._icond:
            self._icond.notify_all()

    def _notify_observers(self, item: Socket_Response) -> None:
        with self._icond:
            for observer in self._observers:
                observer[0] = item
            self._observers.clear()
            self._icond.notify_all()

    def _observe(self) -> Socket_Response:
        """Wait for the next chunk recorded for this client (default mode)."""
        observer: list[Socket_Response | None] = [None]
        with self._icond:
            self._observers.append(observer)
            try:
                while observer[0] is None:
                    if self._ended or self._lost:
                        raise ConnectionError(f"client {self.address} is disconnected")
                    self._icond.wait()
            finally:
                with contextlib.suppress(ValueError):
                    self._observers.remove(observer)
        return observer[0]

    def _feed(self, messages: list[bytes], now: datetime.datetime) -> None:
        """handle_client mode: hold received bytes for the handler (loop thread)."""
        pause = False
        with self._icond:
            for chunk in messages:
                self._inbox.append(ReceivedData(chunk, now, self))
                self._inbox_bytes += len(chunk)
            if self._inbox_bytes > READ_HIGH_WATER and not self._paused:
                self._paused = pause = True
            self._icond.notify_all()
        if pause:
            self._conn.pause_reading()

    def _take(self, limit: int | None) -> ReceivedData:
        resume = False
        with self._icond:
            while not self._inbox:
                if self._lost or self._ended:
                    raise ConnectionError(f"client {self.address} is disconnected")
                self._icond.wait()
            head = self._inbox[0]
            if limit is None or limit >= len(head):
                self._inbox.popleft()
                out = head
            else:
                out = ReceivedData(head[:limit], head.time_, self)
                self._inbox[0] = ReceivedData(head[limit:], head.time_, self)
            self._inbox_bytes -= len(out)
            if self._paused and self._inbox_bytes <= READ_LOW_WATER:
                self._paused = False
                resume = True
        if resume:
            conn = self._conn
            with contextlib.suppress(RuntimeError):
                conn.loop.call_soon_threadsafe(conn.resume_reading)
        return out

    def _recv_bytes(self, bufsize: int) -> bytes:
        if not self._handler_mode:
            raise OSError(
                "reading from a client socket is only possible with a custom handle_client: "
                "the server records received data itself (use return_recved_data())"
            )
        if bufsize <= 0:
            raise ValueError("bufsize must be positive")
        return self._take(bufsize).response


class _AcceptFlag:
    """``server.event.accepting_thread``: ``run`` reads the accept state, assigning it
    starts or pauses accepting (the documentation tells users to set it)."""

    def __init__(self, server: TCPServer) -> None:
        self._server = server

    @property
    def run(self) -> bool:
        return self._server._accepting

    @run.setter
    def run(self, value: bool) -> None:
        server = self._server
        if not server._setup_done:
            server._accepting = bool(value)  # applies when setup() starts accepting
        elif value:
            server.start()
        else:
            server.stop()


class _ServerEvents(EndpointEvents):
    def __init__(self, server: TCPServer) -> None:
        super().__init__(server)
        self.accepting_thread = _AcceptFlag(server)


class _Connection(Handler):
    """The loop-thread side of one accepted connection: forwards to the server."""

    __slots__ = ("client", "server")

    def __init__(self, server: TCPServer) -> None:
        self.server = server
        self.client: Server_Client | None = None

    def connection_made(self, conn: Connection) -> None:
        self.client = self.server._on_made(conn)

    def messages_received(self, conn: Connection, messages: list[bytes]) -> None:
        if self.client is not None:
            self.server._on_chunks(self.client, messages)

    def eof_received(self, conn: Connection) -> bool:
        client = self.client
        if client is None or not client._handler_mode:
            return False  # close: flushes what is queued, then FIN
        client._mark_lost()
        return True  # the handler may still answer; the connection closes when it returns

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if self.client is not None:
            self.server._on_lost(self.client, exc)


class TCPServer(Endpoint):
    """A TCP server that records what its clients send (see the package README)."""

    def __init__(self, max_connections: int | None = None) -> None:
        super().__init__()
        self.max_connections = max_connections
        #: the listening socket (``None`` before ``setup()``); do not accept on it
        self.socket: socket.socket | None = None
        self.on_connect: Callable[..., object] | None = None
        self.on_disconnect: Callable[..., object] | None = None
        self.on_receive: Callable[..., object] | None = None
        self.event = _ServerEvents(self)
        self._clients: dict[Address, Server_Client] = {}
        self._state_lock = threading.RLock()
        self._setup_done = False
        self._closed = False
        self._killed = False
        self._accepting = True
        self._core_server: polysock.Server | None = None
        self._ip = "127.0.0.1"
        self._port = 25567
        self._listen = 5
        self._recv_buffer = 2048
        self._max_item_size = DEFAULT_MAX_ITEM_SIZE
        self._handle_client: Callable[[Server_Client], object] | None = None
        self._arity: tuple[Callable[..., object], bool] | None = None

    @property
    def max_connections(self) -> int | None:
        return self._max_connections

    @max_connections.setter
    def max_connections(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"max_connections must be None or an int >= 0, not {value!r}")
        self._max_connections = value

    def __repr__(self) -> str:
        return (
            f"<simplesockets.TCPServer {self._ip}:{self._port} clients={len(self._clients)} "
            f"accepting={self._accepting} killed={bool(self.killed)}>"
        )

    def __enter__(self) -> TCPServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ setup / accept

    def setup(  # noqa: PLR0917 - the documented positional signature
        self,
        ip: str = "127.0.0.1",
        port: int = 25567,
        listen: int = 5,
        recv_buffer: int = 2048,
        handle_client: Callable[[Server_Client], object] | None = None,
        on_connect: Callable[..., object] | None = None,
        on_disconnect: Callable[..., object] | None = None,
        on_receive: Callable[..., object] | None = None,
        *,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    ) -> None:
        """Bind, listen and start accepting at once (as 0.4.0 did)."""
        if recv_buffer <= 0 or max_item_size <= 0:
            raise ValueError("recv_buffer and max_item_size must be positive")
        with self._state_lock:
            if self._closed:
                raise SetupError("Server is closed")
            if self._setup_done:
                raise SetupError("Server is already setup")
            sock = self._bind(ip, port, listen)
            self.socket = sock
            self._ip, self._port = ip, int(sock.getsockname()[1])
            self._listen = listen
            self._recv_buffer = recv_buffer
            self._max_item_size = max_item_size
            self._handle_client = handle_client
            if on_connect is not None:
                self.on_connect = on_connect
            if on_disconnect is not None:
                self.on_disconnect = on_disconnect
            if on_receive is not None:
                self.on_receive = on_receive
            self._setup_done = True
            if self._accepting:
                try:
                    self._serve()
                except BaseException:
                    self._setup_done = False
                    sock.close()
                    self.socket = None
                    raise

    @staticmethod
    def _bind(ip: str, port: int, listen: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(listen)
        except BaseException:
            sock.close()
            raise
        return sock

    def _serve(self) -> None:
        # Called with _state_lock held. The core gets a duplicate descriptor of the listening
        # socket, so that closing its server (stop) leaves ours listening.
        if self._core_server is not None or self.socket is None:
            return
        dup = self.socket.dup()
        try:
            self._core_server = serve_sync(
                sock=dup,
                handler_factory=lambda: _Connection(self),
                framing="raw",
                framing_options={"max_frame_size": self._max_item_size},
                backlog=self._listen,
                limits=LIMITS,
            )
        except BaseException:
            dup.close()
            raise

    def _unserve(self) -> None:
        # Called with _state_lock held; returns once the loop no longer accepts.
        core, self._core_server = self._core_server, None
        if core is not None:
            get_runtime().call(core.close)

    def start(self) -> None:
        """Accept clients from now on (again); reopens the listening socket after
        ``exit_accept()``."""
        with self._state_lock:
            if self._closed:
                raise SetupError("Server is closed")
            if not self._setup_done:
                raise SetupError("Server isn't setup")
            if self._killed:
                self.socket = self._bind(self._ip, self._port, self._listen)
                self._killed = False
            self._serve()
            self._accepting = True

    restart = start

    def stop(self) -> None:
        """Pause accepting at once; new clients wait in the backlog until ``start()``."""
        with self._state_lock:
            self._accepting = False
            self._unserve()

    def exit_accept(self) -> None:
        """Close the listening socket (new clients are refused); existing ones stay."""
        with self._state_lock:
            self._accepting = False
            self._unserve()
            if self.socket is not None:
                self.socket.close()
            self._killed = True

    @property
    def killed(self) -> CallableBool:
        """True after ``exit_accept()`` (until ``start()``) and after ``close()``; also
        callable, as the documentation writes it."""
        return CallableBool(self._killed or self._closed)

    def close(self) -> None:
        """Stop accepting and disconnect every client; returns within about a second."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._accepting = False
            self._unserve()
            if self.socket is not None:
                self.socket.close()
        with self._cond:
            clients = list(self._clients.values())
        waits = []
        for client in clients:
            done = self._end(client)
            client._close_conn()
            if done is not None:
                waits.append(done)
        if not self._in_callback():
            deadline = time.monotonic() + 0.9
            for done in waits:
                done.wait(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ loop-thread events

    def _on_made(self, conn: Connection) -> Server_Client | None:
        address = _address(conn.peername)
        limit = self._max_connections
        with self._cond:
            if self._closed or (limit is not None and len(self._clients) >= limit):
                client = None
            else:
                client = Server_Client(self, conn, address)
                self._clients[address] = client
                client._dispatcher.submit(self._cb_connect, client)
                if self._handle_client is not None:
                    client._dispatcher.submit(self._start_handler, client, self._handle_client)
        if client is None:  # refused: accepted, nothing sent, closed gracefully
            conn.close(CLOSE_TIMEOUT)
        return client

    def _on_chunks(self, client: Server_Client, messages: list[bytes]) -> None:
        now = datetime.datetime.now()
        if client._handler_mode:
            client._feed(messages, now)
            return
        callback = self.on_receive
        item = None
        with self._cond:
            if client._ended:
                return  # disconnected by us: on_disconnect was the last word
            for chunk in messages:
                item = Socket_Response._of(ReceivedData(chunk, now, client), client.address)
                self._record_item_locked(item)
                if callback is not None:
                    client._dispatcher.submit(self._cb_receive, callback, client, item)
        if client._observers and item is not None:
            client._notify_observers(item)

    def _on_lost(self, client: Server_Client, exc: BaseException | None) -> None:
        client._mark_lost()
        if exc is not None and not client._ended:
            self._record_exception(exc)
        self._end(client)

    def _end(self, client: Server_Client) -> threading.Event | None:
        """Claim the end of ``client`` once: unregister it and queue ``on_disconnect``.

        Returns an event set when ``on_disconnect`` has run, or ``None`` if it had ended
        already (0.4.0 raced here and raised ``KeyError``).
        """
        with self._cond:
            if client._ended:
                return None
            client._ended = True
            if self._clients.get(client.address) is client:
                del self._clients[client.address]
            done = threading.Event()
            client._dispatcher.submit(self._cb_disconnect, client, done)
        client._wake_readers()
        return done

    # ------------------------------------------------------------ callbacks

    def _cb_connect(self, client: Server_Client) -> None:
        self._run_callback("on_connect", self.on_connect, client.address)

    def _cb_receive(
        self, callback: Callable[..., object], client: Server_Client, item: Socket_Response
    ) -> None:
        if self._two_arguments(callback):
            self._run_callback("on_receive", callback, client, item)
        else:
            self._run_callback("on_receive", callback, client, item[1], item[2])

    def _cb_disconnect(self, client: Server_Client, done: threading.Event) -> None:
        try:
            self._run_callback("on_disconnect", self.on_disconnect, client.address)
        finally:
            done.set()

    def _two_arguments(self, callback: Callable[..., object]) -> bool:
        """0.4.0's ``on_receive(client, response)``: a callable that takes two positional
        arguments but not three. Decided once per callable."""
        cached = self._arity
        if cached is not None and cached[0] == callback:
            return cached[1]
        two = False
        try:
            signature = inspect.signature(callback)
        except (TypeError, ValueError):
            pass
        else:
            try:
                signature.bind(None, None, None)
            except TypeError:
                try:
                    signature.bind(None, None)
                    two = True
                except TypeError:
                    pass
        self._arity = (callback, two)
        return two

    def _start_handler(
        self, client: Server_Client, handler: Callable[[Server_Client], object]
    ) -> None:
        thread = threading.Thread(
            target=self._run_handler, args=(client, handler), daemon=True,
            name=f"simplesockets-handle_client-{client.address}",
        )
        client.thread = thread
        thread.start()

    def _run_handler(
        self, client: Server_Client, handler: Callable[[Server_Client], object]
    ) -> None:
        try:
            handler(client)
        except Exception as exc:
            log.error("simplesockets: handle_client %r raised", handler, exc_info=exc)
            self._record_exception(exc)
        finally:
            self._end(client)
            client._close_conn()

    # ------------------------------------------------------------ user API

    def _resolve(self, target: object) -> Server_Client | None:
        if isinstance(target, Server_Client):
            return target if target._server is self else None
        if isinstance(target, SocketView):
            owner = target._owner
            return owner if isinstance(owner, Server_Client) and owner._server is self else None
        if isinstance(target, (tuple, list)):
            with self._cond:
                return self._clients.get(tuple(target))
        return None

    @property
    def clients(self) -> dict[Address, Server_Client]:
        """A snapshot ``{address: Server_Client}`` of the connected clients."""
        with self._cond:
            return dict(self._clients)

    @property
    def new_data_recved(self) -> bool:
        """The documentation's name for ``event.new_data``."""
        return self._new_data

    def send_data(self, data: object, client_socket: object) -> bool:
        """Queue ``data`` for one client, in order. ``False`` (and a recorded exception)
        when it cannot be sent; never raises."""
        try:
            payload = payload_of(data)
        except TypeError as exc:
            self._record_exception(exc)
            return False
        client = self._resolve(client_socket)
        if client is None:
            self._record_exception(KeyError(f"unknown client {client_socket!r}"))
            return False
        try:
            client._send(payload)
        except (ConnectionError, OSError) as exc:
            self._record_exception(exc)
            return False
        return True

    def recv_data(self, client_socket: object) -> Socket_Response:
        """The next chunk from that client (blocking); ``ConnectionError`` once it is gone
        and its data was consumed."""
        client = self._resolve(client_socket)
        if client is None:
            raise ConnectionError(f"no such client: {client_socket!r}")
        if client._handler_mode:
            return Socket_Response._of(client._take(None), client.address)
        return client._observe()

    def disconnect(self, target: object) -> bool:
        """Close one client gracefully (queued data first); ``on_disconnect`` has run when
        this returns. ``False`` and a recorded ``KeyError`` for an unknown target."""
        client = self._resolve(target)
        if client is None:
            self._record_exception(KeyError(f"unknown client {target!r}"))
            return False
        return self._disconnect(client, record=True)

    def _disconnect(self, client: Server_Client, record: bool) -> bool:
        done = self._end(client)
        if done is None:
            if record:
                self._record_exception(KeyError(f"client {client.address} is disconnected"))
            return False
        client._close_conn()
        if not self._in_callback():
            done.wait()
        return True

    def return_exceptions(
        self, delete: bool = True, reset_exception: bool = True, *,
        reset_exceptions: bool | None = None,
    ) -> dict[str, Better_Exception]:
        """The recorded exceptions ``{time key: Better_Exception}``, oldest first."""
        if reset_exceptions is not None:
            reset_exception = reset_exceptions
        return self._return_exceptions(delete, reset_exception)

    def await_event(self, timeout: float = 0) -> tuple[Any, Any]:
        """Wait (``timeout`` ms, 0 = forever) for the next event and return it with its
        value: received items, exceptions, or ``None`` on timeout."""
        return self._await_event(timeout)
