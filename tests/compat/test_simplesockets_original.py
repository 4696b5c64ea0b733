"""polysock-simplesockets against the REAL simplesockets 0.4.0, in both directions.

The original and polysock cannot share an environment (both are the top-level package
``simplesockets``), so the original runs in a separate interpreter: set
``POLYSOCK_ORIGINAL_SIMPLESOCKETS_PYTHON`` to a Python that has ``simplesockets==0.4.0`` and
``pycryptodome`` installed (0.4.0 imports ``Crypto`` without declaring it). This process has
polysock-simplesockets installed. Helper scripts: ``tests/compat/simplesockets/``.

Known defects of the original that these tests step around (not what is tested here):
its server's per-client thread spins at 100 % CPU once a client has closed (EOF is never
treated as a disconnect), its client's receive thread does the same after the server closes,
and ``Server.disconnect()`` races with that thread (a ``KeyError`` traceback on its stderr).
The helper processes are killed at the end of each test, so the spinning is bounded.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

ENV = "POLYSOCK_ORIGINAL_SIMPLESOCKETS_PYTHON"
HELPERS = Path(__file__).resolve().parent / "simplesockets"
ORIGINAL = os.environ.get(ENV)

pytestmark = pytest.mark.skipif(
    not ORIGINAL,
    reason=f"{ENV} is not set: point it at a Python with simplesockets==0.4.0 and "
    "pycryptodome installed (the compat-simplesockets tox env does)",
)

simplesockets = pytest.importorskip("simplesockets")


def _original_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)  # nothing of this environment may leak into the original's
    return env


class Lines:
    """Reads a helper's stdout on a thread; ``expect`` waits (bounded) for a line prefix."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<EOF>")
            self.cond.notify_all()

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        def find() -> str | None:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            return None

        with self.cond:
            self.cond.wait_for(lambda: find() is not None or "<EOF>" in self.lines, timeout)
            found = find()
        if found is None:
            done = self.proc.poll() is not None and self.proc.stderr is not None
            err = self.proc.stderr.read() if done and self.proc.stderr else ""
            pytest.fail(f"no {prefix!r} line from the original: {self.lines} {err}")
        return found

    def all(self, prefix: str) -> list[str]:
        with self.cond:
            return [line for line in self.lines if line.startswith(prefix)]


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    assert ORIGINAL is not None
    return subprocess.Popen(
        [ORIGINAL, str(HELPERS / script), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_original_env(),
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def test_the_other_interpreter_really_has_the_original() -> None:
    assert ORIGINAL is not None
    out = subprocess.run(
        [ORIGINAL, "-c",
         "import importlib.metadata as m, simplesockets, Crypto;"
         "print(m.version('simplesockets'), hasattr(simplesockets, 'SecureServer'))"],
        capture_output=True, text=True, timeout=60, env=_original_env(), check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.4.0", "True"]
    # and this process has polysock's, not the original
    assert "polysock" in (simplesockets.__doc__ or "")
    with pytest.raises(ImportError):
        exec("from simplesockets import SecureServer")


@pytest.mark.timeout(90)
def test_original_server_with_polysock_client() -> None:
    from simplesockets import TCPClient

    proc = _start("original_server.py")
    lines = Lines(proc)
    try:
        port = int(lines.expect("PORT ").split()[1])
        disconnected = threading.Event()
        calls: list[str] = []

        def on_disconnect() -> None:
            calls.append("disconnect")
            disconnected.set()

        client = TCPClient()
        client.setup("127.0.0.1", port, on_disconnect=on_disconnect)
        assert client.connect()
        client.autorecv()
        lines.expect(f"CONNECT {client.socket.getsockname()[1]}")

        payloads = [b"hello", bytes(range(256)), "héllo€".encode()]
        for payload in payloads:
            assert client.send_data(payload)
            got = b""
            expected = b"echo:" + payload
            deadline = time.monotonic() + 20
            while got != expected:
                assert len(got) < len(expected) and time.monotonic() < deadline, got
                ev, items = client.await_event(5000, disable_on_functions=True)
                assert ev == client.EVENT_RECEIVED, ev
                got += b"".join(item.response for item in items)
        # the original saw exactly our raw bytes, in order
        received = b"".join(bytes.fromhex(line.split()[1]) for line in lines.all("RECV "))
        assert received == b"".join(payloads)

        # the original's Server.disconnect() closes the socket: we see one disconnect
        assert proc.stdin is not None
        proc.stdin.write("disconnect\n")
        proc.stdin.flush()
        assert disconnected.wait(10)
        assert client.event.is_connected is False and client.event.disconnected is True
        time.sleep(0.3)
        assert calls == ["disconnect"]
        assert client.send_data(b"late") is False
        client.close()
    finally:
        _stop(proc)


@pytest.mark.timeout(90)
def test_polysock_server_with_original_client() -> None:
    from simplesockets import TCPServer

    events: list[tuple[str, object]] = []
    gone = threading.Event()
    server = TCPServer()

    def on_connect(address: tuple[str, int]) -> None:
        events.append(("connect", address))

    def on_receive(client_socket: object, address: object, data: bytes) -> None:
        events.append(("receive", bytes(data)))
        server.send_data(b"echo:" + data, client_socket)

    def on_disconnect(address: tuple[str, int]) -> None:
        events.append(("disconnect", address))
        gone.set()

    server.setup(ip="127.0.0.1", port=0, on_connect=on_connect, on_receive=on_receive,
                 on_disconnect=on_disconnect)
    port = server.socket.getsockname()[1]
    payloads = [b"hello from 0.4.0", bytes(range(256)), b"x" * 1500]
    proc = _start("original_client.py", str(port), *(p.hex() for p in payloads))
    lines = Lines(proc)
    try:
        client_port = int(lines.expect("CONNECTED ").split()[1])
        lines.expect("DONE", timeout=30)
        echoed = b"".join(bytes.fromhex(line.split()[1]) for line in lines.all("RECV "))
        assert echoed == b"".join(b"echo:" + p for p in payloads)
        # the original client closed: one clean disconnect on our side, nothing recorded
        assert gone.wait(10)
        time.sleep(0.3)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "connect" and kinds[-1] == "disconnect"
        assert kinds.count("connect") == 1 and kinds.count("disconnect") == 1
        assert events[0][1] == ("127.0.0.1", client_port)
        got = b"".join(value for kind, value in events if kind == "receive")  # type: ignore[misc]
        assert got == b"".join(payloads)
        assert not server.clients
        assert not server.event.exception.occurred, server.return_exceptions()
    finally:
        _stop(proc)
        server.close()


@pytest.mark.timeout(60)
def test_original_client_sees_our_max_connections_refusal() -> None:
    """Our accept-and-close refusal as the original client experiences it: connect()
    succeeds (the handshake completes), then the connection is closed without a byte."""
    from simplesockets import TCPServer

    server = TCPServer(max_connections=0)
    server.setup(ip="127.0.0.1", port=0)
    probe = (
        "import sys, socket\n"
        "from simplesockets import TCPClient\n"
        "c = TCPClient(); c.setup(target_ip='127.0.0.1', target_port=int(sys.argv[1]))\n"
        "print('CONNECT', c.connect(), flush=True)\n"
        "c.socket.settimeout(5)\n"
        "print('READ', c.socket.recv(10), flush=True)\n"
    )
    assert ORIGINAL is not None
    try:
        out = subprocess.run(
            [ORIGINAL, "-c", probe, str(server.socket.getsockname()[1])],
            capture_output=True, text=True, timeout=30, env=_original_env(), check=False,
        )
    finally:
        server.close()
    assert out.stdout.splitlines() == ["CONNECT True", "READ b''"], out.stderr
