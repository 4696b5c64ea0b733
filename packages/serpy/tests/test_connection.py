"""Connection behaviour: the import surface, gone connections, close(), acknowledgements,
restarts, limits and conversions (each defect of the original has a test here or in the
wire tests)."""

from __future__ import annotations

import pickle
import queue
import socket
import threading
import time
import warnings
from typing import Any

import numpy as np
import pytest
import serpy as sp
import serpy2
from conftest import ACKMODCG, HOST, SETMODE, RawListener, free_port, port_of, wait_until

pytestmark = pytest.mark.timeout(60)

SERPY_NAMES = {
    "Connection", "Server", "STIMEOUT", "main", "queue", "socket", "threading", "select",
    "pickle", "warnings", "sleep", "b85encode", "b85decode", "ConnectionClosed",
    "ProtocolWarning", "UnpickleDisabledWarning",
}
SERPY2_NAMES = {
    "Connection", "Server", "STIMEOUT", "QUEUELEN", "BLOCKIDCODE", "INTTYPECODE",
    "FLOATTYPECODE", "STRTYPECODE", "RAWBYTESTYPECODE", "HEADLEN", "main", "queue", "socket",
    "threading", "select", "sleep", "warnings", "ConnectionClosed", "ProtocolWarning",
}


def test_import_surface() -> None:
    ns: dict[str, Any] = {}
    exec("from serpy import *", ns)
    assert set(ns) - {"__builtins__"} == SERPY_NAMES
    ns = {}
    exec("from serpy2 import *", ns)
    assert set(ns) - {"__builtins__"} == SERPY2_NAMES
    assert sp.queue is queue and serpy2.queue is queue
    assert sp.STIMEOUT == 0.050 and serpy2.STIMEOUT == 0.010 and serpy2.QUEUELEN == 20
    assert serpy2.BLOCKIDCODE == b"\xde\xca\xfe\xca\xfe" and serpy2.HEADLEN == 14
    assert (serpy2.INTTYPECODE, serpy2.FLOATTYPECODE) == (b"\x01", b"\x11")
    assert (serpy2.STRTYPECODE, serpy2.RAWBYTESTYPECODE) == (b"\x21", b"\x81")
    assert sp.ConnectionClosed is serpy2.ConnectionClosed
    assert sp.ProtocolWarning is serpy2.ProtocolWarning
    assert issubclass(sp.ConnectionClosed, queue.Empty)
    assert issubclass(sp.ConnectionClosed, ConnectionError)
    assert issubclass(sp.UnpickleDisabledWarning, UserWarning)
    assert sp.main([]) == 0 and serpy2.main([]) == 0
    from base64 import b85decode, b85encode

    assert sp.b85encode is b85encode and sp.b85decode is b85decode


def test_signatures_follow_the_originals() -> None:
    c = sp.Connection(None, "latin-1", False, True)
    assert (c.encoding, c.auto_restart, c.allow_unpickle, c.adr) == ("latin-1", False, True, 0)
    assert sp.Connection().encoding == "utf-8"
    with pytest.raises(TypeError):
        serpy2.Connection(encoding="utf-8")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        serpy2.Connection(None, False, True)  # type: ignore[misc]
    with pytest.raises(TypeError):
        serpy2.Server(HOST, 0, 5, "utf-8")  # type: ignore[misc]
    with pytest.raises(TypeError):
        serpy2.Connection().sendData("x", mode=1)  # type: ignore[call-arg]
    assert not hasattr(serpy2.Server, "getConnection")


@pytest.fixture
def pair(cleanup: Any) -> tuple[sp.Server, sp.Connection, sp.Connection]:
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    return s, c, s.getConnection(timeout=5)


def test_sequence_1_and_2(pair: tuple[sp.Server, sp.Connection, sp.Connection]) -> None:
    _, c, child = pair
    c.sendData("hi")
    assert child.getData() == b"hi"
    with pytest.warns(UserWarning, match="using mode 2"):
        c.sendData(b"\x00")
    assert child.getData(timeout=5) == b"\x00"
    assert (c.out_mode, child.in_mode) == (2, 2)
    assert c.sendData("x", mode=1, timeout=1) is True
    assert child.getData(timeout=5) == b"x"


def test_acceptance_6_pickle_safe_by_default(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    child = s.getConnection(timeout=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c.sendData([1, "a"])
        c.sendData([1, "a"])
        first = child.getData(timeout=5)
        second = child.getData(timeout=5)
    assert type(first) is bytes and pickle.loads(first) == [1, "a"] == pickle.loads(second)
    assert [w.category for w in caught if w.category is not UserWarning] == [
        sp.UnpickleDisabledWarning
    ]
    child.allow_unpickle = True
    with pytest.warns(UserWarning, match="using mode 4"):
        c.sendData([1, "a"])
    assert child.getData(timeout=5) == [1, "a"]


def test_acceptance_7_gone_connection(
    pair: tuple[sp.Server, sp.Connection, sp.Connection],
) -> None:
    _, c, child = pair
    for i in range(3):
        child.sendData(f"m{i}")
    child.close()
    assert [c.getData(timeout=5) for _ in range(3)] == [b"m0", b"m1", b"m2"]
    wait_until(lambda: not c.isConnected(), what="disconnect")
    with pytest.raises(queue.Empty):
        c.getData()
    with pytest.raises(ConnectionError):
        c.getData()
    t0 = time.monotonic()
    with pytest.raises(sp.ConnectionClosed):
        c.getData(timeout=0.5)
    assert 0.5 <= time.monotonic() - t0 < 1.5  # anti-spin: never earlier than the timeout
    t0 = time.monotonic()
    with pytest.raises(sp.ConnectionClosed):
        c.sendData("x")
    assert time.monotonic() - t0 < 0.1


def test_acceptance_8_blocked_getdata_wakes_on_close(
    pair: tuple[sp.Server, sp.Connection, sp.Connection],
) -> None:
    _, c, child = pair
    woke: list[float] = []

    def reader() -> None:
        try:
            c.getData()
        except sp.ConnectionClosed:
            woke.append(time.monotonic())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    child.close()
    t.join(2)
    assert woke and woke[0] - t0 < 0.5  # spec: 100 ms (margin for a loaded machine)


def test_acceptance_9_close_releases_a_blocked_acknowledged_send(
    listener: RawListener, cleanup: Any
) -> None:
    c = cleanup(sp.Connection().connect(HOST, listener.port))
    peer = listener.accept()
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(c.sendData("x", mode=1)), daemon=True)
    t.start()
    peer.expect(SETMODE[1])
    peer.send(ACKMODCG)
    peer.expect(b"x\x04\x1f")  # never acknowledged
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 1.0  # spec: 0.5 s (margin for a loaded machine)
    t.join(1.0)
    assert result == [False]  # the original returned True


def test_acceptance_10_close_never_hangs(cleanup: Any) -> None:
    sp.Connection().close()  # never started: harmless (the original: AttributeError)
    listener = cleanup(RawListener())
    c = cleanup(sp.Connection(close_timeout=1.0).connect(HOST, listener.port))
    peer = listener.accept()
    stop = threading.Event()

    def flood() -> None:
        peer.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                peer.sock.send(b"spam\x1f" * 1000)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    wait_until(lambda: len(c._inq) >= 10, what="full inbound queue")
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 1.0 + 0.5
    c.close()
    stop.set()
    t.join(2)
    assert c.getData(timeout=0) == b"spam"  # received items stay readable


def test_acceptance_23_modes(pair: tuple[sp.Server, sp.Connection, sp.Connection]) -> None:
    _, c, _ = pair
    with pytest.raises(ValueError):
        c.sendData("x", mode=9)
    with pytest.raises(ValueError):
        c.sendData("x", mode=-1)
    with pytest.warns(UserWarning, match="Wrong mode used, using mode 2 instead"):
        c.sendData(b"\x00", mode=0)


def test_acceptance_24_concurrent_acknowledged_senders(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0, queue_size=1000).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    child = s.getConnection(timeout=5)
    results: list[bool | None] = []

    def sender(tag: str) -> None:
        for i in range(100):
            results.append(c.sendData(f"{tag}{i}", mode=1, timeout=5))

    threads = [threading.Thread(target=sender, args=(t,)) for t in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 200
    got = [child.getData(timeout=5) for _ in range(200)]
    assert sorted(got) == sorted(f"{t}{i}".encode() for t in "AB" for i in range(100))
    with pytest.raises(queue.Empty):
        child.getData(timeout=0.1)


def test_one_acknowledgement_releases_one_sender(listener: RawListener, cleanup: Any) -> None:
    # The original shared one flag: one ACKEOT released every waiting sender.
    c = cleanup(sp.Connection().connect(HOST, listener.port))
    peer = listener.accept()
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(c.sendData("x", mode=1, timeout=2)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    peer.expect(SETMODE[1])
    peer.send(ACKMODCG)
    peer.expect(b"x\x04\x1fx\x04\x1f")
    peer.send(b"\x01ACKEOT!!\x1f")
    for t in threads:
        t.join(5)
    assert sorted(results) == [False, True]


def test_late_acknowledgement_keeps_the_fifo_aligned(
    listener: RawListener, cleanup: Any
) -> None:
    c = cleanup(sp.Connection().connect(HOST, listener.port))
    peer = listener.accept()
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(c.sendData("a", mode=1, timeout=0.2)))
    t.start()
    peer.expect(SETMODE[1])
    peer.send(ACKMODCG)
    peer.expect(b"a\x04\x1f")
    t.join(2)
    assert result == [False]
    t = threading.Thread(target=lambda: result.append(c.sendData("b", mode=1, timeout=2)))
    t.start()
    peer.expect(b"b\x04\x1f")
    peer.send(b"\x01ACKEOT!!\x1f")  # the late one for 'a': must not release 'b'
    time.sleep(0.1)
    assert t.is_alive()
    peer.send(b"\x01ACKEOT!!\x1f")
    t.join(2)
    assert result == [False, True]
    assert c.rx_errors == 0


def test_mode_switch_wait_is_bounded(listener: RawListener, cleanup: Any) -> None:
    # The original waited for ACKMODCG forever.
    c = cleanup(sp.Connection(mode_ack_timeout=0.3).connect(HOST, listener.port))
    peer = listener.accept()
    with pytest.warns(sp.ProtocolWarning, match="no ACKMODCG"):
        c.sendData("x", mode=2)
        peer.expect(SETMODE[2])
        t0 = time.monotonic()
        peer.expect(sp.b85encode(b"x") + b"\x1f", timeout=3)
    assert 0.25 < time.monotonic() - t0 < 2.0
    assert c.out_mode == 2


def test_outgoing_queue_full(listener: RawListener, cleanup: Any) -> None:
    c = cleanup(sp.Connection(queue_size=2, mode_ack_timeout=None))
    c.connect(HOST, listener.port)
    listener.accept()
    c.sendData("x", mode=2)  # waits forever for ACKMODCG: the queue stays full behind it
    c.sendData("y", mode=2)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        c.sendData("w", mode=2, timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 1.0


def test_inbound_backpressure(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0, queue_size=5).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    child = s.getConnection(timeout=5)
    for i in range(2000):
        c.sendData(f"{i:04d}" * 256, timeout=5) if i < 30 else None
    wait_until(lambda: len(child._inq) >= 5, what="full queue")
    time.sleep(0.2)
    assert len(child._inq) <= 30  # reading stopped (soft limit: one read's frames)
    got = [child.getData(timeout=5) for _ in range(30)]
    assert got == [(f"{i:04d}" * 256).encode() for i in range(30)]


def test_never_started_connection_queues(cleanup: Any) -> None:
    c = cleanup(sp.Connection())
    c.sendData("early")
    assert not c.isConnected()
    with pytest.raises(queue.Empty):
        c.getData(timeout=0.05)
    s = cleanup(sp.Server(HOST, 0).start())
    c.connect(HOST, port_of(s))
    assert s.getConnection(timeout=5).getData(timeout=5) == b"early"


def test_start_with_a_socket(cleanup: Any) -> None:
    with pytest.raises(ConnectionError):
        sp.Connection().start()
    s = cleanup(sp.Server(HOST, 0).start())
    sock = socket.create_connection((HOST, port_of(s)))
    c = cleanup(sp.Connection(sock))
    c.start()
    c.start()  # idempotent
    c.sendData("adopted")
    assert s.getConnection(timeout=5).getData(timeout=5) == b"adopted"


def test_connect_errors_propagate() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        sp.Connection().connect(HOST, port)
    with pytest.raises(socket.gaierror):
        serpy2.Connection().connect("nonexistent.invalid", 80)


def test_reconnect_closes_the_previous_connection(cleanup: Any) -> None:
    s = cleanup(serpy2.Server(HOST, 0).start())
    c = cleanup(serpy2.Connection().connect(HOST, port_of(s)))
    wait_until(lambda: len(s.connections) == 1, what="first child")
    with pytest.warns(UserWarning, match="Already connected"):
        c.connect(HOST, port_of(s))
    c.sendData("second")
    wait_until(s.readableConnections, what="data")
    assert s.readableConnections()[0].getData(timeout=5) == "second"
    wait_until(lambda: len(s.connections) == 1, what="old child pruned")


def test_connect_revives_a_closed_connection(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    c.close()
    with pytest.raises(sp.ConnectionClosed):
        c.sendData("x")
    c.connect(HOST, port_of(s))
    c.sendData("again")
    s.getConnection(timeout=5)
    assert s.getConnection(timeout=5).getData(timeout=5) == b"again"


def test_iteration(pair: tuple[sp.Server, sp.Connection, sp.Connection]) -> None:
    _, c, child = pair
    for i in range(3):
        c.sendData(str(i))
    wait_until(lambda: len(child._inq) == 3, what="three messages")
    assert list(child) == [b"0", b"1", b"2"]
    child.close()
    assert list(child) == []  # stops quietly on a gone connection


# ------------------------------------------------------------------ restarts


def test_acceptance_11_restart_reconnects_quickly(cleanup: Any) -> None:
    s = sp.Server(HOST, 0).start()
    port = port_of(s)
    c = cleanup(sp.Connection(auto_restart=True).connect(HOST, port))
    s.getConnection(timeout=5)
    s.closeServer()
    wait_until(lambda: not c.isConnected(), what="break")
    c.sendData(b"queued while down", mode=2)
    time.sleep(2.0)
    t0 = time.monotonic()
    s2 = cleanup(sp.Server(HOST, port).start())
    child = s2.getConnection(timeout=5)
    wait_until(c.isConnected, what="reconnection")
    assert time.monotonic() - t0 < 1.5  # spec: 0.6 s (attempts every 0.5 s), loaded machine
    assert child.getData(timeout=5) == b"queued while down"
    c.sendData(b"after", mode=2)
    assert child.getData(timeout=5) == b"after"


def test_acceptance_11_restart_gives_up(cleanup: Any) -> None:
    s = sp.Server(HOST, 0).start()
    c = cleanup(
        sp.Connection(auto_restart=True, restart_attempts=3, restart_interval=0.1)
    ).connect(HOST, port_of(s))
    s.getConnection(timeout=5)
    t0 = time.monotonic()
    s.closeServer()
    with pytest.raises(sp.ConnectionClosed):
        c.getData()  # not gone while restarting: waits, then raises once attempts ran out
    assert time.monotonic() - t0 < 1.5  # spec: 0.5 s; the original tried for 8 minutes


def test_serpy2_warns_once_per_break(cleanup: Any) -> None:
    s = serpy2.Server(HOST, 0).start()
    c = cleanup(serpy2.Connection(auto_restart=True, restart_attempts=2, restart_interval=0.05))
    c.connect(HOST, port_of(s))
    wait_until(lambda: s.connections, what="child")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.closeServer()
        with pytest.raises(serpy2.ConnectionClosed):
            c.getData(timeout=None)
    texts = [str(w.message) for w in caught]
    assert texts.count("Attempting connection restart") == 1


def test_disable_restart_stops_attempts(cleanup: Any) -> None:
    s = sp.Server(HOST, 0).start()
    c = cleanup(sp.Connection(auto_restart=True, restart_interval=0.05)).connect(
        HOST, port_of(s)
    )
    s.getConnection(timeout=5)
    s.closeServer()
    wait_until(lambda: c._state == "restarting", what="restarting")
    c.disableRestart()
    with pytest.raises(sp.ConnectionClosed):
        c.getData()


# ------------------------------------------------------------------ serpy2 values


def test_acceptance_16_serpy2_types(cleanup: Any) -> None:
    c = serpy2.Connection()
    for bad in (True, [1], np.zeros(3), type("S", (str,), {})("x"), 1 + 2j, None):
        with pytest.raises(TypeError, match=r"Unsupported data type\. Cannot Send"):
            c.sendData(bad)
    with pytest.raises(OverflowError):
        c.sendData(2**63)
    with pytest.raises(OverflowError):
        c.sendData(-(2**63) - 1)
    c.sendData(bytearray(b"ok"))
    c.sendData(memoryview(b"ok"))
    with pytest.raises(ValueError):
        serpy2.Connection(max_message_size=4).sendData(b"12345")
    with pytest.raises(ValueError):
        sp.Connection(max_message_size=4).sendData("12345")


def test_serpy2_buffer_reused_after_send_is_not_corrupted(cleanup: Any) -> None:
    s = cleanup(serpy2.Server(HOST, 0).start())
    c = cleanup(serpy2.Connection().connect(HOST, port_of(s)))
    frame = np.zeros(100_000, dtype=np.float32)
    for i in range(5):
        frame[:] = i  # the instrument reuses its buffer as soon as sendData returns
        c.sendData(memoryview(frame))
    child = wait_until(lambda: s.connections, what="child")[0]
    for i in range(5):
        img = np.frombuffer(child.getData(timeout=5), dtype=np.float32)
        assert (img == i).all()
    assert child.rx_errors == 0
