"""The send path under pressure: order across threads and sizes, backpressure against a peer
that does not read (bounded memory, nothing lost), and closing while senders wait."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import Recorder, raw_connect, recv_until_eof

from tcpcom import TCPServer

pytestmark = pytest.mark.timeout(60)


def sizes(t: int) -> list[int]:
    # small (lock-free path) and large (byte-counted path) payloads interleaved
    return [(i * 7919 + t * 104729) % 70_000 if i % 5 == 0 else i % 300 for i in range(400)]


def payload(t: int, i: int, n: int) -> bytes:
    head = f"{t}:{i}:".encode()
    return head + b"x" * max(n - len(head), 0)


def test_mixed_sizes_from_two_threads_arrive_intact_and_in_order() -> None:
    rec = Recorder()
    srv = TCPServer(0, rec)
    raw = raw_connect(srv.port)
    rec.wait_event("CONNECTED")

    def sender(t: int) -> None:
        for i, n in enumerate(sizes(t)):
            srv.sendMessage(payload(t, i, n))

    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(recv_until_eof(raw, 30.0)))
    reader.start()
    threads = [threading.Thread(target=sender, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    srv.disconnect()  # flushes everything accepted, then FIN
    reader.join(30)
    data = received[0]
    parts = data.split(b"\0")
    assert parts.pop() == b""
    for t in range(2):
        mine = [p for p in parts if p.startswith(f"{t}:".encode())]
        assert mine == [payload(t, i, n) for i, n in enumerate(sizes(t))]
    assert len(parts) == 800
    raw.close()
    srv.terminate()


@pytest.mark.timeout(60)
def test_a_peer_that_does_not_read_blocks_the_sender_and_loses_nothing() -> None:
    rec = Recorder()
    srv = TCPServer(0, rec)
    raw = raw_connect(srv.port)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    rec.wait_event("CONNECTED")
    total = 200_000  # 200k x 100 bytes = 20 MB: far more than socket and queue buffers
    sent = 0
    done = threading.Event()

    def sender() -> None:
        nonlocal sent
        for i in range(total):
            srv.sendMessage(f"{i:099d}")
            sent = i + 1
        done.set()

    th = threading.Thread(target=sender)
    th.start()
    # The peer reads nothing: the sender must stall with a bounded amount queued.
    stalled_at = -1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        before = sent
        if done.wait(0.3):
            break
        if sent == before:
            stalled_at = sent
            break
    assert not done.is_set(), "20 MB were accepted without the peer reading: unbounded"
    assert 0 < stalled_at < total
    # What was accepted is bounded by the kernel's socket buffers (tcp_wmem, up to 4 MiB by
    # default) plus the transport's high-water mark and tcpcom's queue (< 1 MiB here).
    assert stalled_at * 100 < 10 * 1024 * 1024
    # Now read everything: all messages, in order, then the sender finishes.
    expected_next = 0
    buf = b""
    raw.settimeout(20)
    while expected_next < total:
        chunk = raw.recv(1 << 20)
        assert chunk
        buf += chunk
        *complete, buf = buf.split(b"\0")
        for msg in complete:
            assert msg == f"{expected_next:099d}".encode()
            expected_next += 1
    th.join(10)
    assert done.is_set()
    raw.close()
    srv.terminate()


def test_disconnect_releases_a_sender_blocked_by_backpressure() -> None:
    rec = Recorder()
    srv = TCPServer(0, rec)
    raw = raw_connect(srv.port)
    rec.wait_event("CONNECTED")
    finished = threading.Event()

    def sender() -> None:
        for _ in range(1_000_000):
            srv.sendMessage("y" * 1000)
            if not srv.isConnected():
                break
        finished.set()

    th = threading.Thread(target=sender)
    th.start()
    assert not finished.wait(1.0)  # blocked: the peer does not read
    srv.disconnect()
    assert finished.wait(10)  # released, not hung
    th.join(5)
    raw.close()
    srv.terminate()
