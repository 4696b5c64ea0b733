"""Helpers shared by the simplesockets tests (a uniquely named module, not conftest, so that
other packages' test helpers never shadow it)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from simplesockets import TCPServer


def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Wait until ``predicate()`` is truthy (bounded); returns its value or fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {what or predicate}")
        time.sleep(0.002)


def recv_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise AssertionError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def read_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(out)
        out += chunk


class Recorder:
    """Thread-safe log of callback calls with a condition to wait on."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.cond = threading.Condition()
        self.threads: list[threading.Thread] = []

    def add(self, *entry: Any) -> None:
        with self.cond:
            self.calls.append(entry)
            self.threads.append(threading.current_thread())
            self.cond.notify_all()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        with self.cond:
            return [c for c in self.calls if c[0] == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.named(name)) >= count, timeout)
        assert ok, f"{count} x {name!r} not seen within {timeout} s: {self.calls}"
        return self.named(name)

    # ready-made callbacks
    def on_connect(self, *args: Any) -> None:
        self.add("connect", *args)

    def on_disconnect(self, *args: Any) -> None:
        self.add("disconnect", *args)

    def on_receive(self, *args: Any) -> None:
        self.add("receive", *args)


def port_of(server: TCPServer) -> int:
    assert server.socket is not None
    return int(server.socket.getsockname()[1])


def cpu_during(seconds: float) -> float:
    """CPU seconds this process used while waiting ``seconds`` (the idle check)."""
    start = time.process_time()
    threading.Event().wait(seconds)
    return time.process_time() - start
