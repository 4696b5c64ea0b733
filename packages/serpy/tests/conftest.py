"""Shared helpers: raw-socket peers that check bytes on the wire, servers, cleanup."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
PACKAGE = Path(__file__).resolve().parents[1]
EXAMPLES = PACKAGE / "examples"

SETMODE = [b"\x01SETMODE" + str(d).encode() + b"\x1f" for d in range(6)]
ACKMODCG = b"\x01ACKMODCG\x1f"
ACKEOT = b"\x01ACKEOT!!\x1f"


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Wait for ``pred()`` to become truthy (for states no event is offered for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


class RawPeer:
    """One accepted (or connected) plain socket with bounded reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(5.0)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {n} bytes, got {self.buf!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"EOF after {self.buf!r}, expected {n} bytes")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def expect(self, data: bytes, timeout: float = 5.0) -> None:
        got = self.recv_exact(len(data), timeout)
        assert got == data, f"wire: expected {data.hex(' ')}, got {got.hex(' ')}"

    def expect_nothing(self, wait: float = 0.2) -> None:
        """Nothing more arrives within ``wait`` seconds (a bounded check of silence)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(4096)
        except TimeoutError:
            chunk = None
        assert not self.buf and chunk is None, f"unexpected bytes {self.buf!r} {chunk!r}"

    def read_eof(self, timeout: float = 5.0) -> bytes:
        """Everything until the peer's FIN."""
        deadline = time.monotonic() + timeout
        out = self.buf
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no EOF within {timeout} s (got {out!r})")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                return out
            out += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class RawListener:
    """A plain listening socket standing in for a server."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.peers: list[RawPeer] = []

    def accept(self, timeout: float = 5.0) -> RawPeer:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        peer = RawPeer(conn)
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        for p in self.peers:
            p.close()
        self.sock.close()


@pytest.fixture
def cleanup() -> Iterator[Callable[[Any], Any]]:
    """``cleanup(obj)`` registers a Connection/Server/peer to close at teardown."""
    objs: list[Any] = []

    def add(obj: Any) -> Any:
        objs.append(obj)
        return obj

    yield add
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for obj in reversed(objs):
            with contextlib.suppress(Exception):
                if hasattr(obj, "closeServer"):
                    obj.closeServer()
                else:
                    obj.close()


@pytest.fixture
def listener(cleanup: Callable[[Any], Any]) -> RawListener:
    return cleanup(RawListener())  # type: ignore[no-any-return]


def raw_client(port: int) -> RawPeer:
    return RawPeer(socket.create_connection((HOST, port), timeout=5))


def port_of(server: Any) -> int:
    return int(server.address[1])


def free_port() -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def run_script(code: str, timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
        check=False, **kw,
    )


@pytest.fixture(autouse=True)
def _always_warn() -> Iterator[None]:
    """Every warning is recorded each time (not once per location), so counts are exact."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield
