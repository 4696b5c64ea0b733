"""Process lifetime and restarts against real processes (the original's threads kept every
process alive, and its restart loop survived close())."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import serpy as sp
from conftest import HOST, RawListener, free_port, port_of, run_script, wait_until
from test_examples import Proc

pytestmark = pytest.mark.timeout(90)


def test_acceptance_22_unclosed_connection_flushes_at_exit(cleanup: Any) -> None:
    listener = cleanup(RawListener())
    code = textwrap.dedent(f"""
        import serpy
        c = serpy.Connection().connect("{HOST}", {listener.port})
        for i in range(5):
            c.sendData("message %d" % i)
        # no close(): the interpreter exits here
    """)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code])
    peer = listener.accept(timeout=10)
    data = peer.read_eof(timeout=10)
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 2.5 + 1.5  # interpreter start-up included
    assert data == b"".join(b"message %d\x1f" % i for i in range(5))


def test_objects_do_not_keep_the_process_alive() -> None:
    code = textwrap.dedent("""
        import time, serpy, serpy2
        s = serpy.Server("127.0.0.1", 0).start()
        c = serpy.Connection(auto_restart=True).connect("127.0.0.1", s.address[1])
        s2 = serpy2.Server("127.0.0.1", 0).start()
        c2 = serpy2.Connection().connect("127.0.0.1", s2.address[1])
        child = s.getConnection(timeout=5)
        c.sendData("x"); assert child.getData(timeout=5) == b"x"
        print("ready", flush=True)
    """)
    t0 = time.monotonic()
    result = run_script(code, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ready\n"
    assert time.monotonic() - t0 < 5.0


def test_acceptance_12_close_cancels_restart_attempts() -> None:
    port = free_port()
    code = textwrap.dedent(f"""
        import socket, time, serpy
        s = serpy.Server("{HOST}", {port}).start()
        c = serpy.Connection(auto_restart=True, restart_interval=0.2).connect("{HOST}", {port})
        s.getConnection(timeout=5)
        s.closeServer()
        while c.isConnected():
            time.sleep(0.01)
        time.sleep(0.3)          # some attempts fail against the closed port
        c.close()                # must stop them for good
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("{HOST}", {port}))
        listener.listen()
        listener.settimeout(1.0)
        try:
            listener.accept()
            print("attempted")
        except TimeoutError:
            print("no attempt")
    """)
    t0 = time.monotonic()
    result = run_script(code, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no attempt"  # the original revived the connection
    assert time.monotonic() - t0 < 10


SERVER = textwrap.dedent("""
    import sys, serpy
    s = serpy.Server("127.0.0.1", int(sys.argv[1])).start()
    print("Server started", flush=True)
    while True:
        child = s.getConnection()
        while True:
            try:
                print("got", child.getData().decode(), flush=True)
            except serpy.ConnectionClosed:
                break
""")


def ServerProc(port: int) -> Proc:
    return Proc("", argv=[sys.executable, "-u", "-c", SERVER, str(port)])


def test_restart_against_a_killed_and_restarted_server_process(cleanup: Any) -> None:
    port = free_port()
    first = ServerProc(port)
    try:
        first.wait_line("Server started")
        c = cleanup(sp.Connection(auto_restart=True).connect(HOST, port))
        c.sendData("m0")
        first.wait_line("got m0")
        first.kill()
        wait_until(lambda: not c.isConnected(), what="the break")
        c.sendData("m1")  # queued while the server is down
        c.sendData(b"m2", mode=2)
        time.sleep(0.6)  # a few attempts fail against the dead port
        second = ServerProc(port)
        try:
            second.wait_line("Server started")
            wait_until(c.isConnected, timeout=5, what="reconnection")
            c.sendData("m3")
            assert second.wait_line("got m3") == "got m3"
            assert [ln for ln in second.all if ln.startswith("got")] == [
                "got m1", "got m2", "got m3",
            ]  # queued messages exactly once, in order, bytes decoded (modes were reset)
        finally:
            second.kill()
        assert [ln for ln in first.all if ln.startswith("got")] == ["got m0"]
    finally:
        first.kill()


def test_server_child_does_not_restart(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    c = sp.Connection().connect(HOST, port_of(s))
    child = s.getConnection(timeout=5)
    child.enableRestart()
    c.close()
    with pytest.raises(sp.ConnectionClosed):
        child.getData()
