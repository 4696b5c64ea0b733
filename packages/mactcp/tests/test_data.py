"""Send / Rcv / Close / Abort: wire bytes, limits, half-close, acknowledgement, resets."""

from __future__ import annotations

import socket
import threading
import time

import mactcp
import pytest
from conftest import (
    HOST,
    Recorder,
    raw_reset,
    recv_all,
    recv_exactly,
    unread,
    wait_until,
)


def test_v1_send_puts_exactly_the_bytes_on_the_wire(env) -> None:
    s, peer = env.active_pair()
    assert s.Send(b"hello") is None
    s.Close()
    assert recv_all(peer) == bytes.fromhex("68656c6c6f")  # and nothing else, then FIN


def test_send_accepts_bytes_like_and_utf8_text(env) -> None:
    s, peer = env.active_pair()
    s.Send(bytearray(b"ab"))
    s.Send(memoryview(b"xcdx")[1:3])
    s.Send("é€")  # str is sent as UTF-8 (DECISION)
    s.Send(b"")  # no-op
    s.Close()
    assert recv_all(peer) == b"abcd" + "é€".encode()
    with pytest.raises(TypeError):
        s.Send(12)


def test_rcv_returns_bytes_as_received(env) -> None:
    # §5 sequence 2: client-style active open sending to a server-style stream
    rec = Recorder()
    server = env.stream(asr=rec)
    server.PassiveOpen(0)
    c = env.stream()
    c.ActiveOpen(0, "127.0.0.1", server.GetSockName()[1])
    server.wait()
    c.Send(b"hello")
    rec.wait_for((4, 0))  # no Rcv was waiting: data arrival first
    assert server.Rcv(5) == (b"hello", 0, 0)
    with pytest.raises(mactcp.error, match="commandTimeout"):
        server.Rcv(0.05)  # nothing more was sent


def test_v5_rcv_returns_at_most_size_bytes(env) -> None:
    s, peer = env.passive_pair(size=4096)
    payload = bytes(range(256)) * 20  # 5120 bytes
    payload = payload[:5000]
    peer.sendall(payload)
    # A 4096-byte receive buffer holds 4096 unread bytes (the window stops the rest)
    unread(s, 4096)
    first = s.Rcv(1)
    assert first == (payload[:4096], 0, 0)
    assert s.Rcv(1) == (payload[4096:], 0, 0)


def test_rcv_never_reads_ahead(env) -> None:
    # Data stays in the kernel until Rcv: SIOCINQ sees it, and the window closes.
    s, peer = env.passive_pair(size=4096)
    peer.setblocking(False)
    sent = 0
    chunk = b"z" * 65536
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sent += peer.send(chunk)
        except BlockingIOError:
            break
    else:
        pytest.fail("the peer could send for 10 s: the stream is reading ahead")
    assert 0 < s.Status().amtUnreadData <= sent
    received = 0
    peer.setblocking(True)
    while received < sent:
        data, _u, _m = s.Rcv(5)
        assert 0 < len(data) <= 4096
        received += len(data)
    assert received == sent


@pytest.mark.timeout(20)
def test_rcv_returns_as_soon_as_data_arrives(env) -> None:
    # Acceptance check 11
    s, peer = env.passive_pair()
    got: list[tuple[float, tuple[bytes, int, int]]] = []
    ready = threading.Event()

    def reader() -> None:
        ready.set()
        result = s.Rcv(10)
        got.append((time.monotonic(), result))

    t = threading.Thread(target=reader)
    t.start()
    ready.wait(5)
    time.sleep(0.1)  # the reader is parked in Rcv
    sent_at = time.monotonic()
    peer.sendall(b"ping")
    t.join(10)
    assert got and got[0][1] == (b"ping", 0, 0)
    assert got[0][0] - sent_at < 0.05  # spec: < 10 ms; margin for a loaded machine


@pytest.mark.timeout(20)
def test_rcv_zero_waits_forever(env) -> None:
    s, peer = env.passive_pair()
    timer = threading.Timer(1.0, peer.sendall, (b"late",))
    timer.start()
    start = time.monotonic()
    try:
        assert s.Rcv(0) == (b"late", 0, 0)
    finally:
        timer.cancel()
    assert time.monotonic() - start >= 0.9


def test_v6_peer_close_reports_connection_closing(env) -> None:
    rec = Recorder()
    s, peer = env.passive_pair(asr=rec)
    peer.sendall(b"xyz")
    peer.shutdown(socket.SHUT_WR)
    unread(s, 3)
    assert s.Rcv(1) == (b"xyz", 0, 0)
    rec.wait_for((1, 0))
    for _ in range(3):  # on every call while our side is open
        with pytest.raises(mactcp.error) as info:
            s.Rcv(1)
        assert info.value.args == (-23005, "connectionClosing")
    assert rec.snapshot().count((1, 0)) == 1
    assert (3, 7) not in rec.snapshot()
    s.Close()
    rec.wait_for((3, 7))
    assert rec.snapshot()[-2:] == [(1, 0), (3, 7)]
    with pytest.raises(mactcp.error) as info:
        s.Rcv(1)
    assert info.value.args == (-23005, "connectionClosing")  # once more, the final report
    with pytest.raises(mactcp.error) as info:
        s.Rcv(1)
    assert info.value.args == (-23008, "connectionDoesntExist")  # phase none


def test_v7_close_after_send_waits_for_acknowledgement(env) -> None:
    s, peer = env.active_pair()
    payload = bytes(i % 251 for i in range(3000))
    s.Send(payload)
    s.Close()
    st = s.Status()
    assert st.amtUnackedData == 0
    assert st.connectionState == 12  # FIN-wait-2 while the peer has not closed
    assert recv_all(peer) == payload  # then EOF
    assert s.Close() is None  # already closed locally


@pytest.mark.timeout(30)
def test_close_returns_only_after_a_slow_reader_acknowledged_everything(env) -> None:
    # Acceptance check 13
    s, peer = env.active_pair()
    total = 1024 * 1024
    payload = bytes(i % 253 for i in range(total))
    received = bytearray()
    start_reading = threading.Event()
    sender_done = threading.Event()

    def sender() -> None:
        s.Send(payload)
        s.Close()
        sender_done.set()

    def slow_reader() -> None:
        start_reading.wait(10)
        while True:
            chunk = peer.recv(65536)
            if not chunk:
                break
            received.extend(chunk)
            time.sleep(0.001)

    st = threading.Thread(target=sender)
    rt = threading.Thread(target=slow_reader)
    st.start()
    rt.start()
    # The peer reads nothing: its buffer fills, the data stays unacknowledged, Close waits.
    assert not sender_done.wait(0.3)
    start_reading.set()
    assert sender_done.wait(20)
    # All acknowledged = all in the peer's kernel, read already or still queued there
    # (queue size first: bytes the reader moves meanwhile are then counted twice, never 0).
    queued = _inq(peer)
    assert queued + len(received) >= total
    assert s.Status().amtUnackedData == 0
    rt.join(20)
    assert bytes(received) == payload  # and then EOF


def _inq(sock: socket.socket) -> int:
    import array
    import fcntl

    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), 0x541B, buf, True)
    return buf[0]


@pytest.mark.timeout(20)
def test_close_that_is_never_acknowledged_aborts(env, monkeypatch) -> None:
    from mactcp import _stream

    rec = Recorder()
    s, peer = env.active_pair(asr=rec)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    monkeypatch.setattr(_stream, "ULP_TIMEOUT", 0.5)  # the 60 s limit, shortened
    s.Send(b"w" * 200_000)  # more than the peer's window and our send buffer drain
    start = time.monotonic()
    with pytest.raises(mactcp.error) as info:
        s.Close()
    assert info.value.args == (-23012, "connectionTerminated")
    assert 0.5 <= time.monotonic() - start < 3
    rec.wait_for((3, 5))
    with pytest.raises(ConnectionResetError):
        recv_all(peer)
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        s.Status()


def test_half_close_allows_sending_in_close_wait(env) -> None:
    # Acceptance check 12 and defect 1 (the original refused Send in state 14)
    s, peer = env.passive_pair()
    peer.shutdown(socket.SHUT_WR)
    wait_until(lambda: s.Status().connectionState == 14, 5, "close-wait")
    assert s.Send(b"late") is None
    assert recv_exactly(peer, 4) == b"late"


def test_send_is_refused_after_close_with_the_state_number(env) -> None:
    s, peer = env.active_pair()
    s.Close()
    with pytest.raises(mactcp.error) as info:
        s.Send(b"x")
    assert info.value.args == ("Operation not allowed, connection state=12",)
    peer.close()  # peer's FIN: our side is now fully closed
    with pytest.raises(mactcp.error, match="connectionClosing"):
        s.Rcv(5)
    with pytest.raises(mactcp.error) as info:
        s.Send(b"x")
    assert info.value.args == (-23008, "connectionDoesntExist")


def test_operations_without_a_connection(env) -> None:
    s = env.stream()
    for call in (lambda: s.Send(b"x"), lambda: s.Rcv(1), s.Close, s.Abort, s.Status):
        with pytest.raises(mactcp.error) as info:
            call()
        assert info.value.args == (-23008, "connectionDoesntExist")


def test_v8_abort_resets_the_connection(env) -> None:
    # V8, §5 sequence 4 and acceptance check 14
    rec = Recorder()
    s, peer = env.active_pair(asr=rec)
    s.Send(b"0123456789")
    wait_until(lambda: s.Status().amtUnackedData == 0, 5, "acknowledged")
    assert s.Abort() is None
    rec.wait_for((3, 6))
    assert recv_exactly(peer, 10) == b"0123456789"  # the queued data is still readable
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        s.Rcv(1)
    lsock = env.listener()
    s.ActiveOpen(0, HOST, lsock.getsockname()[1])  # the same stream opens again
    p2, _ = lsock.accept()
    env.sock(p2)
    s.Send(b"again")
    assert recv_exactly(p2, 5) == b"again"


def test_abort_between_two_streams(env) -> None:
    # §5 sequence 4: client aborts; the server gets remaining data, then connectionTerminated
    srec, crec = Recorder(), Recorder()
    server, client = env.stream_pair(srec, crec)
    client.Send(b"last words")
    unread(server, 10)
    client.Abort()
    crec.wait_for((3, 6))
    srec.wait_for((3, 2))
    assert server.Rcv(1) == (b"last words", 0, 0)
    with pytest.raises(mactcp.error) as info:
        server.Rcv(1)
    assert info.value.args == (-23012, "connectionTerminated")
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        server.Rcv(1)


def test_v9_peer_reset(env) -> None:
    rec = Recorder()
    s, peer = env.passive_pair(asr=rec)
    peer.sendall(b"before reset")
    unread(s, 12)
    raw_reset(peer)
    rec.wait_for((3, 2))
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        s.Send(b"x")  # phase ended behaves like none
    assert s.Rcv(1) == (b"before reset", 0, 0)
    with pytest.raises(mactcp.error) as info:
        s.Rcv(1)
    assert info.value.args == (-23012, "connectionTerminated")
    with pytest.raises(mactcp.error) as info:
        s.Rcv(1)
    assert info.value.args == (-23008, "connectionDoesntExist")


def test_reset_while_rcv_waits(env) -> None:
    s, peer = env.passive_pair()
    timer = threading.Timer(0.2, raw_reset, (peer,))
    timer.start()
    with pytest.raises(mactcp.error) as info:
        s.Rcv(10)
    timer.join()
    assert info.value.args == (-23012, "connectionTerminated")


def test_send_to_a_reset_connection_is_terminated(env) -> None:
    s, peer = env.active_pair()
    raw_reset(peer)
    with pytest.raises(mactcp.error) as info:
        for _ in range(100):  # the reset may still be in flight for the first sends
            s.Send(b"x" * 1000)
            time.sleep(0.01)
    assert info.value.args[0] in (-23012, -23008)


def test_abort_from_another_thread_ends_a_blocked_rcv(env) -> None:
    s, peer = env.passive_pair()
    errors: list[tuple[object, ...]] = []

    def reader() -> None:
        try:
            s.Rcv(0)
        except mactcp.error as exc:
            errors.append(exc.args)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    s.Abort()
    t.join(5)
    assert not t.is_alive()
    assert errors == [(-23012, "connectionTerminated")]
    peer.settimeout(5)
    with pytest.raises(ConnectionResetError):
        peer.recv(1)


@pytest.mark.timeout(20)
def test_abort_from_another_thread_ends_a_blocked_send(env) -> None:
    s, _peer = env.active_pair()  # the peer never reads
    errors: list[tuple[object, ...]] = []

    def sender() -> None:
        try:
            s.Send(b"s" * (32 * 1024 * 1024))  # far more than any buffer: blocks
        except mactcp.error as exc:
            errors.append(exc.args)

    t = threading.Thread(target=sender)
    t.start()
    wait_until(lambda: s.Status().amtUnackedData > 0 or not t.is_alive(), 5)
    time.sleep(0.1)
    s.Abort()
    t.join(5)
    assert not t.is_alive()
    assert errors == [(-23012, "connectionTerminated")]


def test_graceful_end_started_by_the_client(env) -> None:
    # §5 sequence 3
    srec, crec = Recorder(), Recorder()
    server, client = env.stream_pair(srec, crec)
    client.Send(b"request")
    client.Close()  # returns after acknowledgement
    assert client.Status().connectionState == 12
    srec.wait_for((4, 0))
    assert server.Rcv(1) == (b"request", 0, 0)
    with pytest.raises(mactcp.error, match="connectionClosing"):
        server.Rcv(1)
    srec.wait_for((1, 0))
    assert server.Status().connectionState == 14
    server.Send(b"response")  # still allowed: close-wait
    assert client.Rcv(1) == (b"response", 0, 0)
    server.Close()
    with pytest.raises(mactcp.error) as info:
        client.Rcv(1)
    assert info.value.args == (-23005, "connectionClosing")
    crec.wait_for((3, 7))
    srec.wait_for((3, 7))
    assert [e for e in crec.snapshot() if e[0] in (1, 3)] == [(1, 0), (3, 7)]
    assert [e for e in srec.snapshot() if e[0] in (1, 3)] == [(1, 0), (3, 7)]
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        client.Rcv(1)  # phase none after its final Rcv error
    with pytest.raises(mactcp.error, match="connectionClosing"):
        server.Rcv(1)  # the server's final report
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        server.Status()


@pytest.mark.timeout(20)
def test_v10_push_sends_without_nagle_delay(env) -> None:
    s, peer = env.active_pair()
    sock = s._s.conn.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # Nagle by default
    for _ in range(3):
        s.Send(b"a", 0, 0)
        start = time.monotonic()
        s.Send(b"b", 1, 0)
        assert recv_exactly(peer, 2) == b"ab"
        # spec: within 5 ms; the Nagle/delayed-ACK wait it prevents is about 40 ms
        assert time.monotonic() - start < 0.03
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # restored


def test_concurrent_sends_are_not_interleaved(env) -> None:
    s, peer = env.active_pair()
    blocks = [bytes([65 + i]) * 200_000 for i in range(4)]
    threads = [threading.Thread(target=s.Send, args=(b,)) for b in blocks]
    received = bytearray()

    def reader() -> None:
        received.extend(recv_all(peer, 20))

    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    s.Close()
    rt.join(20)
    assert len(received) == 800_000
    # each Send's bytes are contiguous on the wire
    runs = [received[i : i + 200_000] for i in range(0, 800_000, 200_000)]
    assert sorted(bytes(r) for r in runs) == sorted(blocks)


def test_graceful_end_is_never_turned_into_a_reset(env) -> None:
    # The socket is released only after both directions ended and all data was read.
    s, peer = env.passive_pair()
    peer.sendall(b"unread for now")
    peer.shutdown(socket.SHUT_WR)
    s.Send(b"reply")
    s.Close()  # both directions closed, but data is still unread: phase ended
    with pytest.raises(mactcp.error, match="connectionDoesntExist"):
        s.Status()
    assert recv_all(peer) == b"reply"  # EOF, not a reset
    assert s.Rcv(1) == (b"unread for now", 0, 0)
    with pytest.raises(mactcp.error, match="connectionClosing"):
        s.Rcv(1)
    peer.settimeout(1)
    assert peer.recv(10) == b""  # still a clean end for the peer


def test_concurrent_rcvs_are_serialised(env) -> None:
    s, peer = env.passive_pair(size=2)
    got: list[bytes] = []
    lock = threading.Lock()

    def reader() -> None:
        for _ in range(5):
            data = s.Rcv(10)[0]
            with lock:
                got.append(data)

    peer.sendall(b"0123456789" * 2)
    unread(s, 20)
    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(b"".join(got)) == sorted(b"0123456789" * 2)  # nothing lost or doubled
    assert all(len(d) == 2 for d in got)
