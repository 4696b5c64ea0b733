"""Captured-bytes conformance: every test vector of the spec (section 4), replayed from a raw
socket peer, in both directions and on both sides (TCPServer and TCPClient).

Sending vectors (S1-S10): the polysock side makes the call, the raw peer asserts the exact
bytes. Receiving vectors (R1-R11): the raw peer writes the exact bytes (``|`` = separate
writes with a pause), the polysock side must produce exactly the listed callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import (
    RawServer,
    Recorder,
    assert_silent,
    raw_connect,
    recv_exactly,
    recv_until_eof,
)

from tcpcom import TCPClient, TCPServer

pytestmark = pytest.mark.timeout(60)

PAUSE = 0.06  # between the writes of one vector ("|" in the spec: >= 50 ms)


@dataclass
class Peer:
    """One polysock endpoint wired to one raw socket."""

    side: str
    endpoint: Any  # TCPServer or TCPClient
    rec: Recorder
    raw: socket.socket
    setup: int  # callbacks that belong to connection set-up
    end: tuple[str, str]  # the callback that reports the end of this connection

    def after_setup(self) -> list[tuple[str, str]]:
        return self.rec.snapshot()[self.setup :]

    def wait_after_setup(self, n: int, timeout: float = 5.0) -> list[tuple[str, str]]:
        self.rec.wait_count(self.setup + n, timeout)
        return self.after_setup()


@contextmanager
def server_peer(**options: Any) -> Iterator[Peer]:
    rec = Recorder("server")
    srv = TCPServer(0, rec, **options)
    raw = raw_connect(srv.port)
    try:
        rec.wait_count(2)
        assert rec.snapshot() == [("LISTENING", str(srv.port)), ("CONNECTED", "127.0.0.1")]
        yield Peer("server", srv, rec, raw, 2, ("LISTENING", str(srv.port)))
    finally:
        raw.close()
        srv.terminate()


@contextmanager
def client_peer(**options: Any) -> Iterator[Peer]:
    raw_server = RawServer()
    rec = Recorder("client")
    client = TCPClient("127.0.0.1", raw_server.port, rec, **options)
    try:
        assert client.connect(5) is True
        raw = raw_server.accept()
        target = f"127.0.0.1:{raw_server.port}"
        assert rec.snapshot() == [("CONNECTING", target), ("CONNECTED", target)]
        yield Peer("client", client, rec, raw, 2, ("DISCONNECTED", ""))
    finally:
        client.disconnect()
        raw_server.close()


@contextmanager
def peer(side: str, **options: Any) -> Iterator[Peer]:
    make = server_peer if side == "server" else client_peer
    with make(**options) as p:
        yield p


SIDES = ["server", "client"]


# ====================================================================== sending (4.1)

SEND_VECTORS = [
    ("S1", ["hello"], "68 65 6c 6c 6f 00"),
    ("S2", ["one", "two"], "6f 6e 65 00 74 77 6f 00"),
    ("S3", ["héllo€"], "68 c3 a9 6c 6c 6f e2 82 ac 00"),
    ("S4", [""], "00"),
    ("S7", [b"\x01\x02"], "01 02 00"),
]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("vector", "calls", "wire"), SEND_VECTORS, ids=[v[0] for v in SEND_VECTORS]
)
def test_send_vectors(side: str, vector: str, calls: list[Any], wire: str) -> None:
    expected = bytes.fromhex(wire)
    with peer(side) as p:
        for msg in calls:
            assert p.endpoint.sendMessage(msg) is None
        assert recv_exactly(p.raw, len(expected)) == expected
        assert_silent(p.raw, 0.1)  # nothing but the vector's bytes


@pytest.mark.parametrize("side", SIDES)
def test_s5_request_reply_bytes_both_ways(side: str, raw_server: RawServer) -> None:
    ping, echo = bytes.fromhex("70 69 6e 67 00"), bytes.fromhex("65 63 68 6f 3a 70 69 6e 67 00")
    if side == "client":
        rec = Recorder("client")
        client = TCPClient("127.0.0.1", raw_server.port, rec)
        assert client.connect()
        raw = raw_server.accept()
        results: list[Any] = []
        t = threading.Thread(target=lambda: results.append(client.sendMessage("ping", 2)))
        t.start()
        assert recv_exactly(raw, 5) == ping
        raw.sendall(echo)
        t.join(5)
        assert results == ["echo:ping"]
        rec.wait_event("MESSAGE", "echo:ping")
        client.disconnect()
        assert rec.messages() == ["echo:ping"]
    else:

        def echo_back(state: str, msg: str) -> None:
            if state == "MESSAGE":
                srv.sendMessage("echo:" + msg)

        srv = TCPServer(0, Recorder("server", echo_back))
        raw = raw_connect(srv.port)
        try:
            raw.sendall(ping)
            assert recv_exactly(raw, len(echo)) == echo
            assert_silent(raw, 0.1)
        finally:
            raw.close()
            srv.terminate()


def test_s6_welcome_sent_inside_the_connected_callback() -> None:
    def greet(state: str, msg: str) -> None:
        if state == "CONNECTED":
            srv.sendMessage("welcome")

    srv = TCPServer(0, Recorder("server", greet))
    raw = raw_connect(srv.port)
    try:
        assert recv_exactly(raw, 8) == bytes.fromhex("77 65 6c 63 6f 6d 65 00")
        assert_silent(raw, 0.1)
    finally:
        raw.close()
        srv.terminate()


@pytest.mark.parametrize("side", SIDES)
def test_s8_custom_end_of_block(side: str) -> None:
    with peer(side, endOfBlock="\n") as p:
        p.endpoint.sendMessage("x")
        assert recv_exactly(p.raw, 2) == bytes.fromhex("78 0a")
        assert_silent(p.raw, 0.1)


def test_s9_server_side_refusal_is_handshake_no_bytes_fin() -> None:
    with server_peer() as p:
        refused = raw_connect(p.endpoint.port)  # the TCP handshake completes
        try:
            t0 = time.monotonic()
            assert recv_until_eof(refused, 2.0) == b""  # 0 bytes, then FIN
            assert time.monotonic() - t0 < 1.0
        finally:
            refused.close()
        p.raw.sendall(b"still here\0")
        p.rec.wait_event("MESSAGE", "still here")
        assert p.after_setup() == [("MESSAGE", "still here")]  # no callback for the refused


def test_s9_client_side_sees_accept_and_close_as_occupied(raw_server: RawServer) -> None:
    rec = Recorder("client")
    client = TCPClient("127.0.0.1", raw_server.port, rec)
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(client.connect(5)))
    t.start()
    conn = raw_server.accept()
    conn.shutdown(socket.SHUT_RDWR)  # handshake done, 0 bytes, FIN: what a tcpcom server does
    t.join(5)
    assert results == [False]
    target = f"127.0.0.1:{raw_server.port}"
    assert rec.snapshot() == [("CONNECTING", target), ("SERVER_OCCUPIED", target)]
    assert recv_until_eof(conn, 2.0) == b""  # the client closed too, sending nothing


@pytest.mark.parametrize("side", SIDES)
def test_s10_disconnect_is_fin_then_fin_no_payload(side: str) -> None:
    with peer(side) as p:
        p.endpoint.disconnect()
        assert recv_until_eof(p.raw, 2.0) == b""  # FIN from the polysock side, no bytes
        p.raw.shutdown(socket.SHUT_WR)  # the other side answers with its FIN
        assert p.after_setup() == [p.end]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.timeout(20)
def test_idle_connection_carries_zero_bytes(side: str) -> None:
    with peer(side) as p:
        assert_silent(p.raw, 1.0)  # no greeting, no keep-alive: nothing during 1 s
        assert p.endpoint.isConnected()


# ====================================================================== receiving (4.2)

RECEIVE_VECTORS = [
    ("R1", ["68 65 6c", "6c 6f 00"], ["hello"]),
    ("R2", ["61 00 62", "63 00"], ["a", "bc"]),
    ("R3", ["6f 6e 65 00 74 77 6f 00"], ["one", "two"]),
    ("R4", ["00"], [""]),
    ("R5", ["61 00 00 62 00"], ["a", "", "b"]),
    ("R6", ["c3", "a9 00"], ["é"]),
    ("R7", ["ff 00"], ["\ufffd"]),
    ("R9", ["61" * 5000 + "00"], ["a" * 5000]),
]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("vector", "writes", "expected"), RECEIVE_VECTORS, ids=[v[0] for v in RECEIVE_VECTORS]
)
def test_receive_vectors(side: str, vector: str, writes: list[str], expected: list[str]) -> None:
    with peer(side) as p:
        for i, chunk in enumerate(writes):
            if i:
                time.sleep(PAUSE)  # the vector's "|": a separate TCP write
            p.raw.sendall(bytes.fromhex(chunk))
        events = p.wait_after_setup(len(expected))
        assert events == [("MESSAGE", m) for m in expected]
        # Nothing more, and the connection is still up (R7: invalid UTF-8 never drops it).
        p.raw.sendall(b"after\0")
        p.rec.wait_event("MESSAGE", "after")
        assert p.after_setup() == [("MESSAGE", m) for m in [*expected, "after"]]
        assert p.endpoint.isConnected()


@pytest.mark.parametrize("side", SIDES)
def test_r1_r2_messages_are_delivered_when_their_terminator_arrives(side: str) -> None:
    with peer(side) as p:
        # R2: "a" must arrive before the peer writes anything more (the original held it
        # back until a read happened to end with NUL).
        p.raw.sendall(bytes.fromhex("61 00 62"))
        t0 = time.monotonic()
        delivered = p.rec.wait_event("MESSAGE", "a", timeout=2.0)
        assert delivered - t0 < 0.5
        p.raw.sendall(bytes.fromhex("63 00"))
        p.rec.wait_event("MESSAGE", "bc")
        # R1: "hello" is not delivered before its terminator.
        p.raw.sendall(bytes.fromhex("68 65 6c"))
        assert not p.rec.wait_for(lambda ev: len(ev) > p.setup + 2, timeout=0.2)
        p.raw.sendall(bytes.fromhex("6c 6f 00"))
        p.rec.wait_event("MESSAGE", "hello")
        assert p.after_setup() == [("MESSAGE", "a"), ("MESSAGE", "bc"), ("MESSAGE", "hello")]


@pytest.mark.parametrize("side", SIDES)
def test_r8_complete_messages_delivered_at_close_tail_discarded(side: str) -> None:
    with peer(side) as p:
        p.raw.sendall(bytes.fromhex("ff 00 fe 41 00 41"))
        time.sleep(PAUSE)
        p.raw.sendall(bytes.fromhex("78 00 79"))
        time.sleep(PAUSE)
        p.raw.shutdown(socket.SHUT_WR)  # FIN
        events = p.wait_after_setup(4)
        assert events == [
            ("MESSAGE", "\ufffd"),
            ("MESSAGE", "\ufffdA"),
            ("MESSAGE", "Ax"),
            p.end,
        ]
        assert not p.endpoint.isConnected()
        assert recv_until_eof(p.raw, 2.0) == b""  # polysock closes in turn, sends nothing
        assert not p.rec.wait_for(lambda ev: len(ev) > p.setup + 4, timeout=0.1)


@pytest.mark.parametrize("side", SIDES)
def test_r10_custom_end_of_block(side: str) -> None:
    with peer(side, endOfBlock="\n") as p:
        p.raw.sendall(bytes.fromhex("61 0a 62 0a"))
        assert p.wait_after_setup(2) == [("MESSAGE", "a"), ("MESSAGE", "b")]
        p.raw.sendall(b"c\0d\n")  # NUL is ordinary data with another end-of-block
        p.rec.wait_event("MESSAGE", "c\0d")


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.timeout(60)
def test_r11_oversized_message_closes_only_that_connection(
    side: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="polysock.tcpcom")
    with peer(side) as p:
        p.raw.sendall(b"ok\0")
        p.rec.wait_event("MESSAGE", "ok")
        with contextlib.suppress(OSError):  # closed by polysock while still writing: fine
            p.raw.sendall(b"x" * (16 * 1024 * 1024 + 1))
        assert p.wait_after_setup(2, timeout=15.0) == [("MESSAGE", "ok"), p.end]
        assert not p.endpoint.isConnected()
        assert any(
            "message exceeds maxMessageSize (16777216 bytes); closing connection" in r.message
            for r in caplog.records
            if r.name == "polysock.tcpcom"
        )
        # the connection really is closed: the peer sees EOF (or a reset)
        try:
            tail = recv_until_eof(p.raw, 5.0)
        except ConnectionResetError:
            tail = b""
        assert tail == b""


@pytest.mark.parametrize("side", SIDES)
def test_split_utf8_at_every_byte_yields_one_message(side: str) -> None:
    stream = bytes.fromhex("68 c3 a9 6c 6c 6f e2 82 ac 00")
    with peer(side) as p:
        for i in range(1, len(stream)):
            p.raw.sendall(stream[:i])
            time.sleep(PAUSE)
            p.raw.sendall(stream[i:])
            p.wait_after_setup(i)
        assert p.after_setup() == [("MESSAGE", "héllo€")] * (len(stream) - 1)
        assert p.endpoint.isConnected()


@pytest.mark.parametrize("side", SIDES)
def test_end_of_block_inside_a_message_is_sent_unchanged(side: str) -> None:
    # No escaping, as the original: the receiver sees two messages.
    with peer(side) as p:
        p.endpoint.sendMessage("a\0b")
        assert recv_exactly(p.raw, 4) == bytes.fromhex("61 00 62 00")
        p.raw.sendall(bytes.fromhex("61 00 62 00"))
        assert p.wait_after_setup(2) == [("MESSAGE", "a"), ("MESSAGE", "b")]
