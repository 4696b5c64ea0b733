"""The ``polysock`` command as a user runs it: real processes, real sockets, bounded waits."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import polysock
import pytest
from polysock import cli, matrix, plugins
from polysock.hookspecs import hookimpl
from polysock.matrix import EchoServer, MatrixPeer, Wire
from polysock.runtime import get_runtime, serve_sync

pytestmark = pytest.mark.timeout(90)

HOST = "127.0.0.1"


def polysock_cmd(*args: str, stdin: str | None = None, timeout: float = 30) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "polysock", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        check=False,
    )


@contextlib.contextmanager
def serve_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``polysock serve`` in a subprocess; yields it and the port it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "polysock", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # bounded: the test's timeout kills a silent server
        match = re.search(r" on [\d.]+:(\d+)", first)
        if not match:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"unexpected first line {first!r}; stderr: {err}")
        assert match
        yield proc, int(match.group(1))
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(15)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def rest_of_output(proc: subprocess.Popen[str]) -> str:
    out, _err = proc.communicate(timeout=30)
    return out


# ------------------------------------------------------------------ serve / send


def test_serve_echo_and_send_expect_round_trip() -> None:
    with serve_process("--framing", "length-prefix", "--echo", "--max-messages", "3") as (p, port):
        got = polysock_cmd("send", "--framing", "length-prefix", HOST, str(port),
                           "hello", "gr\u00fc\u00df \u4e16\u754c", "", "--expect", "3")
        assert got.returncode == 0, got.stderr
        assert got.stdout.splitlines() == ["< hello", "< gr\u00fc\u00df \u4e16\u754c", "< <empty>"]
        assert p.wait(20) == 0  # --max-messages stops it by itself
        out = rest_of_output(p)
    lines = out.splitlines()
    assert re.fullmatch(r"\[127\.0\.0\.1:\d+\] connected", lines[0])
    assert lines[1].endswith("] hello")
    assert lines[2].endswith("] gr\u00fc\u00df \u4e16\u754c")
    assert lines[3].endswith("] <empty>")


def test_send_reads_stdin_lines_interactively_and_prints_replies() -> None:
    with serve_process("--framing", "delimiter", "--echo", "--once") as (p, port):
        got = polysock_cmd("send", "--framing", "delimiter", HOST, str(port),
                           stdin="first line\nsecond\n\nthird\n")
        assert got.returncode == 0, got.stderr
        # half-close after stdin's end lets the echo server answer everything, then close
        assert got.stdout.splitlines() == ["< first line", "< second", "< <empty>", "< third"]
        assert p.wait(20) == 0
        out = rest_of_output(p)
    assert "] first line" in out and "] third" in out and out.rstrip().endswith("closed")


def test_flavour_options_and_binary_messages_are_shown_as_hex() -> None:
    opts = ["-o", "length_size=2", "-o", "byteorder='little'", "-o", "magic=b'PS'"]
    with serve_process("--framing", "length-prefix", *opts, "--max-messages", "2") as (p, port):
        got = polysock_cmd("send", "--framing", "length-prefix", *opts, "--hex", HOST,
                           str(port), "00 ff 10", "6c 69 6e 65 0a 32")
        assert got.returncode == 0, got.stderr
        assert p.wait(20) == 0
        out = rest_of_output(p)
    assert "] <3 bytes> 00 ff 10" in out
    assert "] 'line\\n2'" in out  # UTF-8 with a control character: escaped, one line


def test_serve_reads_the_wire_format_a_raw_peer_sends() -> None:
    with serve_process("--framing", "delimiter", "-o", "delimiter=b'\\x00'",
                       "--max-messages", "2") as (p, port):
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(b"abc\x00d\xc3\xa9f\x00")
        assert p.wait(20) == 0
        out = rest_of_output(p)
    assert "] abc" in out and "] d\u00e9f" in out


def test_serve_stops_after_idle_timeout() -> None:
    with serve_process("--framing", "raw", "--idle-timeout", "0.5") as (p, _port):
        assert p.wait(20) == 0
        assert "idle for 0.5 s, stopping" in rest_of_output(p)


def test_tls_serve_and_send(tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    with serve_process("--framing", "delimiter", "--echo", "--tls-cert", str(cert_file),
                       "--tls-key", str(key_file), "--max-messages", "1") as (p, port):
        bad = polysock_cmd("send", "--framing", "delimiter", "--tls", HOST, str(port), "x")
        assert bad.returncode == 1 and "certificate" in bad.stderr.lower()
        assert "Traceback" not in bad.stderr
        good = polysock_cmd("send", "--framing", "delimiter", "--tls-ca", str(ca_file), HOST,
                            str(port), "secret", "--expect", "1")
        assert good.returncode == 0, good.stderr
        assert good.stdout.splitlines() == ["< secret"]
        assert p.wait(20) == 0


# ------------------------------------------------------------------ errors


def _one_line_error(proc: Any, *needles: str) -> None:
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("polysock: error: ")
    for needle in needles:
        assert needle in lines[0]


def test_unknown_framing_is_one_line_listing_what_exists() -> None:
    _one_line_error(polysock_cmd("send", "--framing", "nope", HOST, "9", "x"),
                    "unknown framing 'nope'", "length-prefix")
    _one_line_error(polysock_cmd("serve", "--framing", "nope"), "unknown framing 'nope'")


def test_bad_framing_option_is_one_line() -> None:
    _one_line_error(polysock_cmd("serve", "--framing", "raw", "-o", "bogus=1"),
                    "bad options for framing 'raw'")
    _one_line_error(polysock_cmd("serve", "--framing", "raw", "-o", "nonsense"), "KEY=VALUE")


def test_refused_connection_is_one_line() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]  # bound, not listening: connect is refused
        _one_line_error(polysock_cmd("send", "--framing", "raw", HOST, str(port), "x"),
                        f"cannot connect to {HOST}:{port}", "connection refused")


def test_port_in_use_is_one_line_and_debug_shows_the_traceback() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = str(s.getsockname()[1])
        _one_line_error(polysock_cmd("serve", "--framing", "raw", "--port", port),
                        "cannot listen on", "address already in use")
        debug = polysock_cmd("--debug", "serve", "--framing", "raw", "--port", port)
        assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_expect_not_met_is_an_error() -> None:
    with serve_process("--framing", "raw", "--once") as (p, port):
        got = polysock_cmd("send", "--framing", "delimiter", HOST, str(port), "x",
                           "--expect", "1", "--timeout", "1")
        _one_line_error(got, "expected 1 message(s), got 0")
        p.wait(20)


def test_plugins_table_lists_the_core() -> None:
    got = polysock_cmd("plugins")
    assert got.returncode == 0
    header, _rule, *rows = got.stdout.splitlines()
    assert header.split() == ["plugin", "distribution", "version", "framers", "handshakes",
                              "flavours"]
    core = next(r for r in rows if r.startswith("polysock "))
    assert polysock.__version__ in core and "length-prefix" in core and "tls" in core


# ------------------------------------------------------------------ matrix


class _EchoFlavour:
    """A flavour-like test plugin: a core echo server plus a client, over NUL-text."""

    wire = Wire(key="test-nul", framing="delimiter", framing_options={"delimiter": b"\0"},
                text=True, forbidden=b"\0", max_size=200_000)

    def __init__(self, broken_client: bool = False) -> None:
        self.broken_client = broken_client
        self.servers_started = 0
        self.servers_stopped = 0

    def start(self) -> EchoServer:
        async def echo(conn: polysock.Connection) -> None:
            async for msg in conn:
                await conn.send(msg)

        srv = serve_sync(echo, HOST, 0, framing="delimiter", framing_options={"delimiter": b"\0"})
        self.servers_started += 1

        def stop() -> None:
            get_runtime().run(srv.aclose(timeout=5), 10)
            self.servers_stopped += 1

        return EchoServer(port=srv.port, stop=stop)

    def exchange(self, host: str, port: int, msgs: Sequence[bytes], timeout: float) -> list[bytes]:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"".join(m + b"\0" for m in msgs))
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        got = data.split(b"\0")[:-1]
        if self.broken_client:
            got[1] = got[1].upper()
        return got

    @hookimpl
    def polysock_add_matrix_peers(self) -> list[MatrixPeer]:
        return [
            MatrixPeer("test.Server", "test", self.wire, "server", start_server=self.start),
            MatrixPeer("test.Client", "test", self.wire, "client", exchange=self.exchange),
        ]


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POLYSOCK_NO_AUTOLOAD", "1")  # installed flavours add matrix peers
    plugins.reset()
    yield
    plugins.reset()


def test_matrix_pairs_servers_with_every_client_of_their_wire(
    fresh_plugins: None, capsys: Any
) -> None:
    flavour = _EchoFlavour()
    plugins.register(flavour, "test-flavour")
    assert cli.main(["matrix", "--timeout", "20"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| test\.Server +\| test\.Client +\| test-nul +\| \d+ +\| pass", out)
    assert re.search(r"\| test\.Server +\| polysock \(delimiter\) +\| test-nul .*\| pass", out)
    assert "2 of 2 pairs passed" in out
    assert flavour.servers_started == flavour.servers_stopped == 2
    sent = matrix.matrix_messages(flavour.wire)
    assert b"" in sent and max(map(len, sent)) == 200_000
    assert not any(b"\0" in m for m in sent)


def test_matrix_reports_a_failing_pair_and_exits_non_zero(
    fresh_plugins: None, capsys: Any
) -> None:
    plugins.register(_EchoFlavour(broken_client=True), "test-flavour")
    assert cli.main(["matrix", "--timeout", "20"]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 pairs passed" in out
    assert "FAIL test.Server <- test.Client: message 1 differs" in out


def test_matrix_times_out_a_hung_client(fresh_plugins: None) -> None:
    flavour = _EchoFlavour()
    release = threading.Event()

    def hang(host: str, port: int, msgs: Sequence[bytes], timeout: float) -> list[bytes]:
        release.wait(30)
        return []

    server = MatrixPeer("test.Server", "test", flavour.wire, "server", start_server=flavour.start)
    client = MatrixPeer("hang", "test", flavour.wire, "client", exchange=hang)
    try:
        result = matrix.run_pair(server, client, timeout=0.5)
    finally:
        release.set()
    assert not result.ok and "no complete answer within 0.5 s" in result.detail
    assert flavour.servers_stopped == 1


def test_matrix_without_flavours_says_so(fresh_plugins: None, capsys: Any) -> None:
    assert cli.main(["matrix"]) == 0
    assert "no flavour with a matrix server is installed" in capsys.readouterr().out
    assert cli.main(["matrix", "--flavour", "nope"]) == 1


def test_matrix_peer_needs_its_callable() -> None:
    with pytest.raises(ValueError, match="start_server"):
        MatrixPeer("x", "x", _EchoFlavour.wire, "server")
    with pytest.raises(ValueError, match="exchange"):
        MatrixPeer("x", "x", _EchoFlavour.wire, "client")
