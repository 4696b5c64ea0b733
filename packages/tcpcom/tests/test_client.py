"""TCPClient: connect and the occupancy check, request/reply, disconnect (spec 3.3, section 7).

Each test names the acceptance check (A<n>) or the defect of the original (D<n>) it covers.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import RawServer, Recorder, recv_exactly, recv_until_eof

from tcpcom import TCPClient, TCPServer

pytestmark = pytest.mark.timeout(60)


def echo_server(**options: object) -> tuple[TCPServer, Recorder]:
    def echo(state: str, msg: str) -> None:
        if state == "MESSAGE":
            srv.sendMessage("echo:" + msg)

    rec = Recorder("server", echo)
    srv = TCPServer(0, rec, **options)  # type: ignore[arg-type]
    return srv, rec


@pytest.fixture
def echo() -> Iterator[tuple[TCPServer, Recorder]]:
    srv, rec = echo_server()
    yield srv, rec
    srv.terminate()


def target(port: int, host: str = "127.0.0.1") -> str:
    return f"{host}:{port}"


@pytest.mark.timeout(90)
def test_a8_d3_d4_server_occupied_100_of_100(echo: tuple[TCPServer, Recorder]) -> None:
    srv, srec = echo
    crec_a = Recorder("A")
    a = TCPClient("127.0.0.1", srv.port, crec_a)
    assert a.connect()
    srec.wait_event("CONNECTED")
    durations = []
    for i in range(100):
        rec = Recorder(f"B{i}")
        b = TCPClient("127.0.0.1", srv.port, rec)
        t0 = time.monotonic()
        assert b.connect() is False, f"attempt {i}"
        durations.append(time.monotonic() - t0)
        assert rec.snapshot() == [
            ("CONNECTING", target(srv.port)),
            ("SERVER_OCCUPIED", target(srv.port)),
        ], f"attempt {i}"
        assert b.isConnected() is False
        assert b.isConnecting() is False
    # The original waited a fixed 2 s; the spec asks < 100 ms each. The median must meet
    # it; single attempts get a margin for a loaded machine, still far below 2 s.
    assert statistics.median(durations) < 0.1, durations
    assert max(durations) < 1.0, durations
    # no DISCONNECTED ever came for any B, and A still talks
    assert a.sendMessage("still here", 5) == "echo:still here"
    assert srec.snapshot()[:2] == [("LISTENING", str(srv.port)), ("CONNECTED", "127.0.0.1")]
    assert [s for s, _ in srec.snapshot()].count("CONNECTED") == 1  # nothing for the B's
    a.disconnect()


def test_a10_connect_to_a_silent_server_waits_the_window(raw_server: RawServer) -> None:
    inside: list[bool] = []

    def check(state: str, msg: str) -> None:
        if state == "CONNECTED":
            time.sleep(0.05)  # a slow CONNECTED callback: connect() must wait for it
            inside.append(client.isConnected())

    rec = Recorder("client", check)
    client = TCPClient("127.0.0.1", raw_server.port, rec)
    t0 = time.monotonic()
    assert client.connect() is True
    elapsed = time.monotonic() - t0
    assert rec.snapshot() == [
        ("CONNECTING", target(raw_server.port)),
        ("CONNECTED", target(raw_server.port)),
    ]  # CONNECTED completed before connect() returned
    assert inside == [True]
    assert 0.2 <= elapsed < 1.0  # spec: 0.2-0.3 s on loopback; the original: 2 s
    client.disconnect()


def test_a10_connect_to_a_polysock_server(echo: tuple[TCPServer, Recorder]) -> None:
    srv, _ = echo
    client = TCPClient("127.0.0.1", srv.port, Recorder())
    t0 = time.monotonic()
    assert client.connect()
    assert 0.2 <= time.monotonic() - t0 < 1.0
    client.disconnect()


@pytest.mark.timeout(90)
def test_a11_d5_welcome_decides_early_and_connected_precedes_message_100_of_100() -> None:
    def greet(state: str, msg: str) -> None:
        if state == "CONNECTED":
            srv.sendMessage("welcome")

    srv = TCPServer(0, Recorder("server", greet))
    durations = []
    for i in range(100):
        rec = Recorder(f"c{i}")
        client = TCPClient("127.0.0.1", srv.port, rec)
        t0 = time.monotonic()
        assert client.connect()
        durations.append(time.monotonic() - t0)
        rec.wait_count(3)
        assert rec.snapshot() == [
            ("CONNECTING", target(srv.port)),
            ("CONNECTED", target(srv.port)),
            ("MESSAGE", "welcome"),
        ], f"run {i}"
        client.disconnect()
    assert statistics.median(durations) < 0.1, durations  # no window wait after a byte
    assert max(durations) < 1.0, durations
    srv.terminate()


def test_a12_late_close_is_connected_then_disconnected(raw_server: RawServer) -> None:
    rec = Recorder()
    client = TCPClient("127.0.0.1", raw_server.port, rec)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t.start()
    conn = raw_server.accept()
    t.join(5)
    assert result == [True]  # decided after the 0.2 s window
    time.sleep(0.3)  # the raw server closes 0.5 s after accepting (the vector's timing)
    conn.close()
    rec.wait_event("DISCONNECTED")
    t_ = target(raw_server.port)
    assert rec.snapshot() == [("CONNECTING", t_), ("CONNECTED", t_), ("DISCONNECTED", "")]
    assert not client.isConnected()


def test_a12_fixed_window_sees_the_late_close_as_occupied(raw_server: RawServer) -> None:
    rec = Recorder()
    client = TCPClient("127.0.0.1", raw_server.port, rec, occupiedWindow=1.0)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t.start()
    conn = raw_server.accept()
    time.sleep(0.5)  # the vector: accept, then close after 0.5 s without sending
    conn.close()
    t.join(5)
    assert result == [False]
    t_ = target(raw_server.port)
    assert rec.snapshot() == [("CONNECTING", t_), ("SERVER_OCCUPIED", t_)]


def test_occupied_window_zero_means_no_check(raw_server: RawServer) -> None:
    rec = Recorder()
    client = TCPClient("127.0.0.1", raw_server.port, rec, occupiedWindow=0)
    t0 = time.monotonic()
    assert client.connect()
    assert time.monotonic() - t0 < 0.2
    client.disconnect()


def test_a12_data_then_close_inside_the_window(raw_server: RawServer) -> None:
    rec = Recorder()
    client = TCPClient("127.0.0.1", raw_server.port, rec, occupiedWindow=2.0)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t.start()
    conn = raw_server.accept()
    conn.sendall(b"hi\0bye\0")
    conn.close()
    t.join(5)
    assert result == [True]
    rec.wait_event("DISCONNECTED")
    t_ = target(raw_server.port)
    assert rec.snapshot() == [
        ("CONNECTING", t_), ("CONNECTED", t_),
        ("MESSAGE", "hi"), ("MESSAGE", "bye"), ("DISCONNECTED", ""),
    ]


def test_first_byte_without_terminator_decides_connected(raw_server: RawServer) -> None:
    rec = Recorder()
    client = TCPClient("127.0.0.1", raw_server.port, rec, occupiedWindow=5.0)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t0 = time.monotonic()
    t.start()
    conn = raw_server.accept()
    conn.sendall(b"par")  # a byte: an occupied tcpcom server never sends one
    t.join(5)
    assert result == [True]
    assert time.monotonic() - t0 < 2.0  # not the 5 s window
    conn.sendall(b"tial\0")
    rec.wait_event("MESSAGE", "partial")
    client.disconnect()


def test_a13_nothing_listening_fails_fast() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rec = Recorder()
    client = TCPClient("127.0.0.1", port, rec)
    t0 = time.monotonic()
    assert client.connect() is False
    assert time.monotonic() - t0 < 0.5  # spec: 50 ms
    assert rec.snapshot() == [("CONNECTING", target(port)), ("CONNECTION_FAILED", target(port))]
    assert not client.isConnected()
    assert not client.isConnecting()


def test_unresolvable_host_fails() -> None:
    rec = Recorder()
    client = TCPClient("no-such-host.invalid", 5001, rec)
    assert client.connect(5) is False
    assert rec.snapshot() == [
        ("CONNECTING", "no-such-host.invalid:5001"),
        ("CONNECTION_FAILED", "no-such-host.invalid:5001"),
    ]


@pytest.mark.timeout(20)
def test_d13_connect_timeout_is_honoured_for_localhost() -> None:
    # A listener whose accept queue is full drops SYNs: the TCP connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        while True:
            s = socket.socket()
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                break
            fillers.append(s)
            assert len(fillers) < 50
        for host in ("localhost", "127.0.0.1"):
            rec = Recorder()
            client = TCPClient(host, port, rec)
            t0 = time.monotonic()
            assert client.connect(0.5) is False
            elapsed = time.monotonic() - t0
            assert 0.45 <= elapsed < 1.5, (host, elapsed)
            assert rec.states() == ["CONNECTING", "CONNECTION_FAILED"]
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_a14_s5_d2_request_reply(echo: tuple[TCPServer, Recorder]) -> None:
    srv, _ = echo
    rec = Recorder()
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        assert client.sendMessage("ping", 2) == "echo:ping"
        times.append(time.monotonic() - t0)
    assert statistics.median(times) < 0.1  # the original always waited the full 2 s
    assert max(times) < 1.0
    rec.wait_for(lambda ev: len(ev) == 7)
    assert rec.messages() == ["echo:ping"] * 5  # each reply also delivered exactly once
    client.disconnect()


def test_a15_no_answer_returns_none_after_response_time() -> None:
    srec = Recorder()
    srv = TCPServer(0, srec)  # never answers
    client = TCPClient("127.0.0.1", srv.port, Recorder())
    assert client.connect()
    t0 = time.monotonic()
    assert client.sendMessage("ping", 0.5) is None
    assert 0.5 <= time.monotonic() - t0 < 1.0  # spec: 0.5-0.6 s
    srec.wait_event("MESSAGE", "ping")
    client.disconnect()
    srv.terminate()


def test_a15_disconnect_while_waiting_returns_none_at_once() -> None:
    def drop(state: str, msg: str) -> None:
        if state == "MESSAGE":
            threading.Timer(0.1, srv.disconnect).start()

    srv = TCPServer(0, Recorder("server", drop))
    client = TCPClient("127.0.0.1", srv.port, Recorder())
    assert client.connect()
    t0 = time.monotonic()
    assert client.sendMessage("ping", 5) is None
    assert time.monotonic() - t0 < 1.0  # spec: within 0.2 s; not the 5 s
    assert not client.isConnected()
    srv.terminate()


def test_a16_concurrent_requests_each_get_their_own_reply(
    echo: tuple[TCPServer, Recorder],
) -> None:
    srv, _ = echo
    client = TCPClient("127.0.0.1", srv.port, None)
    assert client.connect()
    wrong: list[tuple[str, object]] = []

    def worker(tid: int) -> None:
        for i in range(200):
            msg = f"{tid}:{i}"
            got = client.sendMessage(msg, 2)
            if got != "echo:" + msg:
                wrong.append((msg, got))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert wrong == []
    client.disconnect()


def test_a17_types_and_unconnected_send(raw_server: RawServer) -> None:
    client = TCPClient("127.0.0.1", raw_server.port, None)
    with pytest.raises(TypeError):
        client.sendMessage(42)  # type: ignore[arg-type]
    assert client.sendMessage("x") is None  # not connected: nothing written
    assert client.sendMessage("x", 1) is None
    assert client.connect()
    conn = raw_server.accept()
    with pytest.raises(TypeError):
        client.sendMessage(3.5)  # type: ignore[arg-type]
    client.sendMessage(bytearray(b"ba"))
    client.disconnect()
    assert recv_until_eof(conn, 2) == b"ba\0"  # the unconnected "x" never went out


def test_reply_from_inside_a_callback_does_not_deadlock(
    echo: tuple[TCPServer, Recorder],
) -> None:
    srv, _ = echo
    replies: list[str | None] = []

    def on_state(state: str, msg: str) -> None:
        if state == "CONNECTED":
            replies.append(client.sendMessage("from callback", 5))

    rec = Recorder("client", on_state)
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    rec.wait_event("MESSAGE", "echo:from callback")
    assert replies == ["echo:from callback"]
    client.disconnect()


def test_a21_client_disconnect(echo: tuple[TCPServer, Recorder]) -> None:
    srv, srec = echo
    rec = Recorder()
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    srec.wait_event("CONNECTED")
    client.disconnect()
    assert rec.states() == ["CONNECTING", "CONNECTED", "DISCONNECTED"]  # ran before return
    assert not client.isConnected()
    t0 = time.monotonic()
    assert srec.wait_for(lambda ev: ev[-1] == ("LISTENING", str(srv.port)), 2.0)
    assert time.monotonic() - t0 < 0.5  # spec: 100 ms
    assert not srv.isConnected()
    client.disconnect()  # no-op
    assert rec.states().count("DISCONNECTED") == 1
    assert srec.states().count("LISTENING") == 2


@pytest.mark.timeout(90)
def test_a22_client_send_then_disconnect_100_of_100(raw_server: RawServer) -> None:
    client = TCPClient("127.0.0.1", raw_server.port, None, occupiedWindow=0)
    for i in range(100):
        assert client.connect()
        conn = raw_server.accept()
        client.sendMessage("bye")
        client.disconnect()
        assert recv_until_eof(conn, 5.0) == bytes.fromhex("62 79 65 00"), f"run {i}"
        conn.close()


def test_d4_is_connected_after_every_transition(raw_server: RawServer) -> None:
    seen: list[tuple[str, bool]] = []
    rec = Recorder("client", lambda s, m: seen.append((s, client.isConnected())))
    client = TCPClient("127.0.0.1", raw_server.port, rec, occupiedWindow=0.5)
    assert not client.isConnected()
    # refused: accept and close at once
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t.start()
    raw_server.accept().close()
    t.join(5)
    assert result == [False] and not client.isConnected()
    # connected, then closed by the peer
    result.clear()
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t.start()
    conn = raw_server.accept()
    conn.sendall(b"m\0")
    t.join(5)
    assert result == [True] and client.isConnected()
    conn.close()
    rec.wait_event("DISCONNECTED")
    assert not client.isConnected()
    # connected, then our own disconnect
    result.clear()
    t = threading.Thread(target=lambda: result.append(client.connect()))
    t.start()
    conn = raw_server.accept()
    conn.sendall(b"m\0")
    t.join(5)
    assert rec.wait_for(lambda ev: len(ev) == 9)  # the MESSAGE has run
    client.disconnect()
    assert not client.isConnected()
    assert seen == [
        ("CONNECTING", False), ("SERVER_OCCUPIED", False),
        ("CONNECTING", False), ("CONNECTED", True), ("MESSAGE", True), ("DISCONNECTED", False),
        ("CONNECTING", False), ("CONNECTED", True), ("MESSAGE", True), ("DISCONNECTED", False),
    ]


def test_a35_reconnect_after_disconnected(echo: tuple[TCPServer, Recorder]) -> None:
    srv, _ = echo
    rec = Recorder()
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    srv.disconnect()
    rec.wait_event("DISCONNECTED")
    rec.clear()
    assert client.connect()
    assert rec.states() == ["CONNECTING", "CONNECTED"]
    assert client.sendMessage("again", 5) == "echo:again"
    client.disconnect()


def test_reconnect_from_inside_the_disconnected_callback(
    echo: tuple[TCPServer, Recorder],
) -> None:
    srv, _srec = echo
    results: list[bool] = []

    def on_state(state: str, msg: str) -> None:
        if state == "DISCONNECTED" and not results:
            results.append(client.connect())  # its callbacks run after this one returns

    rec = Recorder("client", on_state)
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    srv.disconnect()
    assert rec.wait_for(lambda ev: len(ev) == 5, 5)
    assert results == [True]
    assert rec.states() == ["CONNECTING", "CONNECTED", "DISCONNECTED", "CONNECTING", "CONNECTED"]
    client.disconnect()


def test_connect_when_connected_returns_true_without_callbacks(
    echo: tuple[TCPServer, Recorder],
) -> None:
    srv, _ = echo
    rec = Recorder()
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    assert client.connect()
    assert rec.states() == ["CONNECTING", "CONNECTED"]
    client.disconnect()


def test_concurrent_connect_calls_share_one_attempt(echo: tuple[TCPServer, Recorder]) -> None:
    srv, srec = echo
    rec = Recorder()
    client = TCPClient("127.0.0.1", srv.port, rec)
    results: list[bool] = []
    states: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(client.connect()))
               for _ in range(4)]
    for t in threads:
        t.start()
    states.append(client.isConnecting())
    for t in threads:
        t.join(5)
    assert results == [True] * 4
    assert rec.states() == ["CONNECTING", "CONNECTED"]
    assert srec.states().count("CONNECTED") == 1
    client.disconnect()


def test_is_connecting_during_the_window(raw_server: RawServer) -> None:
    flags: list[bool] = []
    rec = Recorder("client", lambda s, m: flags.append(client.isConnecting()))
    client = TCPClient("127.0.0.1", raw_server.port, rec)
    assert client.connect()
    assert flags == [True, False]  # CONNECTING: True; CONNECTED: decided
    assert not client.isConnecting()
    client.disconnect()


def test_client_end_of_block_and_custom_max_size(raw_server: RawServer) -> None:
    rec = Recorder()
    client = TCPClient("127.0.0.1", raw_server.port, rec, endOfBlock=b"\n", maxMessageSize=4)
    assert client.connect()
    conn = raw_server.accept()
    client.sendMessage("ab")
    assert recv_exactly(conn, 3) == b"ab\n"
    conn.sendall(b"1234\n12345")
    rec.wait_event("DISCONNECTED")
    assert rec.messages() == ["1234"]


def test_client_callback_exception_is_printed(
    echo: tuple[TCPServer, Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    srv, _ = echo

    def boom(state: str, msg: str) -> None:
        if state == "CONNECTED":
            raise RuntimeError("boom")

    rec = Recorder("client", boom)
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    assert "Caught exception in TCPClient.CONNECTED: boom" in capsys.readouterr().out
    assert client.sendMessage("x", 5) == "echo:x"
    client.disconnect()


def test_client_verbose_prefix(
    echo: tuple[TCPServer, Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    srv, _ = echo
    client = TCPClient("127.0.0.1", srv.port, None, True)
    assert client.connect()
    client.sendMessage("v", 5)
    client.disconnect()
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines and all(line.startswith("   TCPClient-> ") for line in lines), lines
    text = "\n".join(lines)
    assert "Successfully connected" in text and "Client.disconnect()" in text


def test_message_order_and_no_loss_under_a_burst(echo: tuple[TCPServer, Recorder]) -> None:
    srv, _srec = echo
    rec = Recorder()
    client = TCPClient("127.0.0.1", srv.port, rec)
    assert client.connect()
    for i in range(2000):
        client.sendMessage(str(i))
    assert rec.wait_for(lambda ev: len(ev) == 2002, 20)
    assert rec.messages() == [f"echo:{i}" for i in range(2000)]
    assert rec.max_running == 1
    client.disconnect()


def test_a_message_larger_than_max_message_size_is_refused_in_the_caller(
    raw_server: RawServer,
) -> None:
    client = TCPClient("127.0.0.1", raw_server.port, None, maxMessageSize=8, occupiedWindow=0)
    assert client.connect()
    conn = raw_server.accept()
    with pytest.raises(ValueError, match="exceeds maxMessageSize"):
        client.sendMessage("123456789")
    with pytest.raises(ValueError, match="exceeds maxMessageSize"):
        client.sendMessage("123456789", 1)
    client.sendMessage("12345678")
    assert recv_exactly(conn, 9) == b"12345678\0"
    client.disconnect()
