"""The example programs run as users run them: separate processes, real sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HOST, recv_all, recv_exactly

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("listening on port "), first + proc.stderr.read()
    return proc, int(first.split()[-1])


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err == ""
    return out


@pytest.mark.timeout(60)
def test_echo_server_with_a_raw_client() -> None:
    proc, port = start_server()
    try:
        with socket.create_connection((HOST, port), timeout=10) as c:
            c.sendall(b"hello\r\nwor")
            assert recv_exactly(c, 13) == b"echo: hello\r\n"
            c.sendall(b"ld\r\n")  # a line split across two sends
            assert recv_exactly(c, 13) == b"echo: world\r\n"
            c.send(b"!", socket.MSG_OOB)  # urgent data is answered separately
            assert recv_exactly(c, 11) == b"urgent: !\r\n"
            c.sendall("ünïcode\n".encode())
            assert recv_exactly(c, 17) == "echo: ünïcode\r\n".encode()
            c.shutdown(socket.SHUT_WR)  # our FIN: the server sees connectionClosing
            assert recv_all(c) == b""  # and closes its side
        out = finish(proc)
    finally:
        proc.kill()
        proc.communicate()
    assert out.splitlines()[-1] == "served 3 lines"


@pytest.mark.timeout(60)
def test_echo_client_against_echo_server() -> None:
    proc, port = start_server()
    try:
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), str(port), "one", "two", "QUIT"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["echo: one", "echo: two", "bye"]
        out = finish(proc)
    finally:
        proc.kill()
        proc.communicate()
    assert "served 3 lines" in out
