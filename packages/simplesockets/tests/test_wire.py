"""The spec's wire vectors W1-W12, each checked byte for byte against a raw socket peer."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest

from simplesockets import TCPClient
from ss_helpers import eventually, port_of, read_until_eof, recv_exactly


def _items(obj) -> list:  # type: ignore[no-untyped-def]
    return eventually(obj.return_recved_data, what="an item")


def test_w1_client_sends_raw_bytes(raw_listener: socket.socket) -> None:
    client = TCPClient()
    client.setup("127.0.0.1", raw_listener.getsockname()[1])
    assert client.connect()
    peer, _ = raw_listener.accept()
    try:
        assert client.send_data(b"hello") is True
        assert recv_exactly(peer, 5) == bytes.fromhex("68656c6c6f")
        client.close()
        assert read_until_eof(peer) == b""  # W10: FIN, no payload bytes
    finally:
        peer.close()


def test_w1_w2_server_item_and_echo(make_server, raw_peer) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    peer.sendall(bytes.fromhex("68656c6c6f"))
    [item] = _items(server)
    client_socket, address, data = item
    assert data == b"hello" and address == peer.getsockname()
    assert server.send_data(data, client_socket) is True
    assert recv_exactly(peer, 5) == bytes.fromhex("68656c6c6f")


def test_w2_client_receives_raw_item(raw_listener: socket.socket, make_client) -> None:
    client = make_client(raw_listener.getsockname()[1])
    peer, _ = raw_listener.accept()
    with peer:
        peer.sendall(b"hello")
        [item] = _items(client)
        assert item.response == b"hello" and item[2] == b"hello"
        assert item[0] is None and item[1] == ("127.0.0.1", raw_listener.getsockname()[1])


def test_w3_utf8_bytes_unchanged(make_server, raw_peer) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    text = "héllo€".encode()
    assert text == bytes.fromhex("68c3a96c6c6fe282ac")
    peer.sendall(text)
    [item] = _items(server)
    assert item.response == text
    assert server.send_data(item, item.from_)
    assert recv_exactly(peer, len(text)) == text


def test_w4_str_is_refused_on_both_sides(make_server, raw_peer, raw_listener) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    sc = eventually(lambda: list(server.clients.values()))[0]
    assert server.send_data("text", sc) is False
    errors = server.return_exceptions()
    assert [type(e.exception) for e in errors.values()] == [TypeError]

    client = TCPClient()
    client.setup("127.0.0.1", raw_listener.getsockname()[1])
    assert client.connect()
    cpeer, _ = raw_listener.accept()
    with cpeer:
        assert client.send_data("text") is False
        assert [type(e.exception) for e in client.return_exceptions().values()] == [TypeError]
        # nothing went out on either connection
        client.close()
        assert read_until_eof(cpeer) == b""
    server.disconnect(sc)
    assert read_until_eof(peer) == b""


def test_w5_empty_send(make_server, raw_peer, make_client) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    sc = eventually(lambda: list(server.clients.values()))[0]
    assert server.send_data(b"", sc) is True
    assert server.send_data(b"z", sc) is True
    assert recv_exactly(peer, 1) == b"z"  # the empty send put nothing before it
    client = make_client(port_of(server))
    assert client.send_data(b"") is True
    assert not server.event.exception.occurred and not client.event.exception.occurred


def test_w6_back_to_back_sends(make_server, raw_peer) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    peer.sendall(b"one")
    peer.sendall(b"two")
    items: list = []
    while b"".join(i.response for i in items) != b"onetwo":
        items += _items(server)
    assert [i.response for i in items] in ([b"one", b"two"], [b"onetwo"])


@pytest.mark.timeout(60)
def test_w7_full_recv_buffer_is_delivered_at_once(make_server, raw_peer) -> None:
    """0.4.0 waited for more data after a read of exactly recv_buffer bytes; checked 100
    times, once with the documented 1 s pause before the next byte."""
    server = make_server(recv_buffer=2048)
    peer = raw_peer(port_of(server))
    payload = os.urandom(2048)
    for run in range(100):
        start = time.monotonic()
        peer.sendall(payload)
        ev, items = server.await_event(2000)
        latency = time.monotonic() - start
        assert ev == server.EVENT_RECEIVED
        data = b"".join(i.response for i in items)
        while len(data) < 2048:  # loopback may split it; still nothing waits for more
            ev, more = server.await_event(2000)
            assert ev == server.EVENT_RECEIVED
            data += b"".join(i.response for i in more)
        assert data == payload and latency < 0.5, (run, latency)
        if run == 0:
            assert len(items) == 1 and latency < 0.1
            assert server.await_event(1000)[0] == server.EVENT_TIMEOUT  # the 1 s pause
        peer.sendall(b"x")
        ev, items = server.await_event(2000)
        assert [i.response for i in items] == [b"x"]


def test_w8_5000_bytes_one_item(make_server, raw_peer) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    payload = os.urandom(5000)
    peer.sendall(payload)
    items = _items(server)
    data = b"".join(i.response for i in items)
    while len(data) < 5000:
        items += _items(server)
        data = b"".join(i.response for i in items)
    assert data == payload
    assert len(items) == 1  # loopback delivers it in one read


@pytest.mark.timeout(60)
def test_w9_big_burst_split_by_max_item_size(make_server, raw_peer) -> None:
    server = make_server(max_item_size=64 * 1024)
    peer = raw_peer(port_of(server))
    payload = os.urandom(20 * 1024 * 1024)
    peer.sendall(payload)
    got: list[bytes] = []
    total = 0
    while total < len(payload):
        ev, items = server.await_event(10000)
        assert ev == server.EVENT_RECEIVED
        for item in items:
            assert 0 < len(item.response) <= 64 * 1024
            got.append(item.response)
            total += len(item.response)
    assert b"".join(got) == payload


def test_w9_default_max_item_size_is_16_mib(make_server, raw_peer) -> None:
    server = make_server()
    assert server._max_item_size == 16 * 1024 * 1024
    peer = raw_peer(port_of(server))
    payload = os.urandom(3 * 1024 * 1024)
    peer.sendall(payload)
    got = b""
    while len(got) < len(payload):
        ev, items = server.await_event(10000)
        assert ev == server.EVENT_RECEIVED
        assert all(0 < len(i.response) <= 16 * 1024 * 1024 for i in items)
        got += b"".join(i.response for i in items)
    assert got == payload


def test_w10_client_close_sends_fin_and_server_answers(make_server, recorder) -> None:
    server = make_server(on_disconnect=recorder.on_disconnect)
    # a raw "client" observes what the polysock server answers to its FIN
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    with sock:
        eventually(lambda: server.clients)
        sock.shutdown(socket.SHUT_WR)
        assert read_until_eof(sock) == b""  # the server answers with FIN, no payload
        recorder.wait_for("disconnect")


def test_w11_refused_client_gets_handshake_then_fin(make_server, raw_peer, recorder) -> None:
    server = make_server(max_connections=1, on_connect=recorder.on_connect)
    first = raw_peer(port_of(server))
    recorder.wait_for("connect")
    second = raw_peer(port_of(server))  # the TCP handshake completes
    start = time.monotonic()
    assert read_until_eof(second) == b""
    assert time.monotonic() - start < 1.0
    assert len(recorder.named("connect")) == 1
    first.sendall(b"still served")
    assert _items(server)[0].response == b"still served"


def test_w12_idle_pair_sends_nothing(make_server, make_client) -> None:
    server = make_server()
    client = make_client(port_of(server))
    eventually(lambda: server.clients)
    sc = next(iter(server.clients.values()))
    # no keep-alive, greeting or handshake: nothing is readable on either side
    assert server.await_event(1000)[0] == server.EVENT_TIMEOUT
    assert client.await_event(50, disable_on_functions=True)[0] == client.EVENT_TIMEOUT
    assert server.recved_data == [] and client.recved_data == []
    assert sc.socket.fileno() > 0


def test_reset_linger(make_server, raw_peer, recorder) -> None:
    """Helper check of the raw peer's abort (used by the reset tests)."""
    server = make_server(on_disconnect=recorder.on_disconnect)
    peer = raw_peer(port_of(server))
    eventually(lambda: server.clients)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    recorder.wait_for("disconnect")
    errors = server.return_exceptions()
    assert [type(e.exception) for e in errors.values()] == [ConnectionResetError]


@pytest.mark.timeout(90)
def test_random_stream_is_delivered_exactly(make_server, raw_peer) -> None:
    """Acceptance 5: 10 000 random-length chunks with pauses arrive exactly."""
    server = make_server()
    peer = raw_peer(port_of(server))
    rng = random.Random(1234)
    sent = bytearray()
    got = bytearray()
    for i in range(10_000):
        chunk = rng.randbytes(rng.randint(1, 5000))
        peer.sendall(chunk)
        sent += chunk
        if i % 500 == 0:
            time.sleep(rng.random() / 100)
        if i % 100 == 0:
            for item in server.return_recved_data():
                assert 0 < len(item.response) <= 16 * 1024 * 1024
                got += item.response
    while len(got) < len(sent):
        ev, items = server.await_event(5000)
        assert ev == server.EVENT_RECEIVED
        for item in items:
            assert len(item.response) > 0
            got += item.response
    assert got == sent
