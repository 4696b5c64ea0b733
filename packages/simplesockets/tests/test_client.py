"""TCPClient: connect/close/reconnect, autorecv, recv_data, events, errors."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from simplesockets import ReceivedData, SetupError, Socket_Response, TCPClient
from simplesockets._view import SocketView
from ss_helpers import Recorder, cpu_during, eventually, port_of, recv_exactly


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connect_before_setup() -> None:
    with pytest.raises(SetupError, match="Client isn't setup"):
        TCPClient().connect()


def test_connect_refused() -> None:
    """Acceptance 22 (0.4.0: close() then raised OSError)."""
    client = TCPClient()
    client.setup("127.0.0.1", _free_port())
    start = time.monotonic()
    assert client.connect() is False
    assert time.monotonic() - start < 2.0
    assert client.event.exception.occurred and client.event.is_connected is False
    ev, errors = client.await_event(100)
    assert ev == client.EVENT_EXCEPTION
    [error] = errors.values()
    assert isinstance(error.exception, ConnectionRefusedError)
    client.close()  # nothing to close: no error
    assert not client.event.exception.occurred
    assert client.send_data(b"x") is False
    assert isinstance(next(iter(client.return_exceptions().values())).exception, ConnectionError)
    assert client.socket is None


def test_setup_accepts_documented_server_options(make_server) -> None:
    """Acceptance 24."""
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), listen=5, handle_client=None)
    assert client.start() is None
    assert client.Address == ("127.0.0.1", port_of(server))
    assert client.connect() is True
    assert client.connect() is True  # already connected: nothing else happens
    eventually(lambda: len(server.clients) == 1)
    client.autorecv()
    sc = next(iter(server.clients.values()))
    assert server.send_data(b"hi", sc)
    eventually(lambda: client.new_data_recved)
    assert client.event.new_data is True
    assert client.return_recved_data()[0].response == b"hi"
    assert client.new_data_recved is False
    client.close()
    assert len(server.clients) <= 1


def test_close_is_reported_once_on_both_sides(make_server, recorder) -> None:
    """Acceptance 8 (0.4.0 called on_disconnect ~10 000 times per second after close)."""
    server = make_server(on_disconnect=recorder.on_disconnect)
    crec = Recorder()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), on_disconnect=crec.on_disconnect)
    assert client.connect()
    client.autorecv()
    eventually(lambda: server.clients)
    addr = client.socket.getsockname()
    client.close()
    assert crec.named("disconnect") == [("disconnect",)]  # before close() returned
    start = time.monotonic()
    recorder.wait_for("disconnect")
    assert time.monotonic() - start < 0.1 + 0.2
    assert recorder.named("disconnect") == [("disconnect", addr)]
    assert client.event.is_connected is False and client.event.disconnected is True
    client.close()
    client.disconnect()
    client.shutdown()
    assert cpu_during(1.0) < 0.05
    assert len(crec.named("disconnect")) == 1
    events = []
    while True:
        ev, _ = client.await_event(50)
        if ev == client.EVENT_TIMEOUT:
            break
        events.append(ev.name)
    assert events == ["--CONNECTED--", "--DISCONNECT--"]


def test_server_fin_is_a_disconnect(raw_listener, recorder) -> None:
    """0.4.0's receive thread spun on EOF and is_connected stayed True."""
    client = TCPClient()
    client.setup("127.0.0.1", raw_listener.getsockname()[1],
                 on_disconnect=recorder.on_disconnect, on_receive=recorder.on_receive)
    assert client.connect()
    client.autorecv()
    peer, _ = raw_listener.accept()
    peer.sendall(b"last words")
    peer.close()
    recorder.wait_for("disconnect")
    assert [c[0] for c in recorder.calls] == ["receive", "disconnect"]
    assert client.event.is_connected is False and client.event.disconnected is True
    assert client.return_recved_data()[0].response == b"last words"
    assert not client.event.exception.occurred
    assert cpu_during(1.0) < 0.05
    assert len(recorder.named("disconnect")) == 1
    with pytest.raises(ConnectionError):
        client.recv_data()


def test_server_reset_is_recorded(raw_listener, recorder) -> None:
    import struct

    client = TCPClient()
    client.setup("127.0.0.1", raw_listener.getsockname()[1], on_disconnect=recorder.on_disconnect)
    assert client.connect()
    peer, _ = raw_listener.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    recorder.wait_for("disconnect")
    [error] = client.return_exceptions().values()
    assert isinstance(error.exception, ConnectionResetError)
    assert client.send_data(b"x") is False


def test_event_sequence(make_server) -> None:
    """Acceptance 17."""
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server))
    assert client.connect()
    client.autorecv()
    sc = eventually(lambda: list(server.clients.values()))[0]
    assert client.await_event(1000) == (client.EVENT_CONNECTED, None)
    server.send_data(b"item", sc)
    ev, items = client.await_event(1000)
    assert ev == TCPClient.EVENT_RECEIVED and [i.response for i in items] == [b"item"]
    server.disconnect(sc)
    ev, value = client.await_event(1000)
    assert ev == client.EVENT_DISCONNECT and value is None
    assert client.await_event(100)[0] == client.EVENT_TIMEOUT
    with pytest.raises(ValueError):
        client.await_event(-5)


def test_await_event_disable_on_functions(make_server) -> None:
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server))
    assert client.connect()
    client.send_data(12)  # one recorded exception
    ev, errors = client.await_event(1000, disable_on_functions=True)
    assert ev == client.EVENT_EXCEPTION and len(errors) == 1
    client.close()
    assert client.await_event(100, disable_on_functions=True)[0] == client.EVENT_TIMEOUT


def test_autorecv_off_keeps_data_for_recv_data(make_server) -> None:
    """Behaviour sequence 8."""
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server))
    assert client.connect()
    sc = eventually(lambda: list(server.clients.values()))[0]
    server.send_data(b"abc", sc)
    item = client.recv_data()
    assert isinstance(item, Socket_Response)
    assert item[0] is None and item[1] == ("127.0.0.1", port_of(server)) and item[2] == b"abc"
    assert client.recved_data == [] and not client.event.new_data
    server.send_data(b"def", sc)
    server.send_data(b"ghi", sc)
    eventually(lambda: client._session.pending_bytes == 6)
    assert client.recved_data == []
    assert client.autorecv() is True
    data = b"".join(i.response for i in client.return_recved_data())
    assert data == b"defghi"
    # autorecv on: recv_data observes the next chunk, which is recorded too
    threading.Timer(0.05, server.send_data, (b"jkl", sc)).start()
    assert client.recv_data().response == b"jkl"
    assert client.return_recved_data()[0].response == b"jkl"


def test_autorecv_off_socket_view_recv(make_server) -> None:
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server))
    assert client.connect()
    assert isinstance(client.socket, SocketView)
    sc = eventually(lambda: list(server.clients.values()))[0]
    server.send_data(b"abcdef", sc)
    assert client.socket.recv(4) == b"abcd"
    assert client.socket.recv(100) == b"ef"
    client.socket.sendall(b"up")
    eventually(lambda: server.recved_data)
    assert server.return_recved_data()[0].response == b"up"
    server.disconnect(sc)
    with pytest.raises(ConnectionError):
        client.socket.recv(1)
    client.close()


def test_autorecv_off_buffer_is_bounded_and_fin_still_seen(make_server, recorder) -> None:
    """Flow control while nobody reads: at most ~1 MiB held, then TCP holds the sender;
    the server's FIN is still seen once the bytes before it fit."""
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), on_disconnect=recorder.on_disconnect)
    assert client.connect()
    sc = eventually(lambda: list(server.clients.values()))[0]
    payload = os.urandom(4 * 1024 * 1024)
    assert server.send_data(payload, sc)
    eventually(lambda: client._session.paused)
    time.sleep(0.3)
    assert client._session.pending_bytes < 2 * 1024 * 1024
    got = bytearray()
    while len(got) < len(payload):
        got += client.recv_data().response
    assert got == payload
    server.send_data(b"tail", sc)
    server.disconnect(sc)
    recorder.wait_for("disconnect")
    assert client.recv_data().response == b"tail"
    with pytest.raises(ConnectionError):
        client.recv_data()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("toggles", range(1, 11))
def test_autorecv_toggling_never_duplicates_or_loses(make_server, toggles) -> None:
    """Acceptance 21 (0.4.0 started a second reader thread on the same socket)."""
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server))
    assert client.connect()
    sc = eventually(lambda: list(server.clients.values()))[0]
    payload = os.urandom(1_000_000)
    sender = threading.Thread(
        target=lambda: [server.send_data(payload[i:i + 10_000], sc)
                        for i in range(0, len(payload), 10_000)]
    )
    sender.start()
    for _ in range(toggles):
        client.autorecv()
    sender.join(10)
    got = bytearray()
    if not client._autorecv:
        client.autorecv()
    deadline = time.monotonic() + 20
    while len(got) < len(payload) and time.monotonic() < deadline:
        got += b"".join(i.response for i in client.return_recved_data())
        time.sleep(0.001)
    assert bytes(got) == payload
    assert threading.active_count() < 50  # no reader thread per toggle
    client.close()


def test_reconnect(make_server, recorder) -> None:
    server = make_server(on_connect=recorder.on_connect)
    crec = Recorder()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), on_connect=crec.on_connect,
                 on_disconnect=crec.on_disconnect)
    assert client.connect()
    client.autorecv()
    assert client.reconnect() is True
    assert [c[0] for c in crec.calls] == ["connect", "disconnect", "connect"]
    assert client.event.connected and client.event.is_connected
    assert client.event.disconnected is False
    recorder.wait_for("connect", 2)
    assert client._autorecv is True  # kept
    assert client.send_data(b"after")
    eventually(lambda: server.recved_data)
    assert server.return_recved_data()[-1].response == b"after"
    client.close()


def test_on_receive_gets_received_data(make_server) -> None:
    got: list = []
    done = threading.Event()
    server = make_server()

    def on_receive(data):  # type: ignore[no-untyped-def]
        got.append(data)
        done.set()

    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), on_receive=on_receive)
    assert client.connect()
    client.autorecv()
    sc = eventually(lambda: list(server.clients.values()))[0]
    server.send_data(b"cb", sc)
    assert done.wait(5)
    data = got[0]
    assert isinstance(data, ReceivedData) and data == b"cb" and data.decode() == "cb"
    assert data.response == b"cb" and type(data.response) is bytes and data.from_ is None
    client.close()


def test_close_from_inside_callback(make_server) -> None:
    server = make_server()
    order: list = []
    client = TCPClient()

    def on_receive(data):  # type: ignore[no-untyped-def]
        client.close()
        order.append("closed")

    client.setup("127.0.0.1", port_of(server), on_receive=on_receive,
                 on_disconnect=lambda: order.append("disconnect"))
    assert client.connect()
    client.autorecv()
    sc = eventually(lambda: list(server.clients.values()))[0]
    server.send_data(b"x", sc)
    eventually(lambda: len(order) == 2)
    assert order == ["closed", "disconnect"]


def test_context_manager(make_server, recorder) -> None:
    """Acceptance 23 (client part; 0.4.0's __enter__ returned None)."""
    server = make_server()
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), on_disconnect=recorder.on_disconnect)
    with client as c:
        assert c is client and client.event.is_connected and client._autorecv
        sc = eventually(lambda: list(server.clients.values()))[0]
        server.send_data(b"w", sc)
        eventually(lambda: client.recved_data)
    assert recorder.named("disconnect") == [("disconnect",)]
    assert client.event.is_connected is False


def test_client_flow_control_blocks_then_fails_when_gone(raw_listener) -> None:
    """send_data waits while more than 1 MiB is unsent and returns False if the peer goes."""
    client = TCPClient()
    client.setup("127.0.0.1", raw_listener.getsockname()[1])
    assert client.connect()
    peer, _ = raw_listener.accept()
    results: list = []
    chunk = b"x" * 1024 * 1024

    def flood() -> None:
        for _ in range(64):
            ok = client.send_data(chunk)
            results.append(ok)
            if not ok:
                return

    t = threading.Thread(target=flood)
    t.start()
    eventually(lambda: len(results) >= 1)
    time.sleep(0.3)
    blocked_at = len(results)
    assert blocked_at < 64  # it waits for the peer instead of buffering 64 MiB
    assert recv_exactly(peer, 1024) == b"x" * 1024
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()
    t.join(10)
    assert not t.is_alive() and results[-1] is False
    client.close()
