"""Handshakes over real loopback sockets: the built-in ``tls`` (certificates made in the test
with trustme), ``Connection.start_tls`` on a live connection, and a custom handshake plugin.
Every test runs on asyncio's loop and on uvloop (``run`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polysock
import pytest
import trustme
from polysock import (
    ConnectionClosed,
    Handler,
    HandshakeError,
    LengthPrefixFramer,
    Limits,
    LocalProtocolError,
    hookimpl,
)
from polysock.plugins import PluginManager

HOST = "127.0.0.1"


# ------------------------------------------------------------------ certificates


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


@pytest.fixture
def server_ctx(leaf: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def untrusting_ctx() -> ssl.SSLContext:
    """A client context that trusts another CA only."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    trustme.CA().configure_trust(ctx)
    return ctx


# ------------------------------------------------------------------ helpers


async def echo(conn: polysock.Connection) -> None:
    async for msg in conn:
        await conn.send(msg)


class Recorder(Handler):
    """Records event names (and arguments); optionally echoes what it receives."""

    def __init__(self, *, echo: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.echo = echo
        self._changed = asyncio.Event()

    def _record(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    def connection_made(self, conn: polysock.Connection) -> None:
        self._record("made")

    def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
        self._record("messages", list(messages))
        if self.echo:
            conn.write_many(messages)

    def eof_received(self, conn: polysock.Connection) -> bool:
        self._record("eof")
        return False

    def protocol_error(self, conn: polysock.Connection, exc: Exception) -> None:
        self._record("protocol_error", exc)

    def write_drained(self, conn: polysock.Connection) -> None:
        self._record("drained")

    def tls_ready(self, conn: polysock.Connection) -> None:
        self._record("tls_ready")

    def connection_lost(self, conn: polysock.Connection, exc: BaseException | None) -> None:
        self._record("lost", exc)

    @property
    def names(self) -> list[str]:
        return [e[0] for e in self.events]

    @property
    def messages(self) -> list[bytes]:
        return [m for e in self.events if e[0] == "messages" for m in e[1]]

    def arg(self, name: str) -> Any:
        return self.events[self.names.index(name)][1]

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for server bookkeeping that no event signals, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def silent_server() -> tuple[asyncio.AbstractServer, int, list[asyncio.StreamWriter]]:
    """A TCP server that accepts and never says anything."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, HOST, 0)
    return server, server.sockets[0].getsockname()[1], writers


async def close_silent(server: asyncio.AbstractServer, writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()
    server.close()
    await server.wait_closed()


async def assert_server_still_serves(port: int, client_ctx: ssl.SSLContext) -> None:
    conn = await polysock.connect("localhost", port, ssl=client_ctx, timeout=10)
    await conn.send(b"still serving")
    assert await conn.recv() == b"still serving"
    await conn.close()


# ------------------------------------------------------------------ built-in tls


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_with_ssl_contexts(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str
) -> None:
    async def main() -> None:
        server_side: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            server_side.set_result(conn.is_tls)
            await echo(conn)

        async with await polysock.serve(session, HOST, ssl=server_ctx) as srv:
            conn = await polysock.connect(host, srv.port, ssl=client_ctx)
            assert conn.is_tls
            assert await server_side is True
            sslobj = conn.get_extra_info("ssl_object")
            assert sslobj is not None and sslobj.version().startswith("TLS")
            sans = dict(conn.get_extra_info("peercert")["subjectAltName"])
            assert sans["DNS"] == "localhost"
            msgs = [b"secret %d" % i for i in range(100)] + [b"s" * 300_000]
            await conn.send_many(msgs)
            got: list[bytes] = []
            while len(got) < len(msgs):
                got += await conn.recv_batch()
            assert got == msgs
            await conn.close()

    run(main())


def test_client_hello_waiting_before_accept_is_not_lost(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A client whose ClientHello is already in the server's socket when the connection is
    accepted (a fast client, a busy server) must still get its handshake answered."""

    async def main() -> None:
        lsock = socket.create_server((HOST, 0))
        client = socket.create_connection(lsock.getsockname(), timeout=10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        client.sendall(outgoing.read())  # the ClientHello, queued before the accept

        def finish_handshake() -> bytes:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if data := outgoing.read():
                        client.sendall(data)
                    chunk = client.recv(65536)
                    if not chunk:
                        raise ConnectionError("server closed during the handshake") from None
                    incoming.write(chunk)
            tls.write(b"\x00\x00\x00\x02hi")  # one length-prefixed message
            client.sendall(outgoing.read())
            while True:
                try:
                    return tls.read(6)
                except ssl.SSLWantReadError:
                    if data := outgoing.read():
                        client.sendall(data)
                    incoming.write(client.recv(65536))

        async with await polysock.serve(echo, sock=lsock, ssl=server_ctx):
            reply = await asyncio.wait_for(asyncio.to_thread(finish_handshake), 15)
        client.close()
        assert reply == b"\x00\x00\x00\x02hi"

    run(main())


def test_a_handshake_that_switches_to_tls_with_unread_clear_bytes_fails_loudly(
    run: Any, server_ctx: ssl.SSLContext
) -> None:
    class SloppyStartTLS:
        """Reads one byte of a clear-text preamble, then starts TLS with the rest unread."""

        name = "sloppy"

        def __init__(self, role: str = "server", **_: Any) -> None:
            self.role = role

        async def perform(self, stream: Any) -> None:
            await stream.readexactly(1)
            await stream.start_tls(server_ctx)

    class Plugin:
        @polysock.hookimpl
        def polysock_add_handshakes(self) -> dict[str, Any]:
            return {"sloppy": SloppyStartTLS}

    manager = PluginManager(builtins_only=True)
    manager.register(Plugin(), name="sloppy-plugin")

    async def main() -> None:
        handlers: list[Recorder] = []

        def factory() -> Handler:
            handlers.append(Recorder())
            return handlers[-1]

        async with await polysock.serve(
            handler_factory=factory, host=HOST, handshake="sloppy", plugin_manager=manager
        ) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(b"ab")  # one segment: "b" is still buffered at start_tls()
            await handlers[0].until(lambda: "lost" in handlers[0].names)
            assert handlers[0].names == ["protocol_error", "lost"]
            error = handlers[0].arg("protocol_error")
            assert isinstance(error, HandshakeError)
            assert "1 bytes arrived before start_tls()" in str(error)
            with contextlib.suppress(ConnectionResetError):  # closed (FIN or RST), not hung
                assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()

    run(main())


def test_tls_from_handshake_options_with_file_paths(
    run: Any, tmp_path: Path, ca: trustme.CA, leaf: trustme.LeafCert
) -> None:
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    for blob in leaf.cert_chain_pems:
        with certfile.open("ab") as f:
            f.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))

    async def main() -> None:
        async with await polysock.serve(
            echo,
            HOST,
            handshake="tls",
            handshake_options={"certfile": str(certfile), "keyfile": str(keyfile)},
        ) as srv:
            conn = await polysock.connect(
                "localhost", srv.port, handshake="tls", handshake_options={"cafile": str(cafile)}
            )
            assert conn.is_tls
            await conn.send(b"over tls")
            assert await conn.recv() == b"over tls"
            await conn.close()
            # Without the CA the same server is refused.
            with pytest.raises(HandshakeError):
                await polysock.connect("localhost", srv.port, handshake="tls", timeout=10)

    run(main())


def test_mutual_tls(run: Any, tmp_path: Path, ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    server_pem, cafile = tmp_path / "server.pem", tmp_path / "ca.pem"
    client_pem = tmp_path / "client.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    ca.cert_pem.write_to_path(str(cafile))

    async def main() -> None:
        peer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            peer.set_result(conn.get_extra_info("peercert"))
            await echo(conn)

        async with await polysock.serve(
            session,
            HOST,
            handshake="tls",
            handshake_options={"certfile": str(server_pem), "cafile": str(cafile)},
        ) as srv:
            conn = await polysock.connect(
                "localhost",
                srv.port,
                handshake="tls",
                handshake_options={"cafile": str(cafile), "certfile": str(client_pem)},
            )
            await conn.send(b"mutual")
            assert await conn.recv() == b"mutual"
            assert dict((await peer)["subjectAltName"])["DNS"] == "client.example"
            await conn.close()

    run(main())


@pytest.mark.parametrize("case", ["untrusted-ca", "wrong-hostname"])
def test_client_rejects_a_bad_certificate_and_the_server_is_fine(
    run: Any,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    untrusting_ctx: ssl.SSLContext,
    case: str,
) -> None:
    async def main() -> None:
        handlers: list[Recorder] = []

        def factory() -> Handler:
            handlers.append(Recorder(echo=True))
            return handlers[-1]

        async with await polysock.serve(handler_factory=factory, host=HOST, ssl=server_ctx) as srv:
            t0 = time.monotonic()
            with pytest.raises(HandshakeError) as info:
                if case == "untrusted-ca":
                    await polysock.connect("localhost", srv.port, ssl=untrusting_ctx, timeout=10)
                else:
                    await polysock.connect(
                        HOST,
                        srv.port,
                        ssl=client_ctx,
                        timeout=10,
                        handshake_options={"server_hostname": "wrong.example"},
                    )
            assert time.monotonic() - t0 < 5  # reported at once, not at the timeout
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            # The server saw a failed handshake on that connection only...
            rejected = handlers[0]
            await rejected.until(lambda: "lost" in rejected.names)
            assert "made" not in rejected.names
            assert isinstance(rejected.arg("protocol_error"), HandshakeError)
            assert await _until(lambda: not srv.connections)
            # ...and serves the next client normally.
            await assert_server_still_serves(srv.port, client_ctx)
            assert handlers[1].names[:2] == ["made", "messages"]

    run(main())


def test_tls_failure_is_reported_once_per_side_to_event_hooks(
    run: Any, server_ctx: ssl.SSLContext, untrusting_ctx: ssl.SSLContext
) -> None:
    events: list[tuple[str, int, BaseException]] = []

    class Observer:
        @hookimpl
        def polysock_protocol_error(self, event: Any) -> None:
            events.append((event.connection.role, event.connection.id, event.error))

    manager = PluginManager(builtins_only=True)
    manager.register(Observer(), name="observer")

    async def main() -> None:
        async with await polysock.serve(echo, HOST, ssl=server_ctx, plugin_manager=manager) as srv:
            with pytest.raises(HandshakeError):
                await polysock.connect(
                    "localhost", srv.port, ssl=untrusting_ctx, plugin_manager=manager, timeout=10
                )
            assert await _until(lambda: not srv.connections)
            assert await _until(lambda: len({role for role, _, _ in events}) == 2)

    run(main())
    roles = sorted(role for role, _, _ in events)
    assert roles == ["client", "server"], events  # once per side, never twice
    assert all(isinstance(error, HandshakeError) for _, _, error in events)


def test_plain_client_to_tls_server(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST, ssl=server_ctx) as srv:
            conn = await polysock.connect(HOST, srv.port)  # no TLS
            await conn.send(b"hello in clear")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(conn.recv(), 10)
            await conn.close()
            assert await _until(lambda: not srv.connections)
            await assert_server_still_serves(srv.port, client_ctx)

    run(main())


def test_tls_client_to_plain_server(run: Any, client_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:  # no TLS
            t0 = time.monotonic()
            with pytest.raises(HandshakeError):
                await polysock.connect("localhost", srv.port, ssl=client_ctx, timeout=10)
            assert time.monotonic() - t0 < 5

    run(main())


def test_tls_handshake_timeout_and_connect_timeout(run: Any, client_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        server, port, writers = await silent_server()
        try:
            t0 = time.monotonic()
            with pytest.raises(HandshakeError, match="within"):
                await polysock.connect(
                    "localhost", port, ssl=client_ctx, handshake_timeout=0.3, timeout=10
                )
            assert 0.25 <= time.monotonic() - t0 < 5
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await polysock.connect("localhost", port, ssl=client_ctx, timeout=0.3)
            assert 0.25 <= time.monotonic() - t0 < 5
        finally:
            await close_silent(server, writers)

    run(main())


def test_tls_server_handshake_timeout(run: Any, server_ctx: ssl.SSLContext) -> None:
    async def main() -> None:
        rec = Recorder()
        async with await polysock.serve(
            handler_factory=lambda: rec, host=HOST, ssl=server_ctx, handshake_timeout=0.3
        ) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)  # says nothing
            t0 = time.monotonic()
            await rec.until(lambda: "lost" in rec.names)
            assert 0.25 <= time.monotonic() - t0 < 5
            assert rec.names == ["protocol_error", "lost"]
            assert isinstance(rec.arg("protocol_error"), HandshakeError)
            with contextlib.suppress(ConnectionResetError):  # FIN or RST: either ends it
                assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            assert await _until(lambda: not srv.connections)

    run(main())


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
def test_tls_graceful_close_delivers_everything(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, direction: str
) -> None:
    big = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    msgs = [b"%d" % i for i in range(10_000)] + [big, b"last"]

    async def main() -> None:
        received: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()

        async def read_all(conn: polysock.Connection) -> list[bytes]:
            out: list[bytes] = []
            try:
                while True:
                    out += await conn.recv_batch()
            except ConnectionClosed as exc:
                assert exc.reason is None
            return out

        async def session(conn: polysock.Connection) -> None:
            if direction == "client-to-server":
                received.set_result(await read_all(conn))
            else:
                for m in msgs:
                    await conn.send(m)

        async with await polysock.serve(session, HOST, ssl=server_ctx) as srv:
            conn = await polysock.connect("localhost", srv.port, ssl=client_ctx)
            if direction == "client-to-server":
                for m in msgs:
                    conn.write(m)
                await conn.close()
                got = await received
            else:
                got = await read_all(conn)
                await conn.close()
        assert len(got) == len(msgs)
        assert got == msgs

    run(main(), timeout=60)


def test_write_eof_is_refused_over_tls(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST, ssl=server_ctx) as srv:
            conn = await polysock.connect("localhost", srv.port, ssl=client_ctx)
            with pytest.raises(LocalProtocolError, match="TLS"):
                conn.write_eof()
            await conn.send(b"still fine")
            assert await conn.recv() == b"still fine"
            await conn.close()

    run(main())


def test_tls_send_backpressure_respects_limits(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    limits = Limits(
        write_high_water=64 * 1024, write_low_water=16 * 1024, flush_threshold=16 * 1024
    )
    chunk = b"t" * 8192
    framed = len(chunk) + 4
    bound = limits.write_high_water + limits.flush_threshold + 4 * framed

    async def main() -> None:
        rec = Recorder()
        resume: list[polysock.Connection] = []

        class Paused(Recorder):
            def connection_made(self, conn: polysock.Connection) -> None:
                super().connection_made(conn)
                conn.pause_reading()
                resume.append(conn)

        rec = Paused()
        async with await polysock.serve(
            handler_factory=lambda: rec, host=HOST, ssl=server_ctx
        ) as srv:
            conn = await polysock.connect("localhost", srv.port, ssl=client_ctx, limits=limits)
            sent = 0
            peak = 0
            while True:
                try:
                    await asyncio.wait_for(conn.send(chunk), 0.5)
                except asyncio.TimeoutError:
                    sent += 1
                    break
                sent += 1
                peak = max(peak, conn.write_buffer_size)
                assert sent < 4000, "send never waited"
            assert max(peak, conn.write_buffer_size) <= bound
            resume[0].resume_reading()
            await rec.until(lambda: len(rec.messages) == sent, timeout=20)
            assert rec.messages == [chunk] * sent
            await conn.close()

    run(main())


# ------------------------------------------------------------------ start_tls (makessl)


def test_start_tls_upgrades_a_live_connection_on_both_sides(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        server_tls: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            async for msg in conn:
                if msg == b"STARTTLS":
                    await conn.send(b"GO AHEAD")
                    await conn.start_tls(server_ctx)
                    server_tls.set_result(conn.is_tls)
                else:
                    await conn.send(msg)

        async with await polysock.serve(session, HOST) as srv:
            conn = await polysock.connect("localhost", srv.port)
            assert not conn.is_tls
            await conn.send_many([b"clear 1", b"clear 2"])
            assert [await conn.recv(), await conn.recv()] == [b"clear 1", b"clear 2"]
            await conn.send(b"STARTTLS")
            assert await conn.recv() == b"GO AHEAD"
            await conn.start_tls(client_ctx)
            assert conn.is_tls and await server_tls
            assert conn.get_extra_info("ssl_object") is not None
            await conn.send_many([b"tls 1", b"tls 2"])
            assert [await conn.recv(), await conn.recv()] == [b"tls 1", b"tls 2"]
            with pytest.raises(LocalProtocolError, match="already"):
                await conn.start_tls(client_ctx)
            await conn.close()
            plain = await polysock.connect("localhost", srv.port)
            await plain.close()
            with pytest.raises(ConnectionClosed):
                await plain.start_tls(client_ctx)

    run(main())


def test_start_tls_calls_tls_ready_on_the_handler(
    run: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        srv_rec = Recorder(echo=True)

        class Upgrading(Recorder):
            def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
                super().messages_received(conn, messages)
                if b"UPGRADE" in messages:
                    # Server side of makessl: agree, then upgrade, from the event sink.
                    conn.write(b"OK")
                    conn.loop.create_task(conn.start_tls(server_ctx))

        srv_rec = Upgrading()
        async with await polysock.serve(handler_factory=lambda: srv_rec, host=HOST) as srv:
            rec = Recorder()
            conn = await polysock.connect("localhost", srv.port, handler=rec)
            conn.write(b"UPGRADE")
            await rec.until(lambda: rec.messages == [b"OK"])
            await conn.start_tls(client_ctx)
            assert "tls_ready" in rec.names
            conn.write(b"after")
            await srv_rec.until(lambda: srv_rec.messages == [b"UPGRADE", b"after"])
            # Data sent over TLS reaches the handler after its tls_ready, never before.
            assert srv_rec.names[:4] == ["made", "messages", "tls_ready", "messages"]
            await asyncio.wait_for(conn.close(), 10)
        assert rec.names == ["made", "messages", "tls_ready", "lost"]  # we closed: no eof
        assert rec.events[-1] == ("lost", None)

    run(main())


def test_start_tls_failure_closes_the_connection(
    run: Any, server_ctx: ssl.SSLContext, untrusting_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        server_end: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            await conn.recv()
            with contextlib.suppress(ssl.SSLError, ConnectionError, OSError):
                await conn.start_tls(server_ctx)
            await conn.close()  # harmless after a failed upgrade
            server_end.set_result(conn.state)

        async with await polysock.serve(session, HOST) as srv:
            rec = Recorder()
            conn = await polysock.connect("localhost", srv.port, handler=rec)
            conn.write(b"go")
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                await conn.start_tls(untrusting_ctx, timeout=10)
            await asyncio.wait_for(conn.wait_closed(), 10)
            assert conn.state == "closed"
            assert rec.names[-1] == "lost" and rec.arg("lost") is not None
            # The reason is the TLS error itself (Kamaelia's makessl reports it as is).
            assert isinstance(rec.arg("lost"), (ssl.SSLError, ConnectionError, OSError))
            assert await asyncio.wait_for(server_end, 10) == "closed"
            assert await _until(lambda: not srv.connections)

    run(main())


# ------------------------------------------------------------------ custom handshake plugin


class Greet:
    """A line-based greeting: the server says HELLO, the client answers HI. ``after`` is sent in
    the same write as the greeting line, so it reaches the peer inside the handshake's read."""

    name = "greet"

    def __init__(
        self,
        role: str = "client",
        *,
        after: bytes = b"",
        use_unread: bool = False,
        fail_with: Exception | None = None,
    ) -> None:
        self.role = role
        self.after = after
        self.use_unread = use_unread
        self.fail_with = fail_with

    async def perform(self, stream: polysock.HandshakeStream) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.role == "server":
            stream.write(b"HELLO\n" + self.after)
            line = await stream.readuntil(b"\n")
            if line != b"HI\n":
                raise HandshakeError(f"bad answer {line!r}")
            return
        if self.use_unread:
            data = b""
            while b"\n" not in data:
                chunk = await stream.read()
                if not chunk:
                    raise HandshakeError("closed during the greeting")
                data += chunk
            line, _, rest = data.partition(b"\n")
            stream.unread(rest)
            line += b"\n"
        else:
            line = await stream.readuntil(b"\n")
        if line != b"HELLO\n":
            raise HandshakeError(f"bad greeting {line!r}")
        stream.write(b"HI\n" + self.after)
        await stream.drain()


class GreetPlugin:
    @hookimpl
    def polysock_add_handshakes(self) -> dict[str, Callable[..., Greet]]:
        return {"greet": Greet}


@pytest.fixture
def pm() -> PluginManager:
    manager = PluginManager(builtins_only=True)
    manager.register(GreetPlugin(), name="greet-plugin")
    return manager


@pytest.mark.parametrize("use_unread", [False, True])
def test_custom_handshake_leaves_following_bytes_to_the_framer(
    run: Any, pm: PluginManager, use_unread: bool
) -> None:
    framer = LengthPrefixFramer()

    async def main() -> None:
        first_from_client: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            await conn.send(b"second")
            first_from_client.set_result(await conn.recv())
            await echo(conn)

        async with await polysock.serve(
            session,
            HOST,
            handshake="greet",
            plugin_manager=pm,
            handshake_options={"after": framer.frame(b"first")},
        ) as srv:
            conn = await polysock.connect(
                HOST,
                srv.port,
                handshake="greet",
                plugin_manager=pm,
                handshake_options={"after": framer.frame(b"from client"), "use_unread": use_unread},
            )
            assert await conn.recv() == b"first"
            assert await conn.recv() == b"second"
            assert await first_from_client == b"from client"
            await conn.send(b"echo")
            assert await conn.recv() == b"echo"
            await conn.close()

    run(main())


@pytest.mark.parametrize("use_unread", [False, True])
def test_custom_handshake_first_message_in_the_greeting_segment(
    run: Any, pm: PluginManager, use_unread: bool
) -> None:
    """A plain server writes the greeting and two frames in one write (one segment)."""
    framer = LengthPrefixFramer()

    async def main() -> None:
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HELLO\n" + framer.frame_many([b"first", b"second"]))
            answer.set_result(await reader.readuntil(b"\n"))
            await reader.read()
            writer.close()

        plain = await asyncio.start_server(server, HOST, 0)
        try:
            conn = await polysock.connect(
                HOST,
                plain.sockets[0].getsockname()[1],
                handshake="greet",
                plugin_manager=pm,
                handshake_options={"use_unread": use_unread},
            )
            assert await answer == b"HI\n"
            assert await conn.recv() == b"first"
            assert await conn.recv() == b"second"
            await conn.close()
        finally:
            plain.close()
            await plain.wait_closed()

    run(main())


def test_custom_handshake_client_timeout(run: Any, pm: PluginManager) -> None:
    async def main() -> None:
        server, port, writers = await silent_server()
        try:
            t0 = time.monotonic()
            with pytest.raises(HandshakeError, match="greet handshake did not finish"):
                await polysock.connect(
                    HOST, port, handshake="greet", plugin_manager=pm, handshake_timeout=0.3
                )
            assert 0.25 <= time.monotonic() - t0 < 5
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await polysock.connect(
                    HOST, port, handshake="greet", plugin_manager=pm, timeout=0.3
                )
            assert 0.25 <= time.monotonic() - t0 < 5
        finally:
            await close_silent(server, writers)

    run(main())


def test_custom_handshake_server_timeout_and_bad_answer(run: Any, pm: PluginManager) -> None:
    async def main() -> None:
        handlers: list[Recorder] = []

        def factory() -> Handler:
            handlers.append(Recorder(echo=True))
            return handlers[-1]

        async with await polysock.serve(
            handler_factory=factory,
            host=HOST,
            handshake="greet",
            plugin_manager=pm,
            handshake_timeout=0.3,
        ) as srv:
            # A client that never answers.
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            assert await asyncio.wait_for(reader.readuntil(b"\n"), 10) == b"HELLO\n"
            t0 = time.monotonic()
            await handlers[0].until(lambda: "lost" in handlers[0].names)
            assert 0.25 <= time.monotonic() - t0 < 5
            assert handlers[0].names == ["protocol_error", "lost"]
            assert "did not finish" in str(handlers[0].arg("protocol_error"))
            writer.close()
            # A client that answers wrongly.
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(b"BYE\n")
            await handlers[1].until(lambda: "lost" in handlers[1].names)
            assert "bad answer" in str(handlers[1].arg("protocol_error"))
            writer.close()
            # A real client still gets through.
            conn = await polysock.connect(HOST, srv.port, handshake="greet", plugin_manager=pm)
            await conn.send(b"through")
            assert await conn.recv() == b"through"
            await conn.close()
            assert "made" in handlers[2].names

    run(main())


@pytest.mark.parametrize(
    ("greeting", "match"),
    [(b"GOODBYE\n", "bad greeting"), (b"", "closed during the handshake")],
)
def test_custom_handshake_client_failures(
    run: Any, pm: PluginManager, greeting: bytes, match: str
) -> None:
    async def main() -> None:
        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(greeting)
            writer.close()

        plain = await asyncio.start_server(server, HOST, 0)
        try:
            with pytest.raises(HandshakeError, match=match):
                await polysock.connect(
                    HOST,
                    plain.sockets[0].getsockname()[1],
                    handshake="greet",
                    plugin_manager=pm,
                    timeout=10,
                )
        finally:
            plain.close()
            await plain.wait_closed()

    run(main())


def test_handshake_raising_another_exception_becomes_handshake_error(
    run: Any, pm: PluginManager
) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            with pytest.raises(HandshakeError) as info:
                await polysock.connect(
                    HOST,
                    srv.port,
                    handshake="greet",
                    plugin_manager=pm,
                    timeout=10,
                    handshake_options={"fail_with": ValueError("plugin bug")},
                )
            assert isinstance(info.value.__cause__, ValueError)

    run(main())


def test_unknown_handshake_name_fails_at_connect_time(run: Any, pm: PluginManager) -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind((HOST, 0))
            with pytest.raises(polysock.PluginError, match="nope"):
                await polysock.connect(
                    HOST, s.getsockname()[1], handshake="nope", plugin_manager=pm
                )
        with pytest.raises(ValueError, match="ssl="):
            await polysock.connect(HOST, 9, handshake="greet", plugin_manager=pm, ssl=True)

    run(main())
