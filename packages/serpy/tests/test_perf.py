"""Speed and resource figures of the spec (acceptance 5, 18, 19, 20) with margins for a busy
two-core machine that still catch the original's behaviour (polling: 100 ms per mode switch,
one serpy2 frame per 10 ms, a busy CPU when idle)."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest
import serpy as sp
import serpy2
from conftest import HOST, port_of, raw_client, wait_until
from polysock_serpy import bench

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def sp_pair(cleanup: Any) -> tuple[sp.Connection, sp.Connection]:
    s = cleanup(sp.Server(HOST, 0, queue_size=2000).start())
    c = cleanup(sp.Connection(queue_size=2000).connect(HOST, port_of(s)))
    return c, s.getConnection(timeout=5)


def test_mode_switch_and_acknowledged_send_are_fast(
    sp_pair: tuple[sp.Connection, sp.Connection],
) -> None:
    c, _ = sp_pair
    c.sendData("warm-up", mode=1, timeout=5)
    best = min(_timed(lambda i=i: c.sendData(f"x{i}", mode=1 + 2 * (i % 2), timeout=5))
               for i in range(5))
    # spec: < 20 ms (about 1 ms here); the original: 150-220 ms
    assert best < 0.050


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    assert fn()
    return time.perf_counter() - t0


def test_thousand_small_messages(sp_pair: tuple[sp.Connection, sp.Connection]) -> None:
    c, child = sp_pair
    msg = "x" * 100
    t0 = time.perf_counter()
    for _ in range(1000):
        c.sendData(msg)
    for _ in range(1000):
        assert child.getData(timeout=5) == msg.encode()
    assert time.perf_counter() - t0 < 1.5  # spec 0.5 s; the original: ~50 s (a block/poll)


def test_acknowledged_rate() -> None:
    assert bench.acknowledged_rate(300) > 1000 / 2  # target 1000/s; the original: 5-7/s


def test_one_mebibyte_round_trips(sp_pair: tuple[sp.Connection, sp.Connection],
                                  cleanup: Any) -> None:
    blob = os.urandom(1 << 20)
    c, child = sp_pair
    c.sendData(blob, mode=2)  # warm-up (first use of the codec paths)
    child.sendData(child.getData(timeout=5), mode=2)
    c.getData(timeout=5)
    t0 = time.perf_counter()
    c.sendData(blob, mode=2)
    child.sendData(child.getData(timeout=5), mode=2)
    assert c.getData(timeout=5) == blob
    # Spec: < 0.5 s (about 0.3 s on a quiet machine: two base85 encodings and decodings
    # of 1 MiB); the margin absorbs a loaded machine.
    assert time.perf_counter() - t0 < 2.0
    s2 = cleanup(serpy2.Server(HOST, 0).start())
    c2 = cleanup(serpy2.Connection().connect(HOST, port_of(s2)))
    c2.sendData(blob)
    child2 = wait_until(lambda: s2.connections, what="child")[0]
    child2.sendData(child2.getData(timeout=5))
    c2.getData(timeout=5)
    t0 = time.perf_counter()
    c2.sendData(blob)
    child2.sendData(child2.getData(timeout=5))
    assert c2.getData(timeout=5) == blob
    assert time.perf_counter() - t0 < 0.5  # about 10 ms on a quiet machine


def test_blob_throughput_against_plain_sockets() -> None:
    raw, ours = bench.blob_throughput(40)
    # The target is 0.5x plain sockets (see README for measured figures); a loaded
    # shared machine makes ratios noisy, so this only guards against regressions to the
    # original's class (about 21 MB/s, one 4 KiB recv per 10 ms poll).
    assert ours > 25, (raw, ours)


def test_burst_of_ten_is_delivered_together() -> None:
    assert bench.burst_delay(20) < 0.010  # target < 1 ms; the original: one per 10 ms


def test_acceptance_17_pingpong_ten_connections(cleanup: Any) -> None:
    s = cleanup(serpy2.Server(HOST, 0, nb_conn=10).start())
    values = [123, "hello", 12.35, -1e6, 600000, "yes µù"]
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            readable = s.readableConnections()
            for rc in readable:
                rc.sendData(rc.getData())
            if not readable:
                time.sleep(0.001)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        t0 = time.perf_counter()
        conns = [cleanup(serpy2.Connection().connect(HOST, port_of(s))) for _ in range(10)]
        for c in conns:
            for v in values:
                c.sendData(v)
        for c in conns:
            got = [c.getData(timeout=5) for _ in values]
            assert got == values and [type(g) for g in got] == [type(v) for v in values]
        assert time.perf_counter() - t0 < 1.0
    finally:
        stop.set()
        t.join(2)


def test_acceptance_18_garbage_does_not_disturb_other_connections(cleanup: Any) -> None:
    s = cleanup(serpy2.Server(HOST, 0).start())
    good = cleanup(serpy2.Connection().connect(HOST, port_of(s)))
    good_child = wait_until(lambda: s.connections, what="child")[0]
    bad = cleanup(raw_client(port_of(s)))
    bad_child = wait_until(lambda: len(s.connections) == 2 and s.connections[1], what="bad")
    f1 = bytes.fromhex("decafecafe211402000005000000") + b"hello"
    injections = [bytes(range(16)) + f1, f1[:6] + b"\x15\x02\x00\x00" + f1[10:],
                  f1[:5] + b"\x99" + f1[6:]]
    worst = 0.0
    with pytest.warns(serpy2.ProtocolWarning):
        for i, junk in enumerate(injections):
            bad.send(junk)
            for _ in range(20):
                t0 = time.perf_counter()
                good.sendData(i)
                assert good_child.getData(timeout=5) == i
                worst = max(worst, time.perf_counter() - t0)
            wait_until(lambda i=i: bad_child.rx_errors == i + 1, what="error counted")
    assert worst < 0.15  # spec: 50 ms (margin for a loaded machine)
    assert bad_child.getData(timeout=5) == "hello"  # G1's good frame
    assert bad_child.rx_errors == 3 and good_child.rx_errors == 0


@pytest.mark.timeout(120)
def test_acceptance_19_endless_serpy_block(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    peer = cleanup(raw_client(port_of(s)))
    child = s.getConnection(timeout=5)
    chunk = b"x" * (1 << 20)
    with pytest.warns(sp.ProtocolWarning, match="exceeds max_message_size"):
        for _ in range(65):  # 65 MiB without a separator
            peer.send(chunk)
        peer.send(b"\x1fafter\x1f")
        assert child.getData(timeout=20) == b"after"
    assert child.rx_errors == 1
    assert child._link.core.framer.buffered == 0  # type: ignore[union-attr]


def test_acceptance_20_idle_connections_use_no_cpu(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0, nb_conn=5).start())
    s2 = cleanup(serpy2.Server(HOST, 0, nb_conn=5).start())
    for _ in range(3):
        cleanup(sp.Connection().connect(HOST, port_of(s)))
    for _ in range(2):
        cleanup(serpy2.Connection().connect(HOST, port_of(s2)))
    wait_until(lambda: len(s) == 3 and len(s2) == 2, what="children")
    cpu0 = time.process_time()
    time.sleep(3.0)
    assert time.process_time() - cpu0 < 0.05  # the original: 4 threads x 10-50 ms polls each


def test_socket_options(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    assert c.conn.family == socket.AF_INET
