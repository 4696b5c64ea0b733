"""The example programs, run as a user runs them (separate processes, real sockets)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import EXAMPLES

pytestmark = pytest.mark.timeout(90)


class Proc:
    """An example process whose stdout lines are collected by a thread."""

    def __init__(
        self, script: str, *args: str, stdin: bool = False, argv: list[str] | None = None
    ) -> None:
        self.p = subprocess.Popen(
            argv or [sys.executable, "-u", str(EXAMPLES / script), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=EXAMPLES,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.all.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pred: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {pred!r}; output: {self.all}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if pred in line:
                return line

    def write(self, text: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def finish(self, timeout: float = 30.0) -> int:
        if self.p.stdin is not None:
            self.p.stdin.close()
        return self.p.wait(timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        for stream in (self.p.stdin, self.p.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def start_server(procs: list[Proc], script: str) -> str:
    server = Proc(script, "--host", "127.0.0.1", "--port", "0")
    procs.append(server)
    return server.wait_line("Server started").split()[-1]


def test_instrument_to_workstation(procs: list[Proc]) -> None:
    port = start_server(procs, "instrument_server.py")
    client = Proc("instrument_client.py", "--host", "127.0.0.1", "--port", port)
    procs.append(client)
    assert client.finish(60) == 0, client.all
    assert "30 frames, 0 errors" in client.all
    assert "frame dimensions: 512 x 512 (32 bits per pixel)" in client.all
    assert procs[0].finish(20) == 0
    assert "Server closed" in procs[0].all


def test_pingpong(procs: list[Proc]) -> None:
    port = start_server(procs, "pingpong_server.py")
    client = Proc("pingpong_client.py", "--host", "127.0.0.1", "--port", port)
    procs.append(client)
    assert client.finish(60) == 0, client.all
    assert any("0 ping-pong errors" in line for line in client.all)
    assert procs[0].finish(20) == 0


@pytest.mark.parametrize(
    ("server", "chat"), [("simpleBroadcast.py", "simpleChat.py"),
                         ("simpleBroadcast2.py", "simpleChat2.py")]
)
def test_chat_through_the_broadcast_server(procs: list[Proc], server: str, chat: str) -> None:
    port = start_server(procs, server)
    a = Proc(chat, "--host", "127.0.0.1", "--port", port, stdin=True)
    b = Proc(chat, "--host", "127.0.0.1", "--port", port, stdin=True)
    procs += [a, b]
    a.wait_line("Connected")
    b.wait_line("Connected")
    time.sleep(0.1)  # let the server's loop list both children
    a.write("/name Alice")
    a.write("hi from A")
    # The original broadcast base85 text here (R!>PpAUYsuX&`2DZ*3q! instead of the text).
    assert b.wait_line(">>> ") == ">>> Alice : hi from A"
    b.write("hello A")
    assert a.wait_line(">>> ") == ">>> VOID : hello A"
    a.write("/KTHXBYE")
    assert procs[0].finish(20) == 0
    a.write("/stop")
    b.write("/stop")
    assert a.finish(20) == 0 and b.finish(20) == 0
