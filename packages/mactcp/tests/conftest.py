"""Shared helpers of the mactcp tests: recording asrs, raw socket peers, stream pairs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import mactcp
import pytest

HOST = "127.0.0.1"
LOOPBACK = 2130706433


class Recorder:
    """An asr that records ``(eventcode, detail)`` calls and lets a test wait for them."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[tuple[int, int]] = []
        self.threads: list[threading.Thread] = []
        self.delay = delay
        self._cond = threading.Condition()

    def __call__(self, code: int, detail: int) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self._cond:
            self.events.append((code, detail))
            self.threads.append(threading.current_thread())
            self._cond.notify_all()

    def wait_for(self, event: tuple[int, int], timeout: float = 10.0, count: int = 1) -> None:
        """Wait until ``event`` has been recorded ``count`` times (fails after ``timeout``)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self.events.count(event) >= count, timeout)
        assert ok, f"asr never got {event} x{count}; events: {self.events}"

    def wait_len(self, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.events) >= n, timeout)
        assert ok, f"asr got {len(self.events)} events, expected {n}: {self.events}"

    def snapshot(self) -> list[tuple[int, int]]:
        with self._cond:
            return list(self.events)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Re-check ``predicate`` (for kernel state that has no notification) until true."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def unread(stream: Any, n: int, timeout: float = 10.0) -> None:
    """Wait until the stream's kernel receive queue holds at least ``n`` bytes."""
    wait_until(lambda: stream.Status().amtUnreadData >= n, timeout, f"{n} unread bytes")


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until EOF."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Env:
    """Creates streams and raw sockets and releases all of them at teardown."""

    def __init__(self) -> None:
        self.streams: list[Any] = []
        self.socks: list[socket.socket] = []

    def stream(self, size: int = 4096, asr: Any = None) -> Any:
        s = mactcp.TCPCreate(size)
        if asr is not None:
            s.asr = asr
        self.streams.append(s)
        return s

    def sock(self, sock: socket.socket) -> socket.socket:
        self.socks.append(sock)
        return sock

    def listener(self, backlog: int = 5) -> socket.socket:
        lsock = self.sock(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((HOST, 0))
        lsock.listen(backlog)
        return lsock

    def connect(self, port: int) -> socket.socket:
        return self.sock(socket.create_connection((HOST, port), timeout=10))

    def passive_pair(
        self, size: int = 4096, asr: Any = None
    ) -> tuple[Any, socket.socket]:
        """A stream that accepted a raw peer (PassiveOpen + wait)."""
        s = self.stream(size, asr)
        s.PassiveOpen(0)
        peer = self.connect(s.GetSockName()[1])
        s.wait()
        return s, peer

    def active_pair(self, size: int = 4096, asr: Any = None) -> tuple[Any, socket.socket]:
        """A stream connected (ActiveOpen) to a raw listening peer."""
        lsock = self.listener()
        s = self.stream(size, asr)
        s.ActiveOpen(0, HOST, lsock.getsockname()[1])
        peer, _ = lsock.accept()
        self.sock(peer)
        peer.settimeout(10)
        return s, peer

    def stream_pair(
        self, server_asr: Any = None, client_asr: Any = None, size: int = 4096
    ) -> tuple[Any, Any]:
        """(server, client): two connected streams."""
        server = self.stream(size, server_asr)
        server.PassiveOpen(0)
        client = self.stream(size, client_asr)
        client.ActiveOpen(0, HOST, server.GetSockName()[1])
        server.wait()
        return server, client

    def close(self) -> None:
        for s in self.streams:
            with contextlib.suppress(Exception):
                s.__exit__(None, None, None)
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    try:
        yield e
    finally:
        e.close()


def raw_reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (SO_LINGER on, time 0)."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
