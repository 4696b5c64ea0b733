"""MacTCP TCP stream objects on Linux sockets.

A stream owns its socket directly instead of going through :class:`polysock.Connection`: the
MacTCP semantics need the received bytes to stay in the kernel until ``Rcv`` (so that
``SIOCINQ``, ``SIOCATMARK``, the receive window and the urgent mark mean what MacTCP's did),
``listen(1)`` with exactly one ``accept``, and blocking sends that return when the kernel took
every byte, none of which an asyncio protocol that reads eagerly can give. What the core does
provide is used as is: the shared event-loop thread watches every stream's socket (see
:mod:`mactcp._watch`), and the asr calls go through one
:class:`polysock.runtime.CallbackDispatcher` per stream, in order, on worker threads.

Blocking calls (``Rcv``, ``Send``, ``ActiveOpen``, ``Close``) block the calling thread in
``poll`` on the socket and on the stream's wake-up descriptor, which ``Abort`` (from any
thread, an asr included) signals; nothing polls on a timer except ``Close``, because Linux has
no notification for "all data acknowledged".
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import math
import os
import select
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import MACTCPconst as C
from polysock.runtime import CallbackDispatcher

from . import _netif, _sys
from ._errors import (
    TERMINATED_ERRNOS,
    driver_error,
    error,
    open_error,
    state_error,
    termination_reason,
)
from ._watch import EPOLLIN, EPOLLPRI, EPOLLRDHUP, Watcher, get_watcher

__all__ = ["TCPStatus", "TCPStream"]

#: MacTCP's "ULP timeout, abort" for opens, sends and closes (seconds)
ULP_TIMEOUT = 60.0
#: largest single read (memory bound for huge ``TCPCreate`` sizes; ``Rcv`` may return less)
MAX_READ = 16 * 1024 * 1024
_CLOSE_BACKOFF_START = 0.001
_CLOSE_BACKOFF_MAX = 0.05
_LINGER_RST = struct.pack("ii", 1, 0)
_POLLIN = _sys.POLLIN
_POLLPRI = _sys.POLLPRI
_POLLRDHUP = _sys.POLLRDHUP
_RCV_MASK = _POLLIN | _POLLPRI | _POLLRDHUP
# after a plain read, only "more data, no urgent, no FIN" (POLLIN alone) needs no bookkeeping
_AFTER_READ_MASK = _POLLIN | _POLLPRI | _POLLRDHUP | _sys.POLLERR | _sys.POLLHUP
_SEND_FLAGS = int(_sys.MSG_NOSIGNAL)
_SEND_URGENT_FLAGS = int(_sys.MSG_NOSIGNAL) | int(socket.MSG_OOB)
_NODELAY = int(socket.TCP_NODELAY)
_IPPROTO_TCP = int(socket.IPPROTO_TCP)

Asr = Callable[[int, int], object]
Phase = Literal["none", "listening", "connecting", "open", "ended"]


def _u32_addr(host: str) -> int:
    value: int = struct.unpack("!I", socket.inet_aton(host))[0]
    return value


def _check_port(port: object, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what} must be an int, not {type(port).__name__}")
    if -0x8000 <= port < 0:
        return port + 0x10000  # the original's signed 16-bit ports
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} {port} out of range 0..65535")
    return port


def _check_host(host: object) -> str:
    if isinstance(host, str):
        try:
            packed = socket.inet_pton(socket.AF_INET, host)
        except OSError as exc:
            raise driver_error(C.ipBadAddr, exc) from exc
        return socket.inet_ntoa(packed)
    if isinstance(host, bool) or not isinstance(host, int):
        raise TypeError(
            f"host must be an int or a dotted-quad str, not {type(host).__name__}"
        )
    if -0x80000000 <= host < 0:
        host += 0x100000000  # the original's signed 32-bit addresses
    if not 0 <= host <= 0xFFFFFFFF:
        raise ValueError(f"host {host} is not a 32-bit IPv4 address")
    return socket.inet_ntoa(struct.pack("!I", host))


def _check_timeout(timeout: object) -> float | None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 (0 = wait forever), not {timeout!r}")
    return None if timeout == 0 else float(timeout)


def _as_bytes(buf: object) -> bytes | memoryview:
    if isinstance(buf, str):
        return buf.encode("utf-8")
    if isinstance(buf, bytes):
        return buf
    try:
        view = memoryview(buf)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"Send() needs a bytes-like object or str, not {type(buf).__name__}"
        ) from None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _flag(value: object, what: str) -> bool:
    if isinstance(value, (int, bool)):
        return bool(value)
    raise TypeError(f"{what} must be an int flag (0 or 1), not {type(value).__name__}")


def _poll_ms(deadline: float | None) -> int | None:
    """Milliseconds to ``deadline`` for ``poll`` (rounded up: never a zero-timeout spin)."""
    if deadline is None:
        return None
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))


@dataclass(frozen=True, slots=True)
class TCPStatus:
    """A snapshot of one connection, taken when ``Status()`` was called (read-only)."""

    localHost: int
    localPort: int
    remoteHost: int
    remotePort: int
    tosFlags: int
    precedence: int
    connectionState: int
    sendWindow: int
    rcvWindow: int
    amtUnackedData: int
    amtUnreadData: int
    sendUnacked: int
    sendNext: int
    rcvNext: int
    congestionWindow: int
    srtt: int
    lastRTT: int
    sendMaxSegSize: int


TCPStatus.__name__ = TCPStatus.__qualname__ = "MacTCP connection status"
TCPStatus.__module__ = "mactcp"


class _Conn:
    """One connection of a stream and what has been observed and reported about it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.connected = False
        self.users = 0  # threads using sock outside the stream lock
        self.dead = False  # aborted or released: no new use, close once unused
        self.closed = False
        self.rst = False
        self.peer_fin = False
        self.closing_done = False  # TCPClosing condition reached (FIN and all data read)
        self.local_shut = False
        self.fin_acked = False
        self.ended: Literal["closing", "terminated"] | None = None
        self.end_reported = False
        self.urgent_reported = False
        self.data_armed = True
        self.rcv_active = False
        self.armed: int | None = None  # mask armed in the watcher; None = not armed
        # poll sets made once per connection: Rcv's wait (socket + wake-up), Rcv's probe
        # (socket only), Send's wait (socket + wake-up); each used under its own lock
        self.rpoll: Any = None
        self.rprobe: Any = None
        self.spoll: Any = None
        self.more = 0  # POLLIN when the last Rcv left plain data (no urgent, no FIN)
        self.watcher: Watcher | None = None  # the watcher it was armed with

    # Re-checks of flags another thread may have changed meanwhile (a plain attribute
    # test would be narrowed away by the type checker).
    def is_dead(self) -> bool:
        return self.dead

    def is_shut(self) -> bool:
        return self.local_shut

    def is_ended(self) -> bool:
        return self.ended is not None


class _Stream:
    """The state behind one ``TCPStream``; the watcher and the dispatcher refer to this
    object, never to the user's, so that dropping the user's last reference releases it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_size = min(size, MAX_READ)
        self.lock = threading.Lock()
        self.rcv_lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.asr: Asr | None = None
        self.dispatcher = CallbackDispatcher(name="mactcp stream", on_error=self._asr_failed)
        self.phase: Phase = "none"
        self.conn: _Conn | None = None
        self.listener: socket.socket | None = None
        self.listen_watcher: Watcher = None  # type: ignore[assignment]  # set with listener
        self.passive_done = threading.Event()
        self.passive_done.set()
        self.passive_error: error | None = None
        self.last_sockname: tuple[int, int] = (0, 0)
        self.wake_r, self.wake_w = _sys.make_wakeup()
        self.destroyed = False

    # ------------------------------------------------------------------ asr

    def _emit(self, code: int, detail: int) -> None:
        # called with self.lock held, so events are queued in the order they happened
        if self.asr is not None and not self.destroyed:
            self.dispatcher.submit(self._deliver, code, detail)

    def _deliver(self, code: int, detail: int) -> None:
        if self.destroyed:
            return
        asr = self.asr
        if asr is not None:
            asr(code, detail)

    def _asr_failed(self, exc: BaseException) -> None:
        # As the original (PyErr_Print): the traceback goes to stderr and delivery goes on.
        try:
            print(f"Exception in mactcp asr {self.asr!r}:", file=sys.stderr)
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # pragma: no cover - stderr gone (interpreter shutdown)
            pass

    def set_asr(self, asr: Asr | None) -> None:
        if asr is not None and not callable(asr):
            raise TypeError(f"asr must be callable or None, not {type(asr).__name__}")
        with self.lock:
            self.asr = asr
            if self.conn is not None:
                self._rearm(self.conn)

    # ------------------------------------------------------------------ watching

    def _desired(self, conn: _Conn) -> int | None:
        if conn.dead or conn.ended or not conn.connected or self.conn is not conn:
            return None
        if conn.peer_fin and conn.local_shut:
            return None  # both sides shut: EPOLLHUP would fire for ever; Close() finishes
        mask = 0  # 0 still watches errors (a reset)
        if not conn.peer_fin:
            mask |= EPOLLRDHUP
        if self.asr is not None:
            if conn.data_armed and not conn.rcv_active:
                mask |= EPOLLIN
            if not conn.urgent_reported and not conn.peer_fin:
                mask |= EPOLLPRI
        return mask

    def _rearm(self, conn: _Conn) -> None:
        # lock held
        mask = self._desired(conn)
        if mask == conn.armed:
            return
        if mask is None:
            if conn.watcher is not None:
                conn.watcher.forget(conn.fd)
        else:
            if conn.watcher is None:
                conn.watcher = get_watcher()
            conn.watcher.arm(conn.fd, mask, functools.partial(self._on_ready, conn))
        conn.armed = mask

    def _on_ready(self, conn: _Conn, _events: int) -> None:
        """A watched condition may hold (loop thread): report it, re-arm what is left."""
        with self.lock:
            conn.armed = None  # EPOLLONESHOT: disarmed by the event
            if conn.dead or conn.ended or self.conn is not conn:
                return
            sock = conn.sock
            try:
                ev = _sys.poll_now(sock, _RCV_MASK)
                if ev & _sys.POLLERR:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._terminate(conn, termination_reason(err))
                        return
                if (
                    ev & _sys.POLLIN
                    and conn.data_armed
                    and not conn.rcv_active
                    and self.asr is not None
                    and _sys.inq(sock) > 0
                ):
                    conn.data_armed = False
                    self._emit(C.TCPDataArrival, 0)
                if ev & _sys.POLLPRI and not conn.urgent_reported and self.asr is not None:
                    conn.urgent_reported = True
                    self._emit(C.TCPUrgent, 0)
                self._ends_seen(conn, ev)
            except OSError:  # the socket went away under us: the next call reports it
                return
            self._rearm(conn)

    def _ends_seen(self, conn: _Conn, ev: int) -> None:
        # lock held: act on the peer's FIN or a hang-up in the socket's poll flags ``ev``
        if ev & _sys.POLLRDHUP and not conn.peer_fin and not conn.ended:
            self._peer_closed(conn)
        if ev & _sys.POLLHUP and not conn.ended:
            self._check_hangup(conn)

    def _refresh(self, conn: _Conn) -> None:
        """Bring the stream's view of ``conn`` up to date with the kernel (lock held).

        The watcher reports a FIN or a reset asynchronously; calls whose outcome depends on
        whether the connection has ended (a new open, Close, Status) look for themselves.
        """
        if conn.dead or conn.ended or not conn.connected:
            return
        try:
            ev = _sys.poll_now(conn.sock, _RCV_MASK)
            if ev & _sys.POLLERR:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._terminate(conn, termination_reason(err))
                    return
            self._ends_seen(conn, ev)
        except OSError:
            return

    # ------------------------------------------------------------------ state changes

    def _peer_closed(self, conn: _Conn) -> None:
        # lock held: the peer's FIN was seen, but it may really have been a reset
        if _sys.linux_state(conn.sock) == _sys.LINUX_CLOSE and not conn.local_shut:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._terminate(conn, termination_reason(err or _errno.ECONNRESET))
            return
        conn.peer_fin = True
        self._maybe_closing(conn)

    def _check_hangup(self, conn: _Conn) -> None:
        # lock held: EPOLLHUP without an error: both directions shut, or the kernel gave up
        if conn.peer_fin and conn.local_shut:
            return
        if _sys.linux_state(conn.sock) == _sys.LINUX_CLOSE:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._terminate(conn, termination_reason(err or _errno.ECONNRESET))

    def _maybe_closing(self, conn: _Conn) -> None:
        # lock held
        if conn.peer_fin and not conn.closing_done and conn.ended != "terminated":
            try:
                unread = _sys.inq(conn.sock)
            except OSError:
                return
            if unread == 0:
                conn.closing_done = True
                self._emit(C.TCPClosing, 0)
                self._check_end(conn)

    def _check_end(self, conn: _Conn) -> None:
        # lock held: both FINs acknowledged = the connection has ended (phase ended); the
        # TCPTerminate/TCPULPClose event waits until TCPClosing was reported (data all read)
        if not conn.ended and conn.peer_fin and conn.fin_acked:
            conn.ended = "closing"
            if self.conn is conn:
                self.phase = "ended"
            self._rearm(conn)
        if conn.ended == "closing" and conn.closing_done and not conn.end_reported:
            conn.end_reported = True
            self._emit(C.TCPTerminate, C.TCPULPClose)

    def _terminate(self, conn: _Conn, reason: int) -> None:
        # lock held: the connection ended abnormally (reset, unreachable, user timeout)
        if conn.ended or conn.dead:
            return
        conn.ended = "terminated"
        if self.conn is conn:
            self.phase = "ended"
        self._emit(C.TCPTerminate, reason)
        self._rearm(conn)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # counter full: a wake-up is pending anyway
            _sys_write(self.wake_w)

    def _drain_wake(self) -> None:
        try:
            while _sys_read(self.wake_r):
                pass
        except OSError:
            pass

    def _retire(self, conn: _Conn, *, rst: bool) -> None:
        """Take ``conn`` out of service (lock held); the socket is closed as soon as no
        thread is inside a call on it (at once, normally: they are woken up)."""
        if self.conn is conn:
            self.conn = None
        if conn.dead:
            return
        conn.dead = True
        conn.rst = rst
        if conn.watcher is not None:  # never start a runtime here (interpreter exit)
            conn.watcher.forget(conn.fd)
        conn.armed = None
        if conn.users:
            self._wake()
        else:
            self._close_socket(conn)

    def _close_socket(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.rst:
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        conn.sock.close()

    def _leave(self, conn: _Conn) -> None:
        # lock held: a thread stops using conn.sock
        conn.users -= 1
        if conn.dead and conn.users == 0:
            self._close_socket(conn)

    def _final(self, conn: _Conn) -> error:
        """The error that ends an ended connection's reporting; the stream goes to none."""
        code = C.connectionClosing if conn.ended == "closing" else C.connectionTerminated
        self._retire(conn, rst=False)
        if self.phase == "ended" and self.conn is None:
            self.phase = "none"
        return driver_error(code)

    def _discard_ended(self) -> None:
        # lock held: a new open in phase ended drops the old connection and its data
        if self.conn is not None:
            self._retire(self.conn, rst=False)
        self.phase = "none"

    # ------------------------------------------------------------------ opens

    def _new_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _connection_options(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, _sys.TCP_USER_TIMEOUT, int(ULP_TIMEOUT * 1000))
        sock.setblocking(False)

    def _check_can_open(self) -> None:
        # lock held
        if self.phase == "listening":
            raise state_error()
        if self.phase == "open" and self.conn is not None:
            self._refresh(self.conn)  # it may have ended a moment ago
        if self.phase in ("connecting", "open"):
            raise driver_error(C.connectionExists)
        if self.phase == "ended":
            self._discard_ended()

    def passive_open(self, port: object) -> None:
        lport = _check_port(port, "port")
        with self.lock:
            self._check_can_open()
            sock = self._new_socket()
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("", lport))
                sock.listen(1)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise open_error(exc) from exc
            self.listener = sock
            self.listen_watcher = watcher = get_watcher()
            self.phase = "listening"
            self.passive_error = None
            self.passive_done.clear()
            self._drain_wake()
            watcher.arm(sock.fileno(), EPOLLIN, functools.partial(self._on_accept, sock))

    def _on_accept(self, lsock: socket.socket, _events: int) -> None:
        """The listening socket is readable (loop thread): adopt exactly one connection."""
        with self.lock:
            if self.listener is not lsock:
                return
            try:
                csock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                self.listen_watcher.arm(
                    lsock.fileno(), EPOLLIN, functools.partial(self._on_accept, lsock)
                )
                return
            except OSError as exc:
                self._stop_listening()
                self._passive_finished(driver_error(C.openFailed, exc))
                return
            self._stop_listening()  # further clients are refused by the OS from now on
            try:
                self._connection_options(csock)
                conn = self._adopt(csock)
            except OSError as exc:
                csock.close()
                self._passive_finished(driver_error(C.openFailed, exc))
                return
            self._passive_finished(None)
            self._rearm(conn)

    def _stop_listening(self) -> None:
        lsock = self.listener
        if lsock is not None:
            self.listener = None
            self.listen_watcher.forget(lsock.fileno())
            lsock.close()

    def _passive_finished(self, exc: error | None) -> None:
        # lock held: PassiveOpenDone comes before any event of the new connection
        self.passive_error = exc
        if exc is not None:
            self.phase = "none"
        self._emit(C.PassiveOpenDone, 0)
        self.passive_done.set()

    def _adopt(self, sock: socket.socket) -> _Conn:
        conn = _Conn(sock)
        conn.connected = True
        self.conn = conn
        self.phase = "open"
        host, port = sock.getsockname()[:2]
        self.last_sockname = (_u32_addr(host), port)
        return conn

    def wait(self) -> None:
        # Event.wait() blocks without polling, and Ctrl-C interrupts it (KeyboardInterrupt
        # propagates; the open stays pending).
        self.passive_done.wait()
        with self.lock:
            exc, self.passive_error = self.passive_error, None
        if exc is not None:
            raise exc

    def isdone(self) -> int:
        return 0 if self.phase == "listening" else 1

    def active_open(self, lport: object, host: object, rport: object) -> None:
        local = _check_port(lport, "lport")
        remote = _check_port(rport, "rport")
        address = _check_host(host)
        with self.lock:
            self._check_can_open()
            sock = self._new_socket()
            try:
                if local:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("", local))
                self._connection_options(sock)
            except OSError as exc:
                sock.close()
                raise open_error(exc) from exc
            conn = _Conn(sock)
            conn.users = 1
            self.conn = conn
            self.phase = "connecting"
            self._drain_wake()
        try:
            self._connect(conn, address, remote)
        except BaseException:
            with self.lock:
                if self.conn is conn:
                    self.phase = "none"
                    self._retire(conn, rst=False)
                self._leave(conn)
            raise
        with self.lock:
            self._leave(conn)
            if conn.dead:
                raise driver_error(C.connectionTerminated)
            conn.connected = True
            self.phase = "open"
            host_s, port = conn.sock.getsockname()[:2]
            self.last_sockname = (_u32_addr(host_s), port)
            self._rearm(conn)

    def _connect(self, conn: _Conn, address: str, port: int) -> None:
        sock = conn.sock
        err = sock.connect_ex((address, port))
        if err in (_errno.EINPROGRESS, _errno.EALREADY, _errno.EWOULDBLOCK):
            deadline = time.monotonic() + ULP_TIMEOUT
            poller = select.poll()
            poller.register(conn.fd, select.POLLOUT)
            poller.register(self.wake_r, select.POLLIN)
            while True:
                if conn.dead:
                    raise driver_error(C.connectionTerminated)
                ms = _poll_ms(deadline)
                if ms == 0:
                    raise driver_error(C.commandTimeout)
                ready = dict(poller.poll(ms))
                if ready.get(conn.fd):
                    break
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise open_error(OSError(err, os.strerror(err)))

    # ------------------------------------------------------------------ Rcv

    def rcv(self, timeout: object) -> tuple[bytes, int, int]:
        if (timeout.__class__ is int or timeout.__class__ is float) and timeout > 0:
            limit: float | None = timeout
        else:
            limit = _check_timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        rcv_lock = self.rcv_lock
        if not rcv_lock.acquire(False) and not rcv_lock.acquire(
            timeout=-1 if limit is None else limit
        ):
            raise driver_error(C.commandTimeout)  # another thread's Rcv held the stream
        try:
            with self.lock:
                conn = self.conn
                if conn is None or conn.rpoll is None or self.phase not in ("open", "ended"):
                    conn = self._rcv_conn()
                conn.users += 1
                conn.rcv_active = True
            result: tuple[bytes, int, int, int] | None = None
            try:
                # Fast path for bulk transfers: when the last Rcv left data and no urgent
                # data was pending, this read starts on old data, so it cannot run past an
                # urgent mark that arrived since: read at once, without polling first.
                ev = conn.more
                conn.more = 0
                while result is None:
                    if not ev:
                        ev = self._wait_readable(conn, deadline)
                    result = self._read(conn, ev)
                    ev = 0
                if result[3] & _AFTER_READ_MASK == _POLLIN:
                    conn.more = _POLLIN
                return result[0], result[1], result[2]
            finally:
                with self.lock:
                    conn.rcv_active = False
                    conn.users -= 1
                    if conn.dead:
                        if not conn.users:
                            self._close_socket(conn)
                    elif result is not None and not result[1] and not conn.peer_fin and (
                        result[3] & _AFTER_READ_MASK == _POLLIN and conn.armed is not None
                        and self.asr is None
                    ):
                        pass  # plain data with more to come and nothing to report: done
                    else:
                        if result is not None:
                            self._after_read(conn, result)
                        self._rearm(conn)
        finally:
            rcv_lock.release()

    def _rcv_conn(self) -> _Conn:
        # lock held
        if self.phase == "listening":
            raise state_error()
        if self.phase == "connecting":
            raise state_error(6)
        if self.phase == "none" or self.conn is None:
            raise driver_error(C.connectionDoesntExist)
        conn = self.conn
        if conn.rpoll is None:
            conn.rpoll = select.poll()
            conn.rpoll.register(conn.fd, _RCV_MASK)
            conn.rpoll.register(self.wake_r, select.POLLIN)
            conn.rprobe = select.poll()
            conn.rprobe.register(conn.fd, _RCV_MASK)
        return conn

    def _wait_readable(self, conn: _Conn, deadline: float | None) -> int:
        if conn.ended:
            return _sys.POLLIN  # no waiting: what is left is in the kernel already
        poller = conn.rpoll
        assert poller is not None
        fd = conn.fd
        while True:
            if conn.dead:
                raise driver_error(C.connectionTerminated)
            ms = _poll_ms(deadline)
            woken = False
            for rfd, ev in poller.poll(ms):
                if rfd == fd:
                    return int(ev)
                woken = True
            if woken:
                with self.lock:
                    if conn.is_dead():  # (changed by another thread)
                        raise driver_error(C.connectionTerminated)
                    if conn.is_ended():
                        return _sys.POLLIN
                    self._drain_wake()  # left over from an earlier connection
            elif ms is not None and _poll_ms(deadline) == 0:
                raise driver_error(C.commandTimeout)

    @staticmethod
    def _probe(conn: _Conn) -> int:
        assert conn.rprobe is not None
        for _fd, ev in conn.rprobe.poll(0):
            return int(ev)
        return 0

    def _read(self, conn: _Conn, ev: int) -> tuple[bytes, int, int, int] | None:
        """One read of at most ``size`` bytes within one side of the urgent mark:
        ``(data, urgent, mark, poll flags after the read)``; None to wait again."""
        sock = conn.sock
        try:
            if ev & _POLLPRI and _sys.atmark(sock):
                data = sock.recv(1)  # the urgent byte itself ends the region
                return data, 1, 1, self._probe(conn)
            # Linux stops a read just before the urgent byte, so the data never spans the
            # end of the urgent region; the byte is then added by a second read.
            data = sock.recv(self.read_size)
            if data:
                ready = conn.rprobe.poll(0)
                post = ready[0][1] if ready else 0
                if not post & _POLLPRI:
                    return data, 1 if ev & _POLLPRI else 0, 0, post
                # still before the mark: this data lies in the urgent region
                if len(data) < self.size and _sys.atmark(sock):
                    data += sock.recv(1)
                    return data, 1, 1, self._probe(conn)
                return data, 1, 0, post
        except (BlockingIOError, InterruptedError):
            return None  # readiness without data (a reset already consumed, say): look again
        except OSError as exc:
            with self.lock:
                if conn.dead:
                    raise driver_error(C.connectionTerminated, exc) from exc
                if exc.errno in TERMINATED_ERRNOS or conn.ended:
                    self._terminate(conn, termination_reason(exc.errno))
                    raise self._final(conn) from exc
                raise driver_error(C.connectionTerminated, exc) from exc
        with self.lock:  # end of stream: the peer's FIN, or what is left of a reset
            self._at_end(conn)

    def _after_read(self, conn: _Conn, result: tuple[bytes, int, int, int]) -> None:
        # lock held: the events and re-arming a successful Rcv implies
        _data, urgent, mark, post = result
        if urgent and not conn.urgent_reported:
            conn.urgent_reported = True
            self._emit(C.TCPUrgent, 0)
        if mark:
            conn.urgent_reported = False  # a later urgent send is a new region
        try:
            if not conn.ended:
                if not post & _POLLIN or (post & _POLLRDHUP and _sys.inq(conn.sock) == 0):
                    conn.data_armed = True  # this Rcv left no unread data
                if post & _POLLRDHUP and not conn.peer_fin:
                    self._peer_closed(conn)
            if conn.peer_fin:
                self._maybe_closing(conn)
        except OSError:
            pass

    def _at_end(self, conn: _Conn) -> NoReturn:
        # lock held: recv() returned b"": the peer's FIN, or what is left of a reset
        if conn.dead:
            raise driver_error(C.connectionTerminated)
        if not conn.ended:
            try:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                err = _errno.ECONNRESET
            if err:
                self._terminate(conn, termination_reason(err))
            elif not conn.peer_fin:
                self._peer_closed(conn)
        if conn.peer_fin and conn.ended != "terminated":
            self._maybe_closing(conn)
        if conn.ended:
            raise self._final(conn)
        raise driver_error(C.connectionClosing)

    # ------------------------------------------------------------------ Send

    def _open_conn(self) -> _Conn:
        # lock held: the connection for Send/Close (state errors as the original's)
        if self.phase == "listening":
            raise state_error()
        if self.phase == "connecting":
            raise state_error(6)
        if self.phase != "open" or self.conn is None:
            raise driver_error(C.connectionDoesntExist)
        return self.conn

    def _state_now(self, conn: _Conn) -> int:
        try:
            return _sys.MACTCP_STATE.get(_sys.linux_state(conn.sock), 0)
        except OSError:
            return 0

    def send(self, buf: object, push: object, urgent: object) -> None:
        data = buf if buf.__class__ is bytes else _as_bytes(buf)
        if push.__class__ is not int:
            push = _flag(push, "push")
        if urgent.__class__ is not int:
            urgent = _flag(urgent, "urgent")
        with self.send_lock:  # one Send at a time: each one's bytes stay contiguous
            with self.lock:
                conn = self.conn
                if self.phase != "open" or conn is None or conn.local_shut or conn.ended:
                    raise self._send_refused(conn)
                conn.users += 1
            try:
                if push:
                    self._send_all(conn, data, True, _SEND_URGENT_FLAGS if urgent else _SEND_FLAGS)
                elif data:  # (the common case inline: one kernel call when the buffer has room)
                    flags = _SEND_URGENT_FLAGS if urgent else _SEND_FLAGS
                    try:
                        sent = conn.sock.send(data, flags)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError as exc:
                        raise self._send_failed(conn, exc) from exc
                    if sent < len(data):
                        self._send_rest(conn, memoryview(data)[sent:], flags)
            finally:
                with self.lock:
                    conn.users -= 1
                    if conn.dead and not conn.users:
                        self._close_socket(conn)

    def _send_refused(self, conn: _Conn | None) -> error:
        # lock held: why Send is not possible now (the original's errors)
        if self.phase == "listening":
            return state_error()
        if self.phase == "connecting":
            return state_error(6)
        if self.phase != "open" or conn is None or conn.ended:
            return driver_error(C.connectionDoesntExist)
        # MacTCP allows sending in established (8) and close-wait (14) only
        return state_error(self._state_now(conn))

    def _send_all(self, conn: _Conn, data: bytes | memoryview, push: bool, flags: int) -> None:
        if not data:
            return
        sock = conn.sock
        if push:
            sock.setsockopt(_IPPROTO_TCP, _NODELAY, 1)
        try:
            try:
                sent = sock.send(data, flags)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise self._send_failed(conn, exc) from exc
            if sent < len(data):
                self._send_rest(conn, memoryview(data)[sent:], flags)
        finally:
            if push and not conn.closed:
                with contextlib.suppress(OSError):
                    sock.setsockopt(_IPPROTO_TCP, _NODELAY, 0)

    def _send_rest(self, conn: _Conn, view: memoryview, flags: int) -> None:
        # The kernel took part of the buffer: wait for room (no timer; the kernel's 60 s
        # user timeout ends a connection whose data is never acknowledged).
        sock = conn.sock
        while view:
            try:
                sent = sock.send(view, flags)
            except (BlockingIOError, InterruptedError):
                self._wait_writable(conn)
                continue
            except OSError as exc:
                raise self._send_failed(conn, exc) from exc
            view = view[sent:]

    def _send_failed(self, conn: _Conn, exc: OSError) -> error:
        with self.lock:
            if not conn.dead:
                self._terminate(conn, termination_reason(exc.errno))
        return driver_error(C.connectionTerminated, exc)

    def _wait_writable(self, conn: _Conn) -> None:
        if conn.spoll is None:
            conn.spoll = select.poll()
            conn.spoll.register(conn.fd, select.POLLOUT)
            conn.spoll.register(self.wake_r, select.POLLIN)
        fd = conn.fd
        while True:
            if conn.dead or conn.ended:
                raise driver_error(C.connectionTerminated)
            woken = False
            for rfd, _ev in conn.spoll.poll():
                if rfd == fd:
                    return
                woken = True
            if woken:
                with self.lock:
                    if not (conn.dead or conn.ended):
                        self._drain_wake()

    # ------------------------------------------------------------------ Close / Abort

    def close(self) -> None:
        with self.lock:
            conn = self._open_conn()
            if conn.local_shut:
                return None
            conn.users += 1
        try:
            with self.send_lock:  # the FIN goes after every byte of a Send in progress
                with self.lock:
                    if conn.is_dead():  # (changed by another thread)
                        raise driver_error(C.connectionTerminated)
                    if conn.is_shut():
                        return None
                    conn.local_shut = True
                    self._rearm(conn)
                try:
                    conn.sock.shutdown(socket.SHUT_WR)
                except OSError as exc:
                    with self.lock:
                        self._terminate(conn, termination_reason(exc.errno))
                    raise driver_error(C.connectionTerminated, exc) from exc
            self._wait_acked(conn)
        finally:
            with self.lock:
                self._leave(conn)
        return None

    def _wait_acked(self, conn: _Conn) -> None:
        """Wait until the peer acknowledged every byte and the FIN (SIOCOUTQ == 0).

        Linux sends no notification for this, so the wait checks on a timer with back-off
        (1 ms doubling to 50 ms); ``Abort`` from another thread ends it at once.
        """
        deadline = time.monotonic() + ULP_TIMEOUT
        delay = _CLOSE_BACKOFF_START
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        while True:
            with self.lock:
                if conn.dead:
                    raise driver_error(C.connectionTerminated)
                if conn.ended == "terminated":
                    raise driver_error(C.connectionTerminated)
                sock = conn.sock
                try:
                    unacked = _sys.outq(sock)
                    state = _sys.linux_state(sock)
                except OSError as exc:
                    raise driver_error(C.connectionTerminated, exc) from exc
                if unacked == 0:
                    conn.fin_acked = True
                    self._refresh(conn)  # the peer's FIN may be in already
                    self._check_end(conn)
                    return
                if state == _sys.LINUX_CLOSE:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    self._terminate(conn, termination_reason(err or _errno.ECONNRESET))
                    raise driver_error(C.connectionTerminated)
                if time.monotonic() >= deadline:
                    self._terminate(conn, C.TCPULPTimeoutTerminate)
                    self._retire(conn, rst=True)
                    self.phase = "none"
                    raise driver_error(C.connectionTerminated)
            if poller.poll(math.ceil(delay * 1000)):
                with self.lock:
                    if not (conn.dead or conn.ended):
                        self._drain_wake()
            delay = min(delay * 2, _CLOSE_BACKOFF_MAX)

    def abort(self) -> None:
        with self.lock:
            if self.phase == "listening":
                # polysock addition: cancels the PassiveOpen; wait() reports it, no asr event
                self._stop_listening()
                self.phase = "none"
                self.passive_error = driver_error(C.connectionTerminated)
                self.passive_done.set()
                return
            conn = self.conn
            if self.phase not in ("connecting", "open") or conn is None:
                raise driver_error(C.connectionDoesntExist)
            was_open = self.phase == "open"
            self.phase = "none"
            self._retire(conn, rst=True)
            if was_open:
                self._emit(C.TCPTerminate, C.TCPULPAbort)

    def release(self, *, report: bool) -> None:
        """End whatever the stream holds (``__exit__``, deletion): abort an open
        connection, cancel a pending PassiveOpen, drop an ended connection's leftovers."""
        with self.lock:
            if self.phase == "listening":
                self._stop_listening()
                self.phase = "none"
                self.passive_error = driver_error(C.connectionTerminated)
                self.passive_done.set()
            conn = self.conn
            if conn is not None:
                was_open = self.phase == "open"
                self.phase = "none"
                self._retire(conn, rst=True)
                if was_open and report:
                    self._emit(C.TCPTerminate, C.TCPULPAbort)

    def destroy(self) -> None:
        self.destroyed = True  # queued asr events are dropped
        self.release(report=False)
        with self.lock:
            for fd in {self.wake_r, self.wake_w}:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # ------------------------------------------------------------------ queries

    def get_sock_name(self) -> tuple[int, int]:
        with self.lock:
            if self.phase == "listening" and self.listener is not None:
                return _netif.ip_addr(), self.listener.getsockname()[1]
            return self.last_sockname

    def status(self) -> TCPStatus:
        with self.lock:
            if self.phase == "listening":
                raise state_error()
            if self.phase == "open" and self.conn is not None:
                self._refresh(self.conn)
            conn = self.conn
            if self.phase not in ("connecting", "open") or conn is None:
                raise driver_error(C.connectionDoesntExist)
            try:
                return _snapshot(conn.sock)
            except OSError as exc:
                raise driver_error(C.connectionTerminated, exc) from exc


def _snapshot(sock: socket.socket) -> TCPStatus:
    info = _sys.tcp_info(sock)
    try:
        lhost, lport = sock.getsockname()[:2]
    except OSError:
        lhost, lport = "0.0.0.0", 0
    try:
        rhost, rport = sock.getpeername()[:2]
    except OSError:
        rhost, rport = "0.0.0.0", 0
    tos = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) & 0xFF
    queued = _sys.outq(sock)
    unsent = _sys.outq_unsent(sock)
    unacked = max(0, queued - unsent)
    if info.snd_wnd is not None:
        send_window = info.snd_wnd
    else:
        sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        send_window = unacked + max(0, sndbuf - queued)
    rcv_window = info.rcv_wnd if info.rcv_wnd is not None else info.rcv_space
    acked = info.bytes_acked or 0
    srtt = round(info.rtt_us / 1000)
    return TCPStatus(
        localHost=_u32_addr(lhost),
        localPort=lport,
        remoteHost=_u32_addr(rhost),
        remotePort=rport,
        tosFlags=tos,
        precedence=tos >> 5,
        connectionState=_sys.MACTCP_STATE.get(info.state, 0),
        sendWindow=send_window,
        rcvWindow=rcv_window,
        amtUnackedData=unacked,
        amtUnreadData=_sys.inq(sock),
        sendUnacked=acked % 2**32,
        sendNext=(acked + unacked) % 2**32,
        rcvNext=(info.bytes_received or 0) % 2**32,
        congestionWindow=info.snd_cwnd * info.snd_mss,
        srtt=srtt,
        lastRTT=srtt,
        sendMaxSegSize=info.snd_mss,
    )


def _sys_write(fd: int) -> None:
    os.write(fd, (1).to_bytes(8, sys.byteorder))


def _sys_read(fd: int) -> bytes:
    try:
        return os.read(fd, 8)
    except BlockingIOError:
        return b""


class TCPStream:
    """A MacTCP TCP stream: one connection endpoint, opened passively or actively.

    Create with :func:`mactcp.TCPCreate`. Only ``asr`` can be set; any other attribute
    assignment raises ``AttributeError``.
    """

    __slots__ = ("_s",)

    def __init__(self, size: int) -> None:
        self._s = _Stream(size)

    def __del__(self) -> None:
        s = getattr(self, "_s", None)
        if s is not None:
            with contextlib.suppress(Exception):  # interpreter shutdown: modules gone
                s.destroy()

    def __repr__(self) -> str:
        s = self._s
        return f"<MacTCP TCP stream size={s.size} phase={s.phase}>"

    def __enter__(self) -> TCPStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._s.release(report=True)

    @property
    def asr(self) -> Asr | None:
        """The asynchronous service routine, called as ``asr(eventcode, detail)``."""
        return self._s.asr

    @asr.setter
    def asr(self, value: Asr | None) -> None:
        self._s.set_asr(value)

    @asr.deleter
    def asr(self) -> None:
        self._s.set_asr(None)

    def PassiveOpen(self, port: int) -> None:
        """Listen on ``port`` (0: any free port) for one connection; returns at once."""
        self._s.passive_open(port)

    def wait(self) -> None:
        """Block until the pending PassiveOpen completes; raise its error once if it failed."""
        self._s.wait()

    def isdone(self) -> int:
        """0 while a PassiveOpen is pending, else 1."""
        return self._s.isdone()

    def GetSockName(self) -> tuple[int, int]:
        """``(host, port)`` of the local side as unsigned ints."""
        return self._s.get_sock_name()

    def ActiveOpen(self, lport: int, host: int | str, rport: int) -> None:
        """Connect to ``host``:``rport`` from local port ``lport``; blocks until established."""
        self._s.active_open(lport, host, rport)

    def Send(self, buf: Any, push: int = 0, urgent: int = 0) -> None:
        """Send all of ``buf``; returns when the kernel has accepted every byte."""
        self._s.send(buf, push, urgent)

    def Rcv(self, timeout: float) -> tuple[bytes, int, int]:
        """``(data, urgent, mark)``: 1..size bytes, waiting up to ``timeout`` s (0: forever)."""
        return self._s.rcv(timeout)

    def Close(self) -> None:
        """Send FIN after all data; returns when the peer acknowledged everything."""
        self._s.close()

    def Abort(self) -> None:
        """Reset the connection (or cancel a pending PassiveOpen)."""
        self._s.abort()

    def Status(self) -> TCPStatus:
        """A snapshot of the connection's TCP state."""
        return self._s.status()


TCPStream.__name__ = TCPStream.__qualname__ = "MacTCP TCP stream"
TCPStream.__module__ = "mactcp"
