"""TCPServer: callbacks, disconnects, accept control, limits, items, events, exceptions."""

from __future__ import annotations

import datetime
import socket
import struct
import threading
import time

import pytest

from simplesockets import (
    Better_Exception,
    ReceivedData,
    Server_Client,
    SetupError,
    Socket_Response,
    TCPClient,
    TCPServer,
)
from simplesockets._view import SocketView
from ss_helpers import Recorder, cpu_during, eventually, port_of, read_until_eof, recv_exactly


def _client_of(server: TCPServer) -> Server_Client:
    return eventually(lambda: list(server.clients.values()))[0]


# ------------------------------------------------------------------ lifecycle


def test_setup_errors() -> None:
    server = TCPServer()
    with pytest.raises(SetupError, match="Server isn't setup"):
        server.start()
    with pytest.raises(SetupError), server:
        pass
    server.setup(port=0)
    try:
        with pytest.raises(SetupError, match="Server is already setup"):
            server.setup(port=0)
    finally:
        server.close()
    with pytest.raises(SetupError, match="Server is closed"):
        server.start()
    with pytest.raises(ValueError):
        TCPServer(-1)


def test_setup_bind_error_is_oserror(make_server) -> None:
    first = make_server()
    second = TCPServer()
    with pytest.raises(OSError):
        second.setup(port=port_of(first))
    second.setup(port=0)  # a failed setup can be retried
    second.close()


def test_defaults_and_socket() -> None:
    server = TCPServer()
    assert server.max_connections is None and server.socket is None
    assert server.event.accepting_thread.run is True
    server.setup(port=0)
    try:
        assert server.socket.getsockname()[0] == "127.0.0.1"
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert server.killed == False  # noqa: E712 - the documented comparison
        assert server.killed() is False
    finally:
        server.close()


def test_accepting_starts_at_setup(make_server, recorder) -> None:
    server = make_server(on_connect=recorder.on_connect)
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        [(_, addr)] = recorder.wait_for("connect")
        assert addr == sock.getsockname()


# ------------------------------------------------------------------ callbacks


def test_callbacks_in_order_for_a_peer_that_closes(make_server, recorder) -> None:
    """Acceptance 6 (the 0.4.0 EOF spin): FIN is a disconnect, callbacks exactly once."""
    server = make_server(
        on_connect=recorder.on_connect,
        on_receive=recorder.on_receive,
        on_disconnect=recorder.on_disconnect,
    )
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    addr = sock.getsockname()
    sock.sendall(b"abc")
    sock.close()
    recorder.wait_for("disconnect")
    start = time.monotonic()
    eventually(lambda: addr not in server.clients, 0.5)
    assert time.monotonic() - start < 0.1
    assert [c[0] for c in recorder.calls] == ["connect", "receive", "disconnect"]
    _, client_socket, address, data = recorder.calls[1]
    assert isinstance(client_socket, Server_Client) and address == addr and data == b"abc"
    assert isinstance(data, ReceivedData)
    assert recorder.calls[0] == ("connect", addr) and recorder.calls[2] == ("disconnect", addr)
    assert not server.event.exception.occurred  # a clean FIN is not an error
    assert cpu_during(2.0) < 0.05
    assert len(recorder.named("disconnect")) == 1


def test_callbacks_never_on_the_loop_thread(make_server, recorder) -> None:
    server = make_server(on_connect=recorder.on_connect, on_receive=recorder.on_receive)
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"x")
        recorder.wait_for("receive")
    assert all(t.name != "polysock-loop" for t in recorder.threads)
    assert all(t is not threading.current_thread() for t in recorder.threads)


def test_peer_reset_is_a_disconnect_with_a_recorded_error(make_server, recorder) -> None:
    """Acceptance 7."""
    server = make_server(
        on_connect=recorder.on_connect,
        on_receive=recorder.on_receive,
        on_disconnect=recorder.on_disconnect,
    )
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    addr = sock.getsockname()
    sock.sendall(b"abc")
    recorder.wait_for("receive")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    recorder.wait_for("disconnect")
    assert [c[0] for c in recorder.calls] == ["connect", "receive", "disconnect"]
    eventually(lambda: addr not in server.clients)
    errors = list(server.return_exceptions().values())
    assert [type(e.exception) for e in errors] == [ConnectionResetError]
    assert isinstance(errors[0], Better_Exception) and "ConnectionResetError" in str(errors[0])
    assert cpu_during(1.0) < 0.05


def test_callback_exception_is_recorded_and_connection_continues(make_server, recorder) -> None:
    """Acceptance 19 (0.4.0: the per-client loop died)."""
    seen = []

    def on_receive(client, addr, data):  # type: ignore[no-untyped-def]
        seen.append(bytes(data))
        if len(seen) == 1:
            raise RuntimeError("boom")
        recorder.add("receive", data)

    server = make_server(on_receive=on_receive)
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"first")
        eventually(lambda: server.event.exception.occurred)
        sock.sendall(b"second")
        recorder.wait_for("receive")
    assert seen == [b"first", b"second"]
    [error] = server.return_exceptions().values()
    assert isinstance(error.exception, RuntimeError) and "boom" in error.traceback


def test_on_receive_arity(make_server) -> None:
    """Acceptance 20: two parameters get 0.4.0's (Server_Client, Socket_Response)."""
    got2: list = []
    got3: list = []
    done = threading.Event()

    def two(client, response):  # type: ignore[no-untyped-def]
        got2.append((client, response))
        done.set()

    server = make_server(on_receive=two)
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"two")
        assert done.wait(5)
        client, response = got2[0]
        assert isinstance(client, Server_Client) and isinstance(response, Socket_Response)
        assert response.response == b"two" and response.from_ is client
        done.clear()

        class Handler:
            def on_receive(self, client, addr, data):  # type: ignore[no-untyped-def]
                got3.append((client, addr, data))
                done.set()

        server.on_receive = Handler().on_receive  # writable attribute, bound method
        sock.sendall(b"three")
        assert done.wait(5)
        client3, addr, data = got3[0]
        assert client3 is client and addr == sock.getsockname() and data == b"three"


def test_on_connect_gets_the_address_and_clients_has_it(make_server) -> None:
    seen: list = []
    ready = threading.Event()
    server = TCPServer()

    def on_connect(address):  # type: ignore[no-untyped-def]
        seen.append((address, server.clients.get(address)))
        ready.set()

    server.setup(port=0, on_connect=on_connect)
    try:
        with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
            assert ready.wait(5)
            address, client = seen[0]
            assert address == sock.getsockname() and isinstance(client, Server_Client)
            assert client.address == address
            assert str(client) == f"Server_Client(address={address!r})"
    finally:
        server.close()


@pytest.mark.timeout(30)
def test_slow_callback_does_not_delay_other_clients(make_server) -> None:
    """Acceptance 27: one client's slow on_receive neither delays another client's nor
    overlaps with its own next call."""
    active: dict = {}
    overlaps: list = []
    b_seen = threading.Event()
    b_time: list[float] = []
    lock = threading.Lock()

    def on_receive(client, addr, data):  # type: ignore[no-untyped-def]
        with lock:
            if active.get(addr):
                overlaps.append(addr)
            active[addr] = True
        try:
            if data.startswith(b"A"):
                time.sleep(1.0)
            else:
                b_time.append(time.monotonic())
                b_seen.set()
        finally:
            with lock:
                active[addr] = False

    server = make_server(on_receive=on_receive)
    a = socket.create_connection(("127.0.0.1", port_of(server)))
    b = socket.create_connection(("127.0.0.1", port_of(server)))
    with a, b:
        eventually(lambda: len(server.clients) == 2)
        a.sendall(b"A1")
        eventually(lambda: active.get(a.getsockname()))
        a.sendall(b"A2")
        sent = time.monotonic()
        b.sendall(b"B")
        assert b_seen.wait(5)
        assert b_time[0] - sent < 0.05 + 0.1  # 50 ms, plus slack for a loaded machine
        eventually(lambda: len([i for i in server.recved_data if i[1] == a.getsockname()]) == 2)
        eventually(lambda: not active.get(a.getsockname()), 5)
    assert overlaps == []


# ------------------------------------------------------------------ disconnect


@pytest.mark.parametrize("how", ["address", "client", "socket_view"])
def test_disconnect_targets(make_server, make_client, recorder, how) -> None:
    """Acceptance 9 (0.4.0: address only, KeyError race on a second call)."""
    server = make_server(on_disconnect=recorder.on_disconnect)
    client_rec = Recorder()
    client = make_client(port_of(server), on_disconnect=client_rec.on_disconnect)
    sc = _client_of(server)
    target = {"address": sc.address, "client": sc, "socket_view": sc.socket}[how]
    assert server.disconnect(target) is True
    # on_disconnect has run when disconnect() returns
    assert recorder.named("disconnect") == [("disconnect", sc.address)]
    assert sc.address not in server.clients
    assert server.disconnect(target) is False
    [error] = server.return_exceptions().values()
    assert isinstance(error.exception, KeyError)
    client_rec.wait_for("disconnect")
    assert client.send_data(b"x") is False
    assert client.event.exception.occurred
    assert isinstance(next(iter(client.return_exceptions().values())).exception, ConnectionError)
    time.sleep(0.2)  # any duplicate callback would show up now
    assert len(client_rec.named("disconnect")) == 1 and len(recorder.named("disconnect")) == 1


def test_disconnect_unknown_target(make_server) -> None:
    server = make_server()
    assert server.disconnect(("10.1.2.3", 4)) is False
    assert server.disconnect("nonsense") is False
    errors = list(server.return_exceptions().values())
    assert [type(e.exception) for e in errors] == [KeyError, KeyError]


def test_send_then_disconnect_delivers_everything(make_server, raw_peer) -> None:
    """The seed's echo server calls send_data and disconnect back to back."""
    server = make_server()
    peer = raw_peer(port_of(server))
    sc = _client_of(server)
    payload = bytes(range(256)) * 4096  # 1 MiB
    assert server.send_data(payload, sc)
    assert server.disconnect(sc)
    assert read_until_eof(peer, 10) == payload


def test_disconnect_from_inside_a_callback_does_not_deadlock(make_server, recorder) -> None:
    server = TCPServer()

    def on_receive(client, addr, data):  # type: ignore[no-untyped-def]
        server.send_data(data, client)
        recorder.add("result", server.disconnect(client))

    server.setup(port=0, on_receive=on_receive, on_disconnect=recorder.on_disconnect)
    try:
        with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
            sock.sendall(b"bye")
            assert read_until_eof(sock) == b"bye"
        assert recorder.wait_for("result") == [("result", True)]
        recorder.wait_for("disconnect")
        assert [c[0] for c in recorder.calls] == ["result", "disconnect"]
    finally:
        server.close()


def test_server_client_object_api(make_server, raw_peer) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    sc = _client_of(server)
    assert sc.key is None and sc.cipher is None and sc.thread is None
    assert sc[0] is None and isinstance(sc[1], SocketView)
    _thread, view = sc
    assert view is sc.socket and sc.recv_buffer == 2048
    assert view.getpeername() == peer.getsockname() and view.getsockname() == peer.getpeername()
    assert view.send(b"ab") == 2
    assert view.sendall(b"cd") is None
    sc.send(b"ef")
    assert recv_exactly(peer, 6) == b"abcdef"
    with pytest.raises(OSError):
        view.recv(10)  # the server reads itself in default mode
    # recv_data observes the *next* chunk (which is still recorded as usual)
    observed: list = []
    watcher = threading.Thread(target=lambda: observed.append(server.recv_data(sc)))
    watcher.start()
    eventually(lambda: sc._observers)
    peer.sendall(b"obs")
    watcher.join(5)
    assert observed[0].response == b"obs" and observed[0].from_ is sc
    eventually(lambda: server.recved_data)
    assert server.return_recved_data()[0].response == b"obs"
    other = raw_peer(port_of(server))
    sc2 = eventually(lambda: [c for c in server.clients.values() if c is not sc])[0]
    assert sc2.address == other.getsockname()
    assert sc != sc2 and len({sc, sc2, sc}) == 2  # equal and hashed by identity
    sc.close()
    sc.close()  # idempotent
    assert read_until_eof(peer) == b""
    with pytest.raises(ConnectionError):
        sc.send(b"late")
    with pytest.raises(ConnectionError):
        server.recv_data(sc)
    assert not server.event.exception.occurred  # close() is idempotent without errors


def test_send_data_failures_are_recorded_never_raised(make_server, raw_peer) -> None:
    server = make_server()
    peer = raw_peer(port_of(server))
    sc = _client_of(server)
    assert server.send_data(b"x", ("127.0.0.1", 1)) is False
    assert server.send_data(12345, sc) is False
    peer.close()
    eventually(lambda: not server.clients)
    assert server.send_data(b"x", sc) is False
    kinds = [type(e.exception) for e in server.return_exceptions().values()]
    assert kinds[0] is KeyError and kinds[1] is TypeError and issubclass(kinds[2], ConnectionError)
    assert server.send_data(Socket_Response(b"resp"), sc) is False  # still gone


# ------------------------------------------------------------------ max_connections


def test_max_connections_accept_and_close(make_server, recorder) -> None:
    """Acceptance 10 (0.4.0 ignored the limit)."""
    server = make_server(
        max_connections=1, on_connect=recorder.on_connect, on_disconnect=recorder.on_disconnect
    )
    port = port_of(server)
    a = socket.create_connection(("127.0.0.1", port))
    recorder.wait_for("connect")
    b = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    assert read_until_eof(b) == b""
    assert time.monotonic() - start < 0.1 + 0.2
    b.close()
    assert server.event.accepting_thread.run is True
    a.close()
    recorder.wait_for("disconnect")
    c = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    with c:
        calls = recorder.wait_for("connect", 2)
        assert time.monotonic() - start < 0.1 + 0.2
        assert calls[1] == ("connect", c.getsockname())
    assert len(recorder.named("connect")) == 2
    assert server.event.accepting_thread.run is True
    assert not server.event.exception.occurred and server.recved_data == []


def test_max_connections_zero_and_attribute(make_server, recorder) -> None:
    server = make_server(max_connections=0, on_connect=recorder.on_connect)
    with socket.create_connection(("127.0.0.1", port_of(server))) as s:
        assert read_until_eof(s) == b""
    server.max_connections = None
    with socket.create_connection(("127.0.0.1", port_of(server))):
        recorder.wait_for("connect")


# ------------------------------------------------------------------ accept control


def test_stop_pauses_at_once_and_start_resumes(make_server, recorder) -> None:
    """Acceptance 11 (0.4.0 accepted one more client after stop(), then spun)."""
    server = make_server(on_connect=recorder.on_connect)
    port = port_of(server)
    server.stop()
    assert server.event.accepting_thread.run is False
    d = socket.create_connection(("127.0.0.1", port))  # the kernel completes the handshake
    with d:
        assert cpu_during(1.0) < 0.05
        assert recorder.named("connect") == []
        start = time.monotonic()
        server.start()
        recorder.wait_for("connect")
        assert time.monotonic() - start < 0.1 + 0.2
        assert server.event.accepting_thread.run is True
        # the same through the documented flag
        server.event.accepting_thread.run = False
        e = socket.create_connection(("127.0.0.1", port))
        with e:
            assert recorder.wait_for("connect") and len(recorder.named("connect")) == 1
            threading.Event().wait(0.5)
            assert len(recorder.named("connect")) == 1
            server.event.accepting_thread.run = True
            recorder.wait_for("connect", 2)


def test_exit_accept_and_restart(make_server, recorder) -> None:
    """Acceptance 12."""
    server = make_server(on_connect=recorder.on_connect)
    port = port_of(server)
    existing = socket.create_connection(("127.0.0.1", port))
    recorder.wait_for("connect")
    server.exit_accept()
    assert server.killed and server.killed() is True and server.killed == True  # noqa: E712
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    existing.sendall(b"still here")
    [item] = eventually(server.return_recved_data)
    assert server.send_data(item, item.from_)
    assert recv_exactly(existing, 10) == b"still here"
    server.restart()
    assert not server.killed and server.event.accepting_thread.run is True
    with socket.create_connection(("127.0.0.1", port)):
        recorder.wait_for("connect", 2)
    existing.close()


def test_close_with_clients(make_server, recorder) -> None:
    """Acceptance 13 (0.4.0 took 5 s and left threads behind)."""
    server = TCPServer()
    server.setup(port=0, on_disconnect=recorder.on_disconnect)
    port = port_of(server)
    peers = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    eventually(lambda: len(server.clients) == 3)
    start = time.monotonic()
    server.close()
    assert time.monotonic() - start < 1.0
    assert len(recorder.named("disconnect")) == 3
    for peer in peers:
        assert read_until_eof(peer) == b""
        peer.close()
    assert server.killed
    server.close()  # idempotent
    again = TCPServer()
    again.setup(port=port)  # binds the same port at once
    again.close()
    with pytest.raises(SetupError):
        server.setup(port=0)


@pytest.mark.timeout(60)
def test_setup_close_same_port_100_times() -> None:
    """Acceptance 28 (0.4.0 lacked SO_REUSEADDR)."""
    first = TCPServer()
    first.setup(port=0)
    port = port_of(first)
    first.close()
    for _ in range(100):
        server = TCPServer()
        server.setup(port=port)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"x")
            eventually(lambda server=server: server.recved_data)
        server.close()


def test_context_manager(make_server) -> None:
    """Acceptance 23 (server part)."""
    server = TCPServer()
    server.setup(port=0)
    server.stop()
    with server as s:
        assert s is server and server.event.accepting_thread.run is True
    assert server.killed


# ------------------------------------------------------------------ items and events


def test_items_shape(make_server, raw_peer) -> None:
    """Acceptance 14."""
    server = make_server()
    peer = raw_peer(port_of(server))
    peer.sendall(b"payload")
    eventually(lambda: server.event.new_data)
    assert server.new_data_recved is True
    items = server.return_recved_data()
    sock, addr, data = items[0]
    item = items[0]
    assert item.response == data == b"payload" and item.from_ is sock
    assert isinstance(item.time_, datetime.datetime) and len(item) == 3
    assert item.equals(data) and item.equals((b"pay", b"load")) and item.equals(item)
    assert addr == peer.getsockname()
    assert server.event.new_data is False and server.recved_data == []
    assert server.new_data_recved is False


@pytest.mark.timeout(60)
def test_concurrent_return_recved_data_loses_nothing(make_server) -> None:
    """Acceptance 15: 10 clients x 1000 chunks while the main thread drains in a loop."""
    server = make_server()
    port = port_of(server)
    per_client = 1000
    payload = b"0123456789abcdef"

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(per_client):
                s.sendall(payload)

    threads = [threading.Thread(target=send) for _ in range(10)]
    for t in threads:
        t.start()
    total = 0
    deadline = time.monotonic() + 30
    while total < 10 * per_client * len(payload) and time.monotonic() < deadline:
        total += sum(len(i.response) for i in server.return_recved_data())
    for t in threads:
        t.join(10)
    total += sum(len(i.response) for i in server.return_recved_data())
    assert total == 10 * per_client * len(payload)


def test_await_event(make_server, raw_peer) -> None:
    """Acceptance 16 (0.4.0 returned RECEIVED with an empty list after
    return_recved_data())."""
    server = make_server()
    start = time.monotonic()
    ev, value = server.await_event(100)
    elapsed = time.monotonic() - start
    assert ev == TCPServer.EVENT_TIMEOUT and value is None
    assert 0.1 <= elapsed < 0.15 + 0.1
    with pytest.raises(ValueError):
        server.await_event(-1)
    peer = raw_peer(port_of(server))
    peer.sendall(b"data")
    eventually(lambda: server.event.new_data)
    assert server.return_recved_data()[0].response == b"data"
    assert server.await_event(100)[0] == server.EVENT_TIMEOUT
    peer.sendall(b"more")
    ev, items = server.await_event(2000)
    assert ev == server.EVENT_RECEIVED and [i.response for i in items] == [b"more"]


def test_exceptions_in_the_same_second(make_server) -> None:
    """Acceptance 18 (0.4.0 overwrote the first)."""
    server = make_server()
    server.disconnect(("1.2.3.4", 5))
    server.disconnect(("1.2.3.4", 6))
    assert server.event.exception.occurred is True
    assert bool(server.event.exception.exceptions) is True
    assert len(server.event.exception.list) == 2
    ev, errors = server.await_event(100)
    assert ev == server.EVENT_EXCEPTION and len(errors) == 2
    keys = list(errors)
    assert keys[1].startswith(keys[0].split("#")[0])
    assert server.event.exception.occurred is False
    assert server.event.exception.list == []
    assert server.await_event(50)[0] == server.EVENT_TIMEOUT  # no stale EXCEPTION event


def test_return_exceptions_flags(make_server) -> None:
    server = make_server()
    server.disconnect(("1.2.3.4", 5))
    kept = server.return_exceptions(delete=False, reset_exception=False)
    assert len(kept) == 1 and server.event.exception.occurred
    again = server.return_exceptions(False, reset_exceptions=True)  # client spelling
    assert again == kept and not server.event.exception.occurred
    assert len(server.return_exceptions()) == 1 and not server.event.exception.exceptions


# ------------------------------------------------------------------ handle_client


def test_handle_client(make_server, recorder) -> None:
    """Acceptance 25: a custom handler reads with recv(), echoes and returns."""
    threads: list = []

    def handler(client: Server_Client) -> None:
        threads.append(client.thread)
        first = client.recv()
        second = client.socket.recv(3)
        client.send(first.response + second)

    server = make_server(
        handle_client=handler,
        on_connect=recorder.on_connect,
        on_receive=recorder.on_receive,
        on_disconnect=recorder.on_disconnect,
    )
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"one")
        eventually(lambda: threads)
        time.sleep(0.05)
        sock.sendall(b"two")
        assert read_until_eof(sock) == b"onetwo"
    recorder.wait_for("disconnect")
    assert [c[0] for c in recorder.calls] == ["connect", "disconnect"]
    assert server.recved_data == [] and not server.event.new_data
    assert isinstance(threads[0], threading.Thread)


def test_handle_client_reads_until_peer_closes(make_server, recorder) -> None:
    collected: list[bytes] = []

    def handler(client: Server_Client) -> None:
        try:
            while True:
                collected.append(server.recv_data(client).response)
        except ConnectionError:
            client.send(b"got %d" % len(b"".join(collected)))

    server = make_server(handle_client=handler, on_disconnect=recorder.on_disconnect)
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"x" * 3_000_000)  # beyond the 1 MiB read buffer: flow control
        sock.shutdown(socket.SHUT_WR)
        assert read_until_eof(sock, 20) == b"got 3000000"
    recorder.wait_for("disconnect")
    assert len(recorder.named("disconnect")) == 1


def test_handle_client_exception_is_recorded(make_server, recorder) -> None:
    def handler(client: Server_Client) -> None:
        raise ValueError("handler failed")

    server = make_server(handle_client=handler, on_disconnect=recorder.on_disconnect)
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        assert read_until_eof(sock) == b""
    recorder.wait_for("disconnect")
    [error] = server.return_exceptions().values()
    assert isinstance(error.exception, ValueError)


def test_client_against_server_end_to_end(make_server, recorder) -> None:
    """Behaviour sequence 1 in one process: the seed's echo pair with every callback."""
    server = TCPServer()
    server.setup(ip="127.0.0.1", port=0, on_connect=recorder.on_connect,
                 on_disconnect=recorder.on_disconnect)
    server.start()
    crec = Recorder()
    client = TCPClient()
    client.setup(target_ip="localhost", target_port=port_of(server),
                 on_connect=crec.on_connect, on_receive=crec.on_receive,
                 on_disconnect=crec.on_disconnect)
    client.start()
    try:
        assert client.connect()
        assert crec.named("connect") == [("connect",)]
        client.autorecv()
        assert client.send_data(b"Test")
        eventually(lambda: server.event.new_data)
        for client_socket, address, data in server.return_recved_data():
            assert data == b"Test"
            assert server.send_data(data, client_socket)
            assert server.disconnect(client_socket)
            assert recorder.named("disconnect") == [("disconnect", address)]
        crec.wait_for("disconnect")
        assert [c[0] for c in crec.calls] == ["connect", "receive", "disconnect"]
        assert client.return_recved_data()[0].response == b"Test"
        assert client.event.is_connected is False and client.event.disconnected is True
    finally:
        client.close()
        server.close()
    assert len(crec.named("disconnect")) == 1


def test_send_data_flow_control_and_atomic_sends(make_server, raw_peer) -> None:
    """send_data waits while more than 1 MiB is unsent (every Python: see send_payload), and
    concurrent large sends never interleave."""
    server = make_server()
    peer = raw_peer(port_of(server))
    sc = _client_of(server)
    results: list = []
    size = 1024 * 1024

    def flood(byte: bytes) -> None:
        for _ in range(24):
            results.append(server.send_data(byte * size, sc))

    threads = [threading.Thread(target=flood, args=(b,)) for b in (b"a", b"b")]
    for t in threads:
        t.start()
    eventually(lambda: len(results) >= 1)
    time.sleep(0.3)
    assert len(results) < 48  # blocked on the peer, not buffering 48 MiB
    data = recv_exactly(peer, 48 * size, timeout=30)
    for t in threads:
        t.join(10)
    assert results == [True] * 48
    for i in range(48):  # each 1 MiB send arrived in one piece
        block = data[i * size:(i + 1) * size]
        assert block in (b"a" * size, b"b" * size), i
