"""TCP urgent data: real MSG_OOB on the wire, urgent regions and marks in Rcv."""

from __future__ import annotations

import contextlib
import ctypes
import select
import socket
import struct
import threading
import time

import mactcp
import pytest
from conftest import Recorder, recv_exactly, unread, wait_until


def test_v2_urgent_send_is_tcp_urgent_data_for_a_raw_peer(env) -> None:
    s, peer = env.active_pair()
    s.Send(b"HELLO", 0, 1)
    wait_until(lambda: s.Status().amtUnackedData == 0, 5, "acknowledged")
    # a plain Linux peer (no SO_OOBINLINE) sees one out-of-band byte: the last one
    assert recv_exactly(peer, 4) == b"HELL"
    assert recv_oob(peer) == b"O"


def recv_oob(sock: socket.socket) -> bytes:
    """The out-of-band byte, once the kernel reports it (POLLPRI)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLPRI)
    assert poller.poll(5000), "no urgent data arrived"
    sock.setblocking(True)
    return sock.recv(1, socket.MSG_OOB)


class Capture:
    """TCP segments on the loopback interface (AF_PACKET; needs CAP_NET_RAW)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        # Only TCP/IPv4 segments from ``port`` reach the socket (classic BPF), so that the
        # loopback traffic of other tests cannot overflow its buffer.
        prog = [
            (0x28, 0, 0, 12), (0x15, 0, 6, 0x0800),  # ethertype IPv4
            (0x30, 0, 0, 23), (0x15, 0, 4, socket.IPPROTO_TCP),  # protocol TCP
            (0xB1, 0, 0, 14), (0x48, 0, 0, 14), (0x15, 0, 1, port),  # TCP source port
            (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0),
        ]
        code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
        self._filter = ctypes.create_string_buffer(code)
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._filter))
        self.sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
        self.sock.bind(("lo", 0))
        self.sock.settimeout(5)

    def segments(self, until: bytes) -> list[tuple[int, int, bytes]]:
        """(flags, urgent pointer, payload) of segments from ``port`` until ``until`` seen."""
        seen: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame, addr = self.sock.recvfrom(65536)
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # each loopback packet is seen going out and coming in
            ip = frame[14:]
            if ip[9] != socket.IPPROTO_TCP:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:total]
            sport, = struct.unpack("!H", tcp[0:2])
            if sport != self.port:
                continue
            offset = (tcp[12] >> 4) * 4
            flags = tcp[13]
            urp, = struct.unpack("!H", tcp[18:20])
            payload = bytes(tcp[offset:])
            seen.append((flags, urp, payload))
            if until in payload:
                return seen
        raise AssertionError(f"no segment with {until!r}; saw {seen}")

    def close(self) -> None:
        self.sock.close()


def test_v1_v2_wire_segments(env) -> None:
    s, peer = env.active_pair()
    try:
        cap = Capture(s.GetSockName()[1])
    except PermissionError:
        pytest.skip("capturing on lo needs CAP_NET_RAW")
    try:
        s.Send(b"hello", 1)
        segs = cap.segments(b"hello")
        flags, _urp, payload = segs[-1]
        assert payload == bytes.fromhex("68656c6c6f") and not flags & 0x20  # V1: no URG
        assert recv_exactly(peer, 5) == b"hello"
        s.Send(b"HELLO", 0, 1)
        segs = cap.segments(b"HELLO")
        flags, urp, payload = segs[-1]
        assert payload == bytes.fromhex("48454c4c4f")
        assert flags & 0x20  # URG
        assert urp == 5  # the urgent pointer points just past 0x4f
    finally:
        cap.close()


def test_v3_urgent_region_is_returned_first_with_urgent_and_mark(env) -> None:
    rec = Recorder()
    s, peer = env.passive_pair(size=4096, asr=rec)
    peer.sendall(b"abc")
    peer.send(b"XYZ!", socket.MSG_OOB)
    peer.sendall(b"def")
    unread(s, 10)
    rec.wait_for((5, 0))
    assert s.Rcv(1) == (b"abcXYZ!", 1, 1)
    assert s.Rcv(1) == (b"def", 0, 0)
    assert rec.snapshot().count((5, 0)) == 1
    assert set(rec.snapshot()) <= {(32766, 0), (4, 0), (5, 0)}


def test_v4_urgent_pointer_advancing_extends_the_region(env) -> None:
    s, peer = env.passive_pair()
    peer.send(b"1", socket.MSG_OOB)
    peer.send(b"2", socket.MSG_OOB)
    unread(s, 2)
    assert s.Rcv(1) == (b"12", 1, 1)  # nothing lost (a plain socket would drop the "1")
    peer.sendall(b"3")
    assert s.Rcv(1) == (b"3", 0, 0)


def test_urgent_region_longer_than_size_spans_several_rcvs(env) -> None:
    s, peer = env.passive_pair(size=4)
    peer.sendall(b"abc")
    peer.send(b"XYZ!", socket.MSG_OOB)
    peer.sendall(b"def")
    unread(s, 10)
    assert s.Rcv(1) == (b"abcX", 1, 0)  # the first call returning urgent data
    assert s.Rcv(1) == (b"YZ!", 1, 1)  # the last one has the mark
    assert s.Rcv(1) == (b"def", 0, 0)


def test_rcv_never_spans_the_end_of_the_region(env) -> None:
    s, peer = env.passive_pair(size=6)
    peer.sendall(b"abc")
    peer.send(b"XYZ!", socket.MSG_OOB)
    peer.sendall(b"def")
    unread(s, 10)
    assert s.Rcv(1) == (b"abcXYZ", 1, 0)  # size reached just before the urgent byte
    assert s.Rcv(1) == (b"!", 1, 1)  # the urgent byte alone ends the region
    assert s.Rcv(1) == (b"def", 0, 0)


def test_urgent_between_two_streams(env) -> None:
    srec = Recorder()
    server, client = env.stream_pair(server_asr=srec)
    client.Send(b"data")
    client.Send(b"URG", 0, 1)
    client.Send(b"more")
    unread(server, 11)
    srec.wait_for((5, 0))
    assert server.Rcv(1) == (b"dataURG", 1, 1)
    assert server.Rcv(1) == (b"more", 0, 0)
    # and the other way round, several regions, each reported once
    for i in range(3):
        server.Send(b"n%d" % i)
        server.Send(b"u%d" % i, 1, 1)
        unread(client, 4)
        assert client.Rcv(1) == (b"n%du%d" % (i, i), 1, 1)
    assert srec.snapshot().count((5, 0)) == 1


def test_urgent_data_wakes_a_waiting_rcv_and_is_reported(env) -> None:
    # §5 sequence 5 with a Rcv waiting: no (4, 0), but (5, 0)
    rec = Recorder()
    s, peer = env.passive_pair(asr=rec)
    results: list[tuple[bytes, int, int]] = []

    def reader() -> None:
        results.append(s.Rcv(10))

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)  # the reader is parked in Rcv
    peer.send(b"U", socket.MSG_OOB)
    t.join(10)
    assert results == [(b"U", 1, 1)]
    rec.wait_for((5, 0))
    assert rec.snapshot().count((5, 0)) == 1


def test_urgent_data_from_a_peer_with_oobinline(env) -> None:
    # The sending side's options do not matter: urgent is a property of the segments.
    s, peer = env.passive_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    peer.sendall(b"x")
    peer.send(b"!!", socket.MSG_OOB)
    unread(s, 3)
    assert s.Rcv(1) == (b"x!!", 1, 1)


def test_urgent_then_fin(env) -> None:
    rec = Recorder()
    s, peer = env.passive_pair(asr=rec)
    peer.send(b"bye", socket.MSG_OOB)
    peer.shutdown(socket.SHUT_WR)
    unread(s, 3)
    assert s.Rcv(1) == (b"bye", 1, 1)
    with pytest.raises(mactcp.error, match="connectionClosing"):
        s.Rcv(1)
    rec.wait_for((1, 0))
    events = [e for e in rec.snapshot() if e != (4, 0)]
    assert events == [(32766, 0), (5, 0), (1, 0)]


def test_urgent_flags_are_ints(env) -> None:
    s, peer = env.passive_pair()
    peer.send(b"u", socket.MSG_OOB)
    unread(s, 1)
    _data, urgent, mark = s.Rcv(1)
    assert type(urgent) is int and type(mark) is int
    with contextlib.suppress(OSError):
        peer.close()
