"""TCPClient: connect, exchange NUL-terminated text, optionally wait for a reply.

A tcpcom server refuses a second client by accepting it and closing without a byte, so a
fresh connection is "on probation" for a short window (adaptive: ten times the measured connect
time, 0.2 s to 2 s). The handler watches it from the moment TCP is up, on the loop thread, so
the refusal's FIN cannot be consumed by anyone else first (the original's race): EOF with no
byte means ``SERVER_OCCUPIED``; a byte, or the end of the window, means ``CONNECTED``, which is
queued before any ``MESSAGE`` of that connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from typing import Any, Literal, cast

from polysock import Connection, FrameTooLarge, Handler, ProtocolError, connect
from polysock.errors import (
    ConnectionClosed,
    HandshakeError,
    LocalProtocolError,
    PolysockError,
)
from polysock.framing import DEFAULT_MAX_FRAME_SIZE

from . import _lifetime
from ._common import (
    CLOSE_TIMEOUT,
    Endpoint,
    ObservedFramer,
    Reply,
    Session,
    StateCallback,
    check_end_of_block,
    check_max_message_size,
    check_send_size,
    encode_message,
    framer_factory,
    log,
)
from ._plugin import end_of_block_byte

__all__ = ["TCPClient"]

Outcome = Literal["connected", "occupied", "failed"]


class _Attempt(Handler):
    """One connection attempt, then (if accepted) the connection's loop-thread events."""

    def __init__(self, client: TCPClient, window: float | None) -> None:
        self.client = client
        self.fixed_window = window
        self.loop = asyncio.get_running_loop()
        self.decided: asyncio.Future[Outcome] = self.loop.create_future()
        self.started = time.monotonic()
        self.state: Literal["watch", "connected", "occupied"] = "watch"
        self.session: Session | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.conn: Connection | None = None

    def window(self) -> float:
        if self.fixed_window is not None:
            return self.fixed_window
        c = self.client
        rtt = time.monotonic() - self.started
        return float(
            min(c.OCCUPIED_MAX_WINDOW, max(c.OCCUPIED_MIN_WINDOW, c.OCCUPIED_RTT_FACTOR * rtt))
        )

    # ------------------------------------------------------------ decisions

    def _connected(self) -> None:
        if self.state != "watch":
            return
        self.state = "connected"
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        assert self.conn is not None
        self.session = Session(self.conn)
        self.client._accepted(self.session)
        if not self.decided.done():
            self.decided.set_result("connected")

    def _occupied(self) -> None:
        if self.state != "watch":
            return
        self.state = "occupied"
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.decided.done():
            self.decided.set_result("occupied")

    # ------------------------------------------------------------ Handler

    def connection_made(self, conn: Connection) -> None:
        self.conn = conn
        window = self.window()
        framer = conn.framer
        if isinstance(framer, ObservedFramer):
            framer.on_first_data = self._connected
        if window <= 0:
            self._connected()
        else:
            self.timer = self.loop.call_later(window, self._connected)

    def messages_received(self, conn: Connection, messages: list[bytes]) -> None:
        if self.state == "watch":  # the framer reports the first byte; this is a safeguard
            self._connected()
        session = self.session
        if session is None:
            return
        reply = session.reply
        if reply is not None:
            session.reply = None
            reply.resolve(messages[0])
        if session.active:
            self.client._queue_messages(session, messages)

    def eof_received(self, conn: Connection) -> bool:
        if self.state == "watch":
            self._occupied()
        elif self.session is not None:
            self.client._ended(self.session)
        return False

    def protocol_error(self, conn: Connection, exc: ProtocolError | HandshakeError) -> None:
        if self.session is not None:
            if isinstance(exc, FrameTooLarge):
                self.client._oversize()
            self.client._ended(self.session)
        else:
            self._occupied()

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if self.state == "watch":
            self._occupied()
        elif self.session is not None:
            self.client._ended(self.session)

    def write_drained(self, conn: Connection) -> None:
        if self.session is not None:
            self.session.outbox.resume()


class TCPClient(Endpoint):
    """A TCP client for a tcpcom server.

    ``TCPClient(ipAddress, port, stateChanged, isVerbose=False, *, endOfBlock="\\0",
    occupiedWindow=None, maxMessageSize=16 MiB)``. The constructor does not connect.
    """

    _kind = "TCPClient"

    CONNECTING = "CONNECTING"
    SERVER_OCCUPIED = "SERVER_OCCUPIED"
    CONNECTION_FAILED = "CONNECTION_FAILED"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    MESSAGE = "MESSAGE"

    OCCUPIED_MIN_WINDOW = 0.2
    OCCUPIED_RTT_FACTOR = 10
    OCCUPIED_MAX_WINDOW = 2.0

    def __init__(
        self,
        ipAddress: str,
        port: int,
        stateChanged: StateCallback | None,
        isVerbose: bool = False,
        *args: Any,
        endOfBlock: str | bytes = "\0",
        occupiedWindow: float | None = None,
        maxMessageSize: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        check_end_of_block((isVerbose, *args))
        if args:
            raise TypeError(
                f"TCPClient() takes at most 4 positional arguments ({4 + len(args)} given)"
            )
        if not isinstance(ipAddress, str):
            raise TypeError(f"ipAddress must be a str, not {type(ipAddress).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        if occupiedWindow is not None and occupiedWindow < 0:
            raise ValueError(f"occupiedWindow must be >= 0 or None, not {occupiedWindow}")
        super().__init__(stateChanged, isVerbose)
        self.ipAddress = ipAddress
        self.port = port
        self._eob = end_of_block_byte(endOfBlock)
        self._max_size = check_max_message_size(maxMessageSize)
        self._window = None if occupiedWindow is None else float(occupiedWindow)
        self._target = f"{ipAddress}:{port}"
        self._session: Session | None = None  # changed on the loop thread only
        self._connected = False
        self._connecting = False
        self._lock = threading.Lock()
        self._pending: concurrent.futures.Future[bool] | None = None
        self._connected_done = threading.Event()  # CONNECTED of the latest connection ran
        self._request_lock = threading.Lock()

    # ------------------------------------------------------------ loop thread

    def _accepted(self, session: Session) -> None:
        self._session = session
        self._connected = True
        self._connecting = False
        _lifetime.hold()  # released when the connection ends: a connected client keeps
        #                   the script alive, like the original's receiver thread
        self._debug("Successfully connected")
        self._connected_done = self._fire(self.CONNECTED, self._target)

    def _ended(self, session: Session) -> None:
        if session.ended:
            return
        session.ended = True
        self._drop(session)
        session.outbox.close()
        self._debug("Connection closed by peer")
        self._fire(self.DISCONNECTED, "")

    def _drop(self, session: Session) -> None:
        if self._session is session:
            self._session = None
            self._connected = False
            _lifetime.release()
        reply = session.reply
        if reply is not None:
            session.reply = None
            reply.resolve(None)

    def _oversize(self) -> None:
        text = f"message exceeds maxMessageSize ({self._max_size} bytes); closing connection"
        log.warning("TCPClient to %s: %s", self._target, text)
        self._debug(text)

    def _disconnect_on_loop(self) -> Any:
        session = self._session
        if session is None:
            return None
        session.active = False
        session.ended = True
        self._drop(session)
        session.outbox.close()  # what sendMessage() accepted goes out before the FIN
        session.conn.close(CLOSE_TIMEOUT)
        return self._fire(self.DISCONNECTED, "")

    async def _open(self, timeout: float | None) -> Outcome:
        """Resolve, connect (each address in turn), then watch the occupancy window."""
        loop = asyncio.get_running_loop()
        make_framer = framer_factory(self._eob, self._max_size)
        attempts: list[_Attempt] = []

        async def tcp_connect() -> _Attempt | None:
            infos = await loop.getaddrinfo(self.ipAddress, self.port, type=socket.SOCK_STREAM)
            for family, _type, _proto, _name, address in infos:
                host, port = cast("tuple[str, int]", address[:2])
                attempt = _Attempt(self, self._window)
                attempts.append(attempt)
                try:
                    await connect(
                        host, port, framing=make_framer, handler=attempt,
                        family=family, timeout=None,
                    )
                except (OSError, PolysockError) as exc:
                    self._debug(f"Connection to {host} failed: {exc}")
                    continue
                return attempt
            return None

        try:
            if timeout is None:
                attempt = await tcp_connect()
            else:
                attempt = await asyncio.wait_for(tcp_connect(), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._debug(f"Connection failed. {exc or 'timeout'}")
            for a in attempts:  # the attempt cut short by the timeout
                if a.conn is not None:
                    a.conn.abort()
            return "failed"
        if attempt is None:
            return "failed"
        return await attempt.decided

    # ------------------------------------------------------------ public API

    def connect(self, timeout: float = 0) -> bool:
        """Connect; True once CONNECTED has run, False after CONNECTION_FAILED or
        SERVER_OCCUPIED. ``timeout`` bounds the TCP connect (0: the OS default)."""
        with self._lock:
            if self._connected:
                return True
            pending = self._pending
            if pending is None:
                pending = self._pending = concurrent.futures.Future()
                owner = True
                self._connecting = True
            else:
                owner = False
        if not owner:
            return pending.result()
        try:
            ok, done = self._connect(timeout)
        except BaseException:
            with self._lock:
                self._pending = None
                self._connecting = False
            pending.set_result(False)
            raise
        with self._lock:
            self._pending = None
            self._connecting = False
        pending.set_result(ok)
        self._wait(done)
        return ok

    def _connect(self, timeout: float) -> tuple[bool, threading.Event]:
        self._debug(f"Connecting to {self._target}")
        self._fire(self.CONNECTING, self._target)
        limit = float(timeout) if timeout and timeout > 0 else None
        outcome = self._rt.run(self._open(limit))
        if outcome == "connected":
            return True, self._connected_done
        if outcome == "occupied":
            self._debug("Connection refused")
            return False, self._fire(self.SERVER_OCCUPIED, self._target)
        self._debug("Connection failed.")
        return False, self._fire(self.CONNECTION_FAILED, self._target)

    def sendMessage(
        self, msg: str | bytes | bytearray, responseTime: float = 0
    ) -> str | None:
        """Send ``msg`` + end-of-block. With ``responseTime > 0``, wait up to that many
        seconds for the next message from the server and return it (None if none came)."""
        # The plain-text case inline: a sendMessage() loop is the hot path of many scripts.
        payload = msg.encode() if type(msg) is str else encode_message(msg)
        if len(payload) > self._max_size:
            check_send_size(payload, self._max_size)
        if not responseTime or responseTime <= 0:
            session = self._session
            if session is None or not session.active:
                return None
            if self.isVerbose:
                self._debug(f"sendMessage() with msg = {msg!r}")
            try:
                session.outbox.put(payload)
            except (ConnectionClosed, OSError):
                self._debug("sendMessage(): Connection closed.")
            return None
        with self._request_lock:  # send + wait as one unit: each caller gets its own reply
            session = self._session
            if session is None or not session.active:
                return None
            if self.isVerbose:
                self._debug(f"sendMessage() with msg = {msg!r}")
            reply = Reply()
            conn = session.conn

            def request() -> None:
                # On the loop thread: write and start listening for the reply in one step,
                # so that no message can be taken in between (the reply is the first message
                # completed after our bytes were written).
                try:
                    conn.write(payload)
                except (ConnectionClosed, LocalProtocolError, OSError):
                    reply.resolve(None)
                    return
                if session.ended:
                    reply.resolve(None)
                else:
                    session.reply = reply

            try:
                session.outbox.put_call(request)
            except ConnectionClosed:
                return None
            if not reply.event.wait(responseTime):
                reply.cancelled = True
                self._debug("Timeout while waiting for reply")
                return None
            value = reply.value
            return None if value is None else value.decode("utf-8", "replace")

    def disconnect(self) -> None:
        """Close the connection gracefully; DISCONNECTED has run when this returns."""
        self._debug("Client.disconnect()")
        if self._session is None:
            self._debug("Connection already closed")
            return
        done = self._rt.call(self._disconnect_on_loop, timeout=30.0)
        if done is not None:
            self._debug("Closing socket")
            self._wait(done)

    def isConnecting(self) -> bool:
        """True from CONNECTING until connected, refused or failed."""
        return self._connecting

    def isConnected(self) -> bool:
        """True from the CONNECTED decision until the connection ends."""
        return self._connected

    def _shutdown_for_tests(self) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = (
            "CONNECTED" if self._connected else "CONNECTING" if self._connecting else "idle"
        )
        return f"<tcpcom.TCPClient {self._target} {state}>"
