"""TCPServer: one served client at a time, everything reported through ``stateChanged``.

The listening socket is bound in the constructor (so ``PORT_IN_USE`` is decided before it
returns) and then handed to the core's :func:`polysock.serve`; every accepted connection gets
a :class:`_ConnectionHandler` on the loop thread. All server state that decides who is served
(``_session``, ``_closed``) is only changed on the loop thread, so accept, peer close,
``disconnect()``, the idle timeout and ``terminate()`` never race each other.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from polysock import Connection, FrameTooLarge, Handler, ProtocolError, Server, serve
from polysock.errors import ConnectionClosed, HandshakeError
from polysock.framing import DEFAULT_MAX_FRAME_SIZE

from . import _lifetime
from ._common import (
    CLOSE_TIMEOUT,
    Endpoint,
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

__all__ = ["TCPServer"]

BACKLOG = 10
#: A refused client is closed at once; this bounds the wait for its FIN.
REFUSE_CLOSE_TIMEOUT = 2.0


class _ConnectionHandler(Handler):
    """Loop-thread events of one accepted connection, forwarded to its server."""

    __slots__ = ("refused", "server", "session")

    def __init__(self, server: TCPServer) -> None:
        self.server = server
        self.session: Session | None = None
        self.refused = False

    def connection_made(self, conn: Connection) -> None:
        self.server._accepted(self, conn)

    def messages_received(self, conn: Connection, messages: list[bytes]) -> None:
        session = self.session
        if session is not None and session.active:
            self.server._queue_messages(session, messages)

    def eof_received(self, conn: Connection) -> bool:
        if self.session is not None:
            self.server._ended(self.session)
        return False

    def protocol_error(self, conn: Connection, exc: ProtocolError | HandshakeError) -> None:
        if self.session is not None:
            if isinstance(exc, FrameTooLarge):
                self.server._oversize()
            self.server._ended(self.session)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if self.session is not None:
            self.server._ended(self.session)

    def write_drained(self, conn: Connection) -> None:
        if self.session is not None:
            self.session.outbox.resume()


class TCPServer(Endpoint):
    """A TCP server for one client at a time; further clients are refused (accept + close).

    ``TCPServer(port, stateChanged, isVerbose=False, *, endOfBlock="\\0", host="",
    maxMessageSize=16 MiB)``. Bind failures do not raise: they are reported as
    ``PORT_IN_USE``.
    """

    _kind = "TCPServer"

    PORT_IN_USE = "PORT_IN_USE"
    CONNECTED = "CONNECTED"
    LISTENING = "LISTENING"
    TERMINATED = "TERMINATED"
    MESSAGE = "MESSAGE"

    def __init__(
        self,
        port: int,
        stateChanged: StateCallback | None,
        isVerbose: bool = False,
        *args: Any,
        endOfBlock: str | bytes = "\0",
        host: str = "",
        maxMessageSize: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        check_end_of_block((isVerbose, *args))
        if args:
            raise TypeError(
                f"TCPServer() takes at most 3 positional arguments ({3 + len(args)} given)"
            )
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        super().__init__(stateChanged, isVerbose)
        self._eob = end_of_block_byte(endOfBlock)
        self._max_size = check_max_message_size(maxMessageSize)
        self._port = port
        self._session: Session | None = None  # loop thread only
        self._closed = False  # loop thread only: terminate() reached the loop
        self._terminated = False
        self._connected = False
        self._dead = False  # PORT_IN_USE
        self._timeout = 0.0
        self._server: Server | None = None
        self._stopped = threading.Event()  # terminated or dead: loopForever() returns
        self._debug("TCPServer thread started")
        try:
            sock = self._bind(host, port)
        except OSError as exc:
            self._dead = True
            self._stopped.set()
            print(f"Fatal error while creating TCPServer: Bind failed. {exc.errno} {exc.strerror}")
            self._fire(self.PORT_IN_USE, str(port))
            return
        self._port = sock.getsockname()[1]
        self._debug("Socket created")
        make_framer = framer_factory(self._eob, self._max_size)
        try:
            self._server = self._rt.run(
                serve(
                    host=None,
                    sock=sock,
                    backlog=BACKLOG,
                    framing=make_framer,
                    handler_factory=lambda: _ConnectionHandler(self),
                ),
                30.0,
            )
        except BaseException:
            sock.close()
            raise
        _lifetime.hold()  # released by terminate(): a running server keeps the script alive
        self._fire(self.LISTENING, str(self._port))
        self._debug("Calling blocking accept()...")

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------ loop thread

    def _accepted(self, handler: _ConnectionHandler, conn: Connection) -> None:
        if self._closed:
            conn.abort()
            handler.refused = True
            return
        if self._session is not None:
            # A tcpcom server refuses by accepting and closing without a byte; the client
            # tells "occupied" from "accepted" by that silence followed by FIN.
            handler.refused = True
            conn.close(REFUSE_CLOSE_TIMEOUT)
            self._debug("Returning form blocking accept(). Client refused")
            return
        session = Session(conn)
        handler.session = session
        self._session = session
        self._connected = True
        peer = conn.peername
        self._debug(f"ServerHandler started, connected to {peer}")
        self._fire(self.CONNECTED, str(peer[0]) if peer else "")
        if self._timeout > 0:
            self._arm_idle_timer(session)

    def _ended(self, session: Session) -> None:
        """The peer closed or reset the served connection, or broke the framing."""
        if session.ended:
            return
        session.ended = True
        self._drop(session)
        if session.reply is not None:
            session.reply.resolve(None)
        session.outbox.close()
        if not self._closed:
            self._debug("Client disconnected")
            self._fire(self.LISTENING, str(self._port))

    def _drop(self, session: Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        if self._session is session:
            self._session = None
            self._connected = False

    def _oversize(self) -> None:
        text = f"message exceeds maxMessageSize ({self._max_size} bytes); closing connection"
        log.warning("TCPServer on port %d: %s", self._port, text)
        self._debug(text)

    def _close_session(self, session: Session) -> None:
        """Our side ends the served connection: drop what was not delivered, close
        gracefully (everything passed to sendMessage goes out first, then FIN)."""
        session.active = False
        session.ended = True
        self._drop(session)
        if session.reply is not None:
            session.reply.resolve(None)
        session.outbox.close()  # what sendMessage() accepted goes out before the FIN
        session.conn.close(CLOSE_TIMEOUT)

    def _disconnect_on_loop(self) -> Any:
        session = self._session
        if session is None or self._closed:
            return None
        self._close_session(session)
        return self._fire(self.LISTENING, str(self._port))

    async def _terminate_on_loop(self) -> Any:
        if self._closed:
            return None
        self._closed = True
        session = self._session
        if session is not None:
            self._close_session(session)
        server = self._server
        if server is not None:
            server.close()
            # uvloop closes handles on its next pass: after these the port is free.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        self._debug("TCPServer thread terminated")
        return self._fire(self.TERMINATED, "")

    def _arm_idle_timer(self, session: Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        timeout = self._timeout
        if timeout <= 0 or session.ended:
            return
        idle = time.monotonic() - session.framer.last_data
        loop = session.conn.loop
        session.timer = loop.call_later(max(timeout - idle, 0.0), self._idle_check, session)

    def _idle_check(self, session: Session) -> None:
        session.timer = None
        if session.ended or self._session is not session:
            return
        timeout = self._timeout
        if timeout <= 0:
            return
        if time.monotonic() - session.framer.last_data >= timeout:
            self._debug("Timeout: disconnecting idle client")
            self._disconnect_on_loop()
        else:
            self._arm_idle_timer(session)

    # ------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when 0 was given)."""
        return self._port

    def sendMessage(self, msg: str | bytes | bytearray) -> None:
        """Send ``msg`` + end-of-block to the served client (nothing if there is none)."""
        payload = msg.encode() if type(msg) is str else encode_message(msg)
        if len(payload) > self._max_size:
            check_send_size(payload, self._max_size)
        session = self._session
        if session is None or not session.active:
            self._debug("Not connected")
            return
        if self.isVerbose:
            self._debug(f"sendMessage() with msg: {msg!r}")
        try:
            session.outbox.put(payload)
        except (ConnectionClosed, OSError) as exc:
            # The connection is going away; its loss is reported as LISTENING.
            self._debug(f"sendMessage() failed: {exc}")

    def disconnect(self) -> None:
        """Close the served client's connection and go back to LISTENING."""
        self._debug("Calling Server.disconnect()")
        if self._server is None or self._terminated:
            return
        done = self._rt.call(self._disconnect_on_loop, timeout=30.0)
        if done is not None:
            self._debug("Shutdown socket now")
            self._wait(done)

    def terminate(self) -> None:
        """Close the served client and the listening socket for good; fires TERMINATED."""
        self._debug("Calling terminate()")
        if self._terminated:
            return
        self._terminated = True
        if self._server is None:  # PORT_IN_USE: nothing runs, nothing to report
            return
        try:
            self._rt.run(self._terminate_on_loop(), 30.0)
        finally:
            self._stopped.set()
            _lifetime.release()

    def isConnected(self) -> bool:
        """True while a client is served."""
        return self._connected

    def isTerminated(self) -> bool:
        """True once terminate() was called."""
        return self._terminated

    def setTimeout(self, timeout: float) -> None:
        """Disconnect a served client that sends no byte for ``timeout`` s (<= 0: never)."""
        self._timeout = float(timeout)
        if self._server is None or self._terminated:
            return

        def rearm() -> None:
            if self._session is not None:
                self._arm_idle_timer(self._session)

        self._rt.call(rearm, timeout=30.0)

    def loopForever(self) -> None:
        """Block until Ctrl-C (then terminate) or until the server is terminated otherwise."""
        try:
            self._stopped.wait()
        except KeyboardInterrupt:
            self.terminate()

    @staticmethod
    def getIPAddress() -> str:
        """The IPv4 address of the interface that carries the default route."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: no packet is sent
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
        finally:
            probe.close()

    def _shutdown_for_tests(self) -> None:
        self.terminate()

    def __repr__(self) -> str:
        state = (
            "PORT_IN_USE" if self._dead
            else "TERMINATED" if self._terminated
            else "CONNECTED" if self._connected
            else "LISTENING"
        )
        return f"<tcpcom.TCPServer port={self._port} {state}>"
