"""Shared helpers: a recording stateChanged callback, raw-socket peers, leftover cleanup.

Everything is real: loopback sockets, the core's loop thread, the tcpcom facade. Every wait is
bounded; nothing sleeps and hopes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpcom import _lifetime

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent
EXAMPLES = PACKAGE / "examples"
SCRIPTS = HERE / "scripts"

Event = tuple[str, str]


class Recorder:
    """A ``stateChanged`` callback that records (state, msg), when, and on which thread."""

    def __init__(self, name: str = "", action: Callable[[str, str], Any] | None = None) -> None:
        self.name = name
        self.action = action
        self.events: list[Event] = []
        self.times: list[float] = []
        self.threads: list[str] = []
        self.cond = threading.Condition()
        self.running = 0
        self.max_running = 0

    def __call__(self, state: str, msg: str) -> None:
        with self.cond:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.cond.notify_all()
        try:
            if self.action is not None:
                self.action(state, msg)
        finally:
            with self.cond:
                self.running -= 1
                self.events.append((state, msg))
                self.times.append(time.monotonic())
                self.threads.append(threading.current_thread().name)
                self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.events), timeout)

    def wait_count(self, n: int, timeout: float = 5.0) -> list[Event]:
        ok = self.wait_for(lambda ev: len(ev) >= n, timeout)
        assert ok, f"{self.name}: expected {n} callbacks within {timeout} s, got {self.events}"
        return list(self.events)

    def wait_event(self, state: str, msg: str | None = None, timeout: float = 5.0) -> float:
        """Wait for a callback (state[, msg]); return the time it completed."""

        def seen(ev: list[Event]) -> bool:
            return any(s == state and (msg is None or m == msg) for s, m in ev)

        ok = self.wait_for(seen, timeout)
        assert ok, f"{self.name}: no {state} {msg!r} within {timeout} s; got {self.events}"
        for (s, m), t in zip(self.events, self.times, strict=True):
            if s == state and (msg is None or m == msg):
                return t
        raise AssertionError("unreachable")

    def messages(self) -> list[str]:
        with self.cond:
            return [m for s, m in self.events if s == "MESSAGE"]

    def states(self) -> list[str]:
        with self.cond:
            return [s for s, _ in self.events]

    def snapshot(self) -> list[Event]:
        with self.cond:
            return list(self.events)

    def clear(self) -> None:
        with self.cond:
            self.events.clear()
            self.times.clear()
            self.threads.clear()


@pytest.fixture
def recorder() -> Callable[..., Recorder]:
    return Recorder


@pytest.fixture(autouse=True)
def _close_leftovers() -> Iterator[None]:
    """Terminate servers and disconnect clients a test left running: a running one keeps
    the process alive by design, which would hang the test run at exit."""
    yield
    for obj in _lifetime.live_objects():
        with contextlib.suppress(Exception):  # best effort in teardown
            obj._shutdown_for_tests()
    assert _lifetime.wait_released(10.0), "tcpcom objects still hold the process after 10 s"


# ---------------------------------------------------------------- raw peers


def raw_connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {bytes(data)!r}, expected {n} bytes")
        data += chunk
    return bytes(data)


def recv_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the peer sends until its FIN (AssertionError if no FIN within timeout)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no EOF within {timeout} s (got {bytes(data)!r})")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(data)
        data += chunk


def assert_silent(sock: socket.socket, duration: float) -> None:
    """The peer sends nothing (and does not close) for ``duration`` seconds."""
    sock.settimeout(duration)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return
    raise AssertionError(f"expected silence, got {data!r}")


class RawServer:
    """A plain listening socket the test controls byte by byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []

    def accept(self, timeout: float = 5.0) -> socket.socket:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


@pytest.fixture
def raw_sockets() -> Iterator[list[socket.socket]]:
    """Append raw sockets here to have them closed after the test."""
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


# ---------------------------------------------------------------- subprocesses


def script_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONWARNINGS", None)
    return env


class Script:
    """A Python script in a subprocess; stdout/stderr collected by reader threads."""

    def __init__(self, path: Path | str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=script_env(),
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self.cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self.cond:
                into.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, prefix: str, timeout: float = 15.0) -> str:
        """The first stdout line starting with ``prefix``."""

        def found() -> str | None:
            return next((line for line in self.lines if line.startswith(prefix)), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None or self.proc.poll() is not None,
                               timeout)
            line = found()
        if line is None:
            self.kill()
            raise AssertionError(
                f"no line starting {prefix!r} within {timeout} s: {self.lines} {self.err}"
            )
        return line

    def alive_after(self, seconds: float) -> bool:
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return True
        return False

    def finish(self, timeout: float) -> list[str]:
        """Wait for the exit (AssertionError after ``timeout``); all stdout lines."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"did not exit within {timeout} s: {self.lines} {self.err}"
            ) from None
        for t in self._readers:
            t.join(5)
        return list(self.lines)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def scripts() -> Iterator[Callable[..., Script]]:
    """``scripts(path, *args)`` starts a script; every one is killed after the test."""
    started: list[Script] = []

    def start(path: Path | str, *args: str) -> Script:
        script = Script(path, *args)
        started.append(script)
        return script

    yield start
    for script in started:
        script.kill()
