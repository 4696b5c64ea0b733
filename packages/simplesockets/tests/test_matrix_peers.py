"""simplesockets in ``polysock matrix`` and ``polysock bench``: its peers and workload, found
through the installed plugin and run for real (sockets, threads, bench processes)."""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from polysock import bench, cli, matrix, plugins
from polysock.matrix import EchoServer, Wire

from simplesockets import _matrix
from ss_helpers import read_until_eof

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = _matrix.start_echo_server()
    yield server
    server.stop()


def test_the_plugin_offers_a_server_and_a_client_on_the_generic_raw_wire() -> None:
    peers = [p for p in matrix.collect_peers() if p.flavour == "simplesockets"]
    assert sorted((p.name, p.role) for p in peers) == [
        ("simplesockets.TCPClient", "client"), ("simplesockets.TCPServer", "server"),
    ]
    # Raw flavours pair by the key alone, so each must describe the stream exactly as the
    # core's generic raw semantics do: a byte stream, compared as one concatenation.
    assert [p.wire for p in peers] == [Wire(key="raw", framing="raw", boundaries=False)] * 2
    assert plugins.get_plugin_manager().flavour("simplesockets").framing == "raw"


def test_every_pair_passes() -> None:
    peers = [p for p in matrix.collect_peers() if p.flavour == "simplesockets"]
    results = matrix.run_matrix(peers, timeout=20)
    assert [(r.server, r.client, r.ok, r.detail) for r in results] == [
        ("simplesockets.TCPServer", "simplesockets.TCPClient", True, ""),
        ("simplesockets.TCPServer", "polysock (raw)", True, ""),
    ]
    assert all(r.messages == len(matrix.matrix_messages(_matrix.RAW_WIRE)) for r in results)


def test_cli_matrix_for_the_flavour(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["matrix", "--flavour", "simplesockets", "--timeout", "20"]) == 0
    out = capsys.readouterr().out
    row = r"\| simplesockets\.TCPServer +\| {} +\| raw .*\| pass "
    assert re.search(row.format(r"simplesockets\.TCPClient"), out)
    assert re.search(row.format(r"polysock \(raw\)"), out)
    assert "FAIL" not in out


def test_echo_server_returns_the_exact_bytes_to_a_raw_socket(echo: EchoServer) -> None:
    data = bytes(range(256)) * 512  # 128 KiB: several chunks on the way in and out
    with socket.create_connection((echo.host, echo.port), timeout=5) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,))
        sender.start()
        got = bytearray()
        sock.settimeout(10)
        while len(got) < len(data):
            chunk = sock.recv(65536)
            assert chunk, f"EOF after {len(got)} bytes"
            got += chunk
        sender.join(10)
    assert bytes(got) == data


def test_stopping_the_echo_server_closes_clients_and_the_port() -> None:
    server = _matrix.start_echo_server()
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.sendall(b"ping")
    try:
        assert sock.recv(4) == b"ping"
        server.stop()
        assert read_until_eof(sock) == b""  # a graceful close, nothing else sent
    finally:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()


def test_client_exchange_against_a_plain_socket_echo() -> None:
    """The TCPClient peer stops when every byte is back, however the server chunks them."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(5)

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            while data := conn.recv(3):  # tiny reads: many small chunks back
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        msgs = [b"hello", b"", b"\x00\xff" * 100]
        got = _matrix.echo_exchange("127.0.0.1", lsock.getsockname()[1], msgs, 10)
    finally:
        thread.join(10)
        lsock.close()
    assert b"".join(got) == b"".join(msgs) and len(got) > 1


def test_client_exchange_times_out_when_the_echo_never_comes() -> None:
    lsock = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(TimeoutError, match=re.escape("0 of 5 bytes came back within 0.3 s")):
            _matrix.echo_exchange("127.0.0.1", lsock.getsockname()[1], [b"hello"], 0.3)
    finally:
        lsock.close()


@pytest.mark.timeout(120)
def test_bench_scenario_runs_against_its_raw_baseline() -> None:
    (scenario,) = [s for s in bench.collect_scenarios() if s.flavour == "simplesockets"]
    assert scenario.baseline == "W4"
    assert dict(scenario.params) == {"conns": 200, "n": 200, "size": 32}
    tiny = dataclasses.replace(scenario, params={"conns": 8, "n": 20, "size": 32})
    (row,) = bench.run([], runs=1, zmq=False, scenarios=[tiny])
    assert (row.key, row.title, row.unit) == ("simplesockets:", scenario.name, "rt/s")
    assert row.raw > 0 and row.core > 0
    assert row.extra["core_server_rss_mib"] > 0
