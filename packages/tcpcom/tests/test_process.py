"""Whole programs in real subprocesses: process lifetime (spec 3.6), Ctrl-C in loopForever,
idle CPU, the classroom programs and the examples, all run unchanged."""

from __future__ import annotations

import platform
import signal
import time
from collections.abc import Callable

import pytest
from conftest import EXAMPLES, SCRIPTS, Recorder, Script, raw_connect, recv_until_eof

from tcpcom import TCPClient, TCPServer

pytestmark = pytest.mark.timeout(60)

Start = Callable[..., Script]


def test_a24_a_server_keeps_the_script_alive_until_terminated(scripts: Start) -> None:
    proc = scripts(SCRIPTS / "server_until_stop.py")
    port = int(proc.wait_line("STATE LISTENING").split()[-1])
    proc.wait_line("MAIN-END")  # the main code has ended ...
    assert proc.alive_after(3.0)  # ... and the server keeps running (the original's thread)
    raw = raw_connect(port)
    raw.sendall(b"stop\0")
    t0 = time.monotonic()
    assert recv_until_eof(raw, 5.0) == b""  # terminate() closed our connection
    raw.close()
    lines = proc.finish(5.0)
    assert time.monotonic() - t0 < 1.5  # spec: exits within 1 s
    assert proc.returncode == 0, proc.stderr
    assert lines[-2:] == ["STATE MESSAGE stop", "STATE TERMINATED "]


def test_a24_a_connected_client_keeps_the_script_alive_until_disconnected(
    scripts: Start,
) -> None:
    srv = TCPServer(0, Recorder())
    proc = scripts(SCRIPTS / "client_only.py", str(srv.port))
    assert proc.wait_line("CONNECT") == "CONNECT True"
    proc.wait_line("MAIN-END")
    assert proc.alive_after(1.5)
    srv.disconnect()
    t0 = time.monotonic()
    lines = proc.finish(5.0)
    assert time.monotonic() - t0 < 1.5
    assert proc.returncode == 0, proc.stderr
    assert lines[-1] == "STATE DISCONNECTED "
    srv.terminate()


def test_an_unconnected_client_does_not_keep_the_script_alive(scripts: Start) -> None:
    srv = TCPServer(0, None)
    holder = TCPClient("127.0.0.1", srv.port, None)
    assert holder.connect()
    proc = scripts(SCRIPTS / "client_only.py", str(srv.port))  # refused: SERVER_OCCUPIED
    proc.wait_line("MAIN-END")
    t0 = time.monotonic()
    lines = proc.finish(5.0)
    assert time.monotonic() - t0 < 1.0
    assert "CONNECT False" in lines
    holder.disconnect()
    srv.terminate()


def test_a19_a_port_in_use_script_exits_by_itself(scripts: Start) -> None:
    busy = TCPServer(0, None)
    proc = scripts(SCRIPTS / "port_in_use.py", str(busy.port))
    proc.wait_line("MAIN-END")
    t0 = time.monotonic()
    lines = proc.finish(5.0)
    assert time.monotonic() - t0 < 1.0
    assert proc.returncode == 0, proc.stderr
    assert f"STATE PORT_IN_USE {busy.port}" in lines  # the callback ran before the exit
    assert any(line.startswith("Fatal error while creating TCPServer: Bind failed.")
               for line in lines)
    assert not any("LISTENING" in line or "TERMINATED" in line for line in lines)
    busy.terminate()


FUTEX = {"x86_64": "202", "aarch64": "98"}.get(platform.machine())


def wait_until_main_thread_blocks(pid: int, timeout: float = 5.0) -> None:
    """Wait until the main thread sits in a futex wait (threading.Event.wait) for 5 samples
    in a row, so that SIGINT arrives inside loopForever(), not before it."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline and streak < 5:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                call = f.read().split(" ", 1)[0]
        except OSError:
            call = None
        if call is None or FUTEX is None:
            time.sleep(0.5)  # no /proc introspection here: the best we can do
            return
        streak = streak + 1 if call == FUTEX else 0
        time.sleep(0.02)
    assert streak >= 5, "the script's main thread never blocked in loopForever()"


def test_a32_ctrl_c_in_loop_forever_terminates(scripts: Start) -> None:
    proc = scripts(SCRIPTS / "loop_forever.py")
    proc.wait_line("LOOPING")
    wait_until_main_thread_blocks(proc.proc.pid)
    proc.proc.send_signal(signal.SIGINT)
    lines = proc.finish(5.0)
    assert proc.returncode == 0, proc.stderr
    assert "STATE TERMINATED " in lines
    assert "LOOP-RETURNED True" in lines
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(40)
def test_a28_d12_idle_server_and_client_use_no_cpu(scripts: Start) -> None:
    proc = scripts(SCRIPTS / "idle_cpu.py", "5")
    lines = proc.finish(30.0)
    assert proc.returncode == 0, proc.stderr
    fields = dict(line.split(" ", 1) for line in lines)
    cpu, wall = map(float, fields["IDLE-CPU"].split())
    assert wall >= 5.0
    assert cpu < 0.05, f"{cpu} s of CPU in {wall} s idle"  # no polling loops
    assert fields["CONNECTED"] == "True True"


@pytest.mark.timeout(40)
def test_classroom_programs_run_unchanged(scripts: Start) -> None:
    server = scripts(SCRIPTS / "classroom_server.py", "0")
    # port 0 only so that parallel runs cannot collide; the script prints what it got
    port = server.wait_line("Server:-- Listening on").split()[-1]
    client = scripts(SCRIPTS / "classroom_client.py", port)
    clines = client.finish(20.0)
    slines = server.finish(10.0)
    assert client.returncode == 0, client.stderr
    assert server.returncode == 0, server.stderr
    assert clines[:2] == [
        "Client:-- Waiting for connecting...",
        f"Client:-- Connected to localhost:{port}",
    ]
    # callbacks print from their own thread while the main code prints: lines may interleave
    text = "\n".join(clines)
    for n in range(3):
        assert f"Client:-- Received data: HELLO {n}" in text
    assert "Client:-- Received data: GRÜEZI €" in text
    assert "Client:-- Reply: GRÜEZI €" in text
    assert "Client:-- Connection lost" in text
    assert "Client:-- Done" in text
    assert "Server:-- Connected to 127.0.0.1" in slines
    assert "Server:-- Message received: grüezi €" in slines
    assert slines[-1] == "Server:-- Terminated"


@pytest.mark.timeout(40)
def test_examples_echo_server_and_client(scripts: Start) -> None:
    server = scripts(EXAMPLES / "echo_server.py", "0")
    port = server.wait_line("Server: listening on port").split()[-1]
    client = scripts(EXAMPLES / "echo_client.py", "127.0.0.1", port)
    clines = client.finish(20.0)
    slines = server.finish(10.0)
    assert client.returncode == 0 and server.returncode == 0, (client.stderr, server.stderr)
    assert clines == [
        f"Client: connecting to 127.0.0.1:{port}",
        f"Client: connected to 127.0.0.1:{port}",
        *(f"Client: reply echo:question {i}" for i in range(5)),
        "Client: disconnected",
    ]
    assert "Server: received stop" in slines
    assert slines[-1] == "Server: terminated"


def test_example_client_against_an_occupied_server(scripts: Start) -> None:
    srv = TCPServer(0, None)
    holder = TCPClient("127.0.0.1", srv.port, None)
    assert holder.connect()
    client = scripts(EXAMPLES / "echo_client.py", "127.0.0.1", str(srv.port))
    lines = client.finish(20.0)
    assert client.returncode == 0, client.stderr
    assert lines[-1] == "Client: the server is busy with another client"
    holder.disconnect()
    srv.terminate()
