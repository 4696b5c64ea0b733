"""The asyncio transport over real loopback sockets: API, close/abort/half-close, flow control,
protocol errors, handlers. Every test runs on asyncio's loop and on uvloop (``run`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import polysock
import pytest
from polysock import (
    ConnectionClosed,
    FrameTooLarge,
    Handler,
    IncompleteFrame,
    LengthPrefixFramer,
    Limits,
    LocalProtocolError,
    PluginError,
    RemoteProtocolError,
)

HOST = "127.0.0.1"


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6()


# ------------------------------------------------------------------ helpers


async def echo(conn: polysock.Connection) -> None:
    async for msg in conn:
        await conn.send(msg)


async def read_all(conn: polysock.Connection) -> list[bytes]:
    """Every message until the orderly end of the stream."""
    out: list[bytes] = []
    try:
        while True:
            out += await conn.recv_batch()
    except ConnectionClosed as exc:
        assert exc.reason is None, f"unexpected end: {exc.reason!r}"
    return out


def raw_listener(rcvbuf: int | None = None) -> socket.socket:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    lsock.bind((HOST, 0))
    lsock.listen(8)
    lsock.setblocking(False)
    return lsock


async def connect_to_raw_peer(
    rcvbuf: int | None = None, **kwargs: Any
) -> tuple[polysock.Connection, socket.socket]:
    """A polysock client connected to a plain socket the test drives by hand."""
    loop = asyncio.get_running_loop()
    with raw_listener(rcvbuf) as lsock:
        accept = asyncio.ensure_future(loop.sock_accept(lsock))
        conn = await polysock.connect(HOST, lsock.getsockname()[1], **kwargs)
        peer, _ = await asyncio.wait_for(accept, 10)
    peer.setblocking(False)
    return conn, peer


async def raw_read_until_eof(peer: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    while True:
        data = await loop.sock_recv(peer, 1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def raw_read_exactly(peer: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()
    while len(buf) < n:
        data = await loop.sock_recv(peer, n - len(buf))
        if not data:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def frames_of(data: bytes, **options: Any) -> list[bytes]:
    framer = LengthPrefixFramer(**options)
    frames = framer.receive_data(data)
    assert framer.receive_data(b"") == []  # no incomplete tail
    return frames


class Recorder(Handler):
    """A handler that records its events (with the thread they ran on) and lets a test wait
    for a condition on them."""

    def __init__(self, *, keep_open_on_eof: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()
        self.keep_open_on_eof = keep_open_on_eof
        self._changed = asyncio.Event()

    def _record(self, *event: Any) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(event)
        self._changed.set()

    def connection_made(self, conn: polysock.Connection) -> None:
        self._record("made")

    def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
        self._record("messages", list(messages))

    def eof_received(self, conn: polysock.Connection) -> bool:
        self._record("eof")
        return self.keep_open_on_eof

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

    def has(self, name: str) -> bool:
        return name in self.names

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


# ------------------------------------------------------------------ basic API


@pytest.mark.parametrize(
    ("framing", "options"),
    [
        ("length-prefix", None),
        ("length-prefix", {"length_size": 2, "byteorder": "little", "magic": b"PS"}),
        ("delimiter", None),
        ("delimiter", {"delimiter": b"\r\n"}),
    ],
)
def test_echo_roundtrip(run: Any, framing: str, options: dict[str, Any] | None) -> None:
    async def main() -> None:
        async with await polysock.serve(
            echo, HOST, framing=framing, framing_options=options
        ) as srv:
            conn = await polysock.connect(HOST, srv.port, framing=framing, framing_options=options)
            assert conn.state == "open"
            msgs = [b"message %d" % i for i in range(200)] + [b"", b"x" * 60_000]
            if framing == "delimiter":
                msgs.remove(b"")  # an empty frame is fine, but keep the count simple
            for m in msgs:
                await conn.send(m)
            got = [await conn.recv() for _ in msgs]
            assert got == msgs
            await conn.close()
            assert conn.state == "closed"

    run(main())


def test_raw_framing_preserves_the_byte_stream(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST, framing="raw") as srv:
            conn = await polysock.connect(HOST, srv.port, framing="raw")
            chunks = [bytes([i % 251]) * (i * 37 % 5000 + 1) for i in range(300)]
            expected = b"".join(chunks)
            await conn.send_many(chunks)
            got = bytearray()
            while len(got) < len(expected):
                got += b"".join(await conn.recv_batch())
            assert bytes(got) == expected
            await conn.close()

    run(main())


@pytest.mark.parametrize(
    ("framing", "options", "wire", "frames"),
    [
        ("delimiter", {"delimiter": b"\0"}, b"one\0two\0", [b"one", b"two"]),
        (
            "length-prefix",
            {"length_size": 2, "byteorder": "little"},
            b"\x03\x00abc\x02\x00de",
            [b"abc", b"de"],
        ),
        ("length-prefix", None, b"\x00\x00\x00\x03abc", [b"abc"]),
    ],
)
def test_framing_options_reach_the_wire(
    run: Any, framing: str, options: dict[str, Any] | None, wire: bytes, frames: list[bytes]
) -> None:
    """A plain socket speaks the framing by hand: the server decodes exactly these frames and
    its replies are byte-identical on the wire."""

    async def main() -> None:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def session(conn: polysock.Connection) -> None:
            async for msg in conn:
                await received.put(msg)
                await conn.send(msg)

        async with await polysock.serve(
            session, HOST, framing=framing, framing_options=options
        ) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(wire)
            assert await asyncio.wait_for(reader.readexactly(len(wire)), 10) == wire
            assert [received.get_nowait() for _ in frames] == frames
            writer.close()
            await writer.wait_closed()

    run(main())


def test_send_many_recv_batch_and_max_messages(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            msgs = [b"%d" % i for i in range(5000)]
            await conn.send_many(msgs)
            got: list[bytes] = []
            while len(got) < len(msgs):
                batch = await conn.recv_batch(max_messages=100)
                assert 1 <= len(batch) <= 100
                got += batch
            assert got == msgs
            await conn.send_many(iter([b"a", b"b"]))  # any iterable
            tail: list[bytes] = []
            while len(tail) < 2:
                tail += await conn.recv_batch()
            assert tail == [b"a", b"b"]
            await conn.close()

    run(main())


def test_async_iteration_ends_at_orderly_close(run: Any) -> None:
    async def main() -> None:
        async def session(conn: polysock.Connection) -> None:
            for i in range(50):
                await conn.send(b"%d" % i)
            # returning closes the connection gracefully

        async with await polysock.serve(session, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            got = [msg async for msg in conn]
            assert got == [b"%d" % i for i in range(50)]
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            assert info.value.reason is None
            await conn.close()
            assert conn.closed.done()

    run(main())


def test_recv_on_a_handler_connection_is_a_local_error(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port, handler=Recorder())
            with pytest.raises(LocalProtocolError):
                await conn.recv()
            await conn.close()

    run(main())


def test_two_concurrent_readers_are_refused(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            first = asyncio.ensure_future(conn.recv())
            await asyncio.sleep(0)  # let the first reader park on its waiter
            with pytest.raises(RuntimeError, match="already waiting"):
                await conn.recv()
            with pytest.raises(RuntimeError, match="already waiting"):
                await conn.recv_batch()
            await conn.send(b"one")
            assert await asyncio.wait_for(first, 10) == b"one"  # the first reader is intact
            await conn.close()

    run(main())


def test_session_ending_on_a_peer_protocol_error_is_not_logged_as_a_crash(
    run: Any, caplog: Any
) -> None:
    async def main() -> None:
        ended = asyncio.Event()
        seen: list[BaseException] = []

        async def session(conn: polysock.Connection) -> None:
            try:
                await conn.recv()
            except RemoteProtocolError as exc:
                seen.append(exc)
                raise  # a session that lets the peer's error propagate is normal code
            finally:
                ended.set()

        async with await polysock.serve(
            session, HOST, framing_options={"max_frame_size": 8}
        ) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(struct.pack(">I", 1000))  # declares more than the limit
            await asyncio.wait_for(ended.wait(), 10)
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, not hung
            writer.close()

        assert len(seen) == 1 and isinstance(seen[0], FrameTooLarge)

    with caplog.at_level(logging.DEBUG, logger="polysock"):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


def test_server_port_is_still_known_after_close(run: Any) -> None:
    async def main() -> None:
        srv = await polysock.serve(echo, HOST)
        port = srv.port
        addresses = srv.addresses
        await srv.aclose()
        assert srv.port == port
        assert srv.addresses == addresses
        with pytest.raises(OSError):
            await polysock.connect(HOST, port, timeout=5)

    run(main())


def test_large_payload_sends_wait_for_a_peer_that_does_not_read(run: Any) -> None:
    """Payloads of 64 KiB and more take the no-copy write path: it must still pause."""

    async def main() -> None:
        lsock = socket.create_server((HOST, 0))
        lsock.setblocking(False)
        conn = await polysock.connect(HOST, lsock.getsockname()[1])
        peer, _ = await asyncio.get_running_loop().sock_accept(lsock)  # never reads
        big = b"b" * (1 << 20)
        accepted = 0
        with pytest.raises(asyncio.TimeoutError):
            for _ in range(64):
                await asyncio.wait_for(conn.send(big), 2)
                accepted += 1
        # kernel buffers plus the high-water mark, not the 64 MiB asked for
        assert accepted < 32
        assert conn.write_buffer_size <= conn.limits.write_high_water + 2 * len(big)
        conn.abort()
        peer.close()
        lsock.close()

    run(main())


def test_serve_arguments_are_checked(run: Any) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="exactly one"):
            await polysock.serve(None, HOST)
        with pytest.raises(ValueError, match="exactly one"):
            await polysock.serve(echo, HOST, handler_factory=Handler)
        with pytest.raises(PluginError, match="no-such-framing"):
            await polysock.serve(echo, HOST, framing="no-such-framing")
        with pytest.raises(PluginError, match="no-such-framing"):
            await polysock.connect(HOST, 9, framing="no-such-framing")

    run(main())


def test_many_concurrent_connections_do_not_mix(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:

            async def client(n: int) -> None:
                conn = await polysock.connect(HOST, srv.port)
                msgs = [b"%d-%d" % (n, i) for i in range(200)]
                await conn.send_many(msgs)
                got: list[bytes] = []
                while len(got) < len(msgs):
                    got += await conn.recv_batch()
                assert got == msgs
                await conn.close()

            await asyncio.gather(*(client(n) for n in range(20)))
            assert await _until(lambda: not srv.connections)

    run(main())


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for a condition that no event signals (server bookkeeping), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# ------------------------------------------------------------------ addresses


def test_ipv4_addresses(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            assert srv.is_serving()
            assert srv.addresses == [(HOST, srv.port)]
            conn = await polysock.connect(HOST, srv.port)
            assert conn.peername == (HOST, srv.port)
            assert conn.sockname[0] == HOST
            assert conn.socket.family == socket.AF_INET
            await conn.send(b"v4")
            assert await conn.recv() == b"v4"
            await conn.close()

    run(main())


@pytest.mark.skipif(not HAS_IPV6, reason="this machine has no ::1")
def test_ipv6_loopback(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, "::1") as srv:
            assert srv.addresses[0][0] == "::1"
            conn = await polysock.connect("::1", srv.port)
            assert conn.peername[0] == "::1"
            assert conn.socket.family == socket.AF_INET6
            await conn.send(b"v6")
            assert await conn.recv() == b"v6"
            await conn.close()

    run(main())


def test_connect_by_host_name_localhost(run: Any) -> None:
    """'localhost' may resolve to ::1 first: the server listens on 127.0.0.1 only, so this
    also exercises the fallback to the next address."""

    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            conn = await polysock.connect("localhost", srv.port)
            assert conn.peername[:2] == (HOST, srv.port)
            await conn.send(b"by name")
            assert await conn.recv() == b"by name"
            await conn.close()

    run(main())


def test_serve_on_an_already_listening_socket_with_a_pending_client(run: Any) -> None:
    """serve(sock=...): a client that connected before serve() started is accepted too."""

    async def main() -> None:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind((HOST, 0))
        lsock.listen(8)
        port = lsock.getsockname()[1]
        early_reader, early_writer = await asyncio.open_connection(HOST, port)
        srv = await polysock.serve(echo, sock=lsock)
        try:
            assert srv.port == port
            early_writer.write(LengthPrefixFramer().frame(b"early"))
            reply = await asyncio.wait_for(early_reader.readexactly(9), 10)
            assert frames_of(reply) == [b"early"]
            conn = await polysock.connect(HOST, port)
            await conn.send(b"late")
            assert await conn.recv() == b"late"
            await conn.close()
            early_writer.close()
            await early_writer.wait_closed()
        finally:
            await srv.aclose()

    run(main())


# ------------------------------------------------------------------ connect errors


def test_connection_refused(run: Any) -> None:
    async def main() -> None:
        # Bound but not listening: the kernel answers a SYN with RST.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            t0 = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                await polysock.connect(HOST, port, timeout=10)
            assert time.monotonic() - t0 < 5

    run(main())


def test_connect_timeout(run: Any) -> None:
    """A listener whose accept queue is full drops SYNs: connect must give up at ``timeout``."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind((HOST, 0))
        lsock.listen(0)
        addr = lsock.getsockname()
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(addr)
                fillers.append(s)
            # Precondition: a new connection really hangs now.
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.setblocking(False)
            probe.connect_ex(addr)
            fillers.append(probe)
            _, writable, _ = await loop.run_in_executor(None, select.select, [], [probe], [], 0.3)
            if writable:
                pytest.skip("this kernel does not drop SYNs on a full accept queue")
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await polysock.connect(HOST, addr[1], timeout=0.5)
            elapsed = time.monotonic() - t0
            assert 0.4 <= elapsed < 3.0
        finally:
            for s in fillers:
                s.close()
            lsock.close()

    run(main())


# ------------------------------------------------------------------ graceful close, abort


@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
def test_graceful_close_delivers_100k_messages_in_order(run: Any, direction: str) -> None:
    count = 100_000
    pack = struct.Struct(">I").pack

    async def main() -> None:
        received: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            if direction == "client-to-server":
                received.set_result(await read_all(conn))
            else:
                for i in range(count):
                    await conn.send(pack(i))
                # return: the session closes the connection, which must flush everything

        async with await polysock.serve(session, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            if direction == "client-to-server":
                for i in range(count):
                    await conn.send(pack(i))
                await conn.close()
                got = await received
            else:
                got = await read_all(conn)
                await conn.close()
        assert len(got) == count
        assert got == [pack(i) for i in range(count)]

    run(main(), timeout=60)


def test_graceful_close_delivers_a_multi_megabyte_payload(run: Any) -> None:
    payload = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)  # 8 MiB

    async def main() -> None:
        received: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            received.set_result(await read_all(conn))

        async with await polysock.serve(session, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            conn.write(b"head")
            conn.write(payload)
            conn.write(b"tail")
            await conn.close()  # no drain before: close must flush
            got = await received
        assert [len(m) for m in got] == [4, len(payload), 4]
        assert got[1] == payload
        assert got[0] == b"head" and got[2] == b"tail"

    run(main(), timeout=60)


def test_close_is_idempotent_and_send_after_close_fails(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            first = conn.close()
            second = conn.close()
            assert first is second is conn.closed
            with pytest.raises(ConnectionClosed):
                await conn.send(b"too late")
            await first
            assert conn.state == "closed" and conn.is_closing()
            assert conn.close() is conn.closed
            with pytest.raises(ConnectionClosed):
                conn.write(b"too late")
            with pytest.raises(ConnectionClosed):
                await conn.drain()
            conn.abort()  # harmless after close

    run(main())


def test_abort_resets_the_connection(run: Any) -> None:
    async def main() -> None:
        outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def session(conn: polysock.Connection) -> None:
            try:
                while True:
                    await conn.recv()
            except ConnectionClosed as exc:
                outcome.set_result(exc)

        async with await polysock.serve(session, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            await conn.send(b"before")
            conn.abort()
            await asyncio.wait_for(conn.wait_closed(), 10)
            assert conn.state == "closed"
            exc = await outcome
            assert isinstance(exc, ConnectionClosed)
            assert isinstance(exc.reason, ConnectionResetError), exc.reason

    run(main())


def test_server_abort_is_seen_as_reset_by_a_plain_peer(run: Any, caplog: Any) -> None:
    async def main() -> None:
        aborted = asyncio.Event()

        async def session(conn: polysock.Connection) -> None:
            assert await conn.recv() == b"hi"
            conn.abort()
            aborted.set()
            # returning right after abort() must be harmless

        async with await polysock.serve(session, HOST) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(LengthPrefixFramer().frame(b"hi"))
            await asyncio.wait_for(aborted.wait(), 10)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert await _until(lambda: not srv.connections)

    with caplog.at_level(logging.WARNING):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_write_eof_half_close(run: Any) -> None:
    async def main() -> None:
        async def session(conn: polysock.Connection) -> None:
            got = [m async for m in conn]  # ends at the client's EOF
            for m in got:
                await conn.send(m.upper())
            await conn.send(b"done")

        async with await polysock.serve(session, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            await conn.send(b"a")
            await conn.send(b"b")
            conn.write_eof()
            conn.write_eof()  # idempotent
            with pytest.raises(ConnectionClosed, match="half-closed"):
                await conn.send(b"after eof")
            replies = [m async for m in conn]
            assert replies == [b"A", b"B", b"done"]
            await conn.close()

    run(main())


def test_write_eof_seen_by_a_plain_peer(run: Any) -> None:
    async def main() -> None:
        conn, peer = await connect_to_raw_peer()
        try:
            await conn.send(b"last")
            conn.write_eof()
            data = await asyncio.wait_for(raw_read_until_eof(peer), 10)
            assert frames_of(data) == [b"last"]
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(peer, LengthPrefixFramer().frame(b"still open"))
            assert await conn.recv() == b"still open"
        finally:
            peer.close()
        with pytest.raises(ConnectionClosed):
            await conn.recv()
        await conn.close()

    run(main())


def test_messages_in_flight_when_we_close_are_still_delivered(run: Any) -> None:
    """The peer sends before it sees our FIN: those messages still reach recv()."""

    async def main() -> None:
        conn, peer = await connect_to_raw_peer()
        loop = asyncio.get_running_loop()
        try:
            closed = conn.close()
            assert await asyncio.wait_for(raw_read_until_eof(peer), 10) == b""
            await loop.sock_sendall(peer, LengthPrefixFramer().frame_many([b"x", b"y"]))
            peer.shutdown(socket.SHUT_WR)
            await asyncio.wait_for(closed, 10)
        finally:
            peer.close()
        assert [await conn.recv(), await conn.recv()] == [b"x", b"y"]
        with pytest.raises(ConnectionClosed):
            await conn.recv()

    run(main())


def test_close_timeout_aborts_when_the_peer_never_closes(run: Any) -> None:
    async def main() -> None:
        conn, peer = await connect_to_raw_peer()
        try:
            t0 = time.monotonic()
            await asyncio.wait_for(conn.close(timeout=0.3), 10)
            assert 0.25 < time.monotonic() - t0 < 5
            assert conn.state == "closed"
            loop = asyncio.get_running_loop()
            assert await loop.sock_recv(peer, 100) == b""  # our FIN came first...
            # ...then the reset: Linux reports a RST received in CLOSE_WAIT as EPIPE.
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    peer.send(b"anyone there?")
                    await asyncio.sleep(0.02)
        finally:
            peer.close()

    run(main())


# ------------------------------------------------------------------ flow control


def test_pause_and_resume_reading(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            conn = await polysock.connect(HOST, srv.port)
            conn.pause_reading()
            await conn.send(b"ping")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.recv(), 0.3)  # the echo is not read while paused
            conn.resume_reading()
            assert await asyncio.wait_for(conn.recv(), 10) == b"ping"
            await conn.close()

    run(main())


def test_send_waits_for_a_peer_that_does_not_read(run: Any) -> None:
    limits = Limits(
        write_high_water=64 * 1024, write_low_water=16 * 1024, flush_threshold=16 * 1024
    )
    chunk = b"z" * 8192
    framed = len(chunk) + 4
    bound = limits.write_high_water + limits.flush_threshold + 2 * framed

    async def main() -> None:
        conn, peer = await connect_to_raw_peer(rcvbuf=32 * 1024, limits=limits)
        conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        try:
            sent = 0
            peak = 0
            while True:
                try:
                    await asyncio.wait_for(conn.send(chunk), 0.5)
                except asyncio.TimeoutError:
                    sent += 1  # that one was queued; only the wait was cut short
                    break
                sent += 1
                peak = max(peak, conn.write_buffer_size)
                assert sent * framed < 32 * 1024 * 1024, "send never waited"
            peak = max(peak, conn.write_buffer_size)
            # Bounded: the high-water mark plus at most one coalesced flush and a message.
            assert peak <= bound
            assert conn.write_buffer_size > limits.write_low_water  # still held back
            # Still blocked a while later: memory does not grow.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.send(chunk), 0.2)
            sent += 1
            assert conn.write_buffer_size <= bound + framed

            # The peer reads: sending resumes.
            total = sent * framed
            reader = asyncio.ensure_future(raw_read_exactly(peer, total + 10 * framed))
            for _ in range(10):
                await asyncio.wait_for(conn.send(chunk), 10)
            data = await asyncio.wait_for(reader, 20)
            assert frames_of(data) == [chunk] * (sent + 10)
            await conn.close(timeout=0.1)
        finally:
            peer.close()

    run(main())


def test_reading_pauses_when_the_application_does_not_recv(run: Any) -> None:
    limits = Limits(recv_queue=64 * 1024)
    msg = b"r" * 1024
    total = 2000  # 2 MB: more than the queue plus the socket buffers

    async def main() -> None:
        loop = asyncio.get_running_loop()
        blocked = asyncio.Event()
        finished: asyncio.Future[int] = loop.create_future()

        async def session(conn: polysock.Connection) -> None:
            conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            sent = 0
            while sent < total:
                try:
                    await asyncio.wait_for(conn.send(msg), 0.5)
                except asyncio.TimeoutError:
                    blocked.set()
                    await conn.drain()
                sent += 1
            finished.set_result(sent)

        async with await polysock.serve(
            session, HOST, limits=Limits(write_high_water=64 * 1024)
        ) as srv:
            conn = await polysock.connect(HOST, srv.port, limits=limits)
            conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            await asyncio.wait_for(blocked.wait(), 20)  # the server could not send everything
            assert not finished.done()
            assert not conn.transport.is_reading()
            first = await conn.recv_batch()
            # What was queued unread: the limit plus at most one read's worth of frames.
            assert sum(map(len, first)) <= limits.recv_queue + 512 * 1024
            got = list(first)
            while len(got) < total:
                got += await conn.recv_batch()
            assert got == [msg] * total
            assert await asyncio.wait_for(finished, 10) == total
            await conn.close()

    run(main())


# ------------------------------------------------------------------ protocol errors


@pytest.mark.parametrize(
    ("framing", "options", "bad", "error"),
    [
        ("length-prefix", {"max_frame_size": 1024}, struct.pack(">I", 1_000_000), FrameTooLarge),
        ("length-prefix", {"magic": b"PS"}, b"GARBAGE!", RemoteProtocolError),
        ("delimiter", {"max_frame_size": 1024}, b"g" * 5000, FrameTooLarge),
    ],
)
def test_protocol_error_closes_only_that_connection(
    run: Any, framing: str, options: dict[str, Any], bad: bytes, error: type[Exception]
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[tuple[list[bytes], BaseException, float]] = loop.create_future()

        async def session(conn: polysock.Connection) -> None:
            got = []
            try:
                async for msg in conn:
                    got.append(msg)
                    if msg.startswith(b"good-"):
                        await conn.send(msg)
            except RemoteProtocolError as exc:
                outcome.set_result((got, exc, time.monotonic()))

        framer = polysock.framer(framing, **options)
        async with await polysock.serve(
            session, HOST, framing=framing, framing_options=options
        ) as srv:
            good = await polysock.connect(HOST, srv.port, framing=framing, framing_options=options)
            await good.send(b"good-1")
            assert await good.recv() == b"good-1"

            reader, writer = await asyncio.open_connection(HOST, srv.port)
            t0 = time.monotonic()
            writer.write(framer.frame_many([b"bad-1", b"bad-2"]) + bad)
            got, exc, when = await asyncio.wait_for(outcome, 10)
            assert got == [b"bad-1", b"bad-2"]  # what preceded the error was delivered
            assert isinstance(exc, error)
            assert when - t0 < 1.5, "recv() did not raise the protocol error promptly"
            # The offending connection is closed by the server...
            with contextlib.suppress(ConnectionResetError):  # FIN or RST: either ends it
                assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            # ...and the other one is untouched.
            for i in range(2, 5):
                await good.send(b"good-%d" % i)
                assert await good.recv() == b"good-%d" % i
            assert good.state == "open"
            await good.close()

    run(main())


def test_client_recv_raises_the_protocol_error_after_the_good_frames(run: Any) -> None:
    async def main() -> None:
        conn, peer = await connect_to_raw_peer(framing_options={"magic": b"PS"})
        loop = asyncio.get_running_loop()
        try:
            framer = LengthPrefixFramer(magic=b"PS")
            await loop.sock_sendall(peer, framer.frame_many([b"1", b"2"]) + b"NOPE")
            assert await conn.recv() == b"1"
            assert await conn.recv_batch() == [b"2"]
            with pytest.raises(RemoteProtocolError, match="expected frame header"):
                await asyncio.wait_for(conn.recv(), 1.5)
            with pytest.raises(RemoteProtocolError):  # and it stays raised
                await conn.recv()
            with pytest.raises(ConnectionClosed):
                await conn.send(b"x")
            assert isinstance(conn.error, RemoteProtocolError)
        finally:
            peer.close()
        await asyncio.wait_for(conn.wait_closed(), 10)

    run(main())


def test_incomplete_frame_at_eof(run: Any) -> None:
    async def main() -> None:
        conn, peer = await connect_to_raw_peer()
        loop = asyncio.get_running_loop()
        try:
            whole = LengthPrefixFramer().frame(b"whole")
            await loop.sock_sendall(peer, whole + struct.pack(">I", 10) + b"part")
            peer.shutdown(socket.SHUT_WR)
            assert await conn.recv() == b"whole"
            with pytest.raises(IncompleteFrame):
                await conn.recv()
        finally:
            peer.close()
        await asyncio.wait_for(conn.wait_closed(), 10)

    run(main())


def test_failing_session_aborts_only_its_connection(run: Any, caplog: Any) -> None:
    async def main() -> None:
        async def session(conn: polysock.Connection) -> None:
            msg = await conn.recv()
            if msg == b"boom":
                raise ValueError("session bug")
            await echo(conn)

        async with await polysock.serve(session, HOST) as srv:
            other = await polysock.connect(HOST, srv.port)
            await other.send(b"hello")
            conn = await polysock.connect(HOST, srv.port)
            await conn.send(b"boom")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(conn.recv(), 10)
            assert isinstance(info.value.reason, ConnectionResetError)
            await other.send(b"still here")
            assert await other.recv() == b"still here"
            await other.close()
            await conn.close()

    with caplog.at_level(logging.ERROR, logger="polysock"):
        run(main())
    assert any(
        "session bug" in r.getMessage() or (r.exc_info and "session bug" in str(r.exc_info[1]))
        for r in caplog.records
    )


# ------------------------------------------------------------------ handlers


def test_client_handler_events_in_order(run: Any) -> None:
    async def main() -> None:
        async def session(conn: polysock.Connection) -> None:
            await conn.send(b"one")
            await conn.send(b"two")

        async with await polysock.serve(session, HOST) as srv:
            rec = Recorder()
            conn = await polysock.connect(HOST, srv.port, handler=rec)
            assert conn.handler is rec
            assert rec.names[0] == "made"
            await rec.until(lambda: rec.has("lost"))
            assert rec.messages == [b"one", b"two"]
            names = rec.names
            assert names[0] == "made"
            assert set(names[1:-2]) == {"messages"}
            assert names[-2:] == ["eof", "lost"]
            assert rec.events[-1] == ("lost", None)  # orderly
            assert rec.threads == {threading.get_ident()}  # the loop's thread
            assert conn.state == "closed"

    run(main())


def test_server_handler_factory_echo_and_connection_lost_reasons(run: Any) -> None:
    async def main() -> None:
        handlers: list[Recorder] = []

        class Echo(Recorder):
            def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
                super().messages_received(conn, messages)
                conn.write_many(messages)

        def factory() -> Handler:
            h = Echo()
            handlers.append(h)
            return h

        async with await polysock.serve(handler_factory=factory, host=HOST) as srv:
            a = await polysock.connect(HOST, srv.port)
            b = await polysock.connect(HOST, srv.port)
            await a.send(b"from a")
            await b.send(b"from b")
            assert await a.recv() == b"from a"
            assert await b.recv() == b"from b"
            assert len(handlers) == 2
            await a.close()  # orderly: eof, then lost(None)
            b.abort()  # reset: lost(ConnectionResetError)
            for h in handlers:
                await h.until(lambda h=h: h.has("lost"))
            by_msg = {tuple(h.messages): h for h in handlers}
            ha, hb = by_msg[(b"from a",)], by_msg[(b"from b",)]
            assert ha.names == ["made", "messages", "eof", "lost"]
            assert ha.events[-1] == ("lost", None)
            assert hb.names[:2] == ["made", "messages"] and hb.names[-1] == "lost"
            assert "eof" not in hb.names
            assert isinstance(hb.events[-1][1], ConnectionResetError)

    run(main())


def test_handler_protocol_error_event(run: Any) -> None:
    async def main() -> None:
        rec = Recorder()
        async with await polysock.serve(
            handler_factory=lambda: rec, host=HOST, framing_options={"max_frame_size": 100}
        ) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(LengthPrefixFramer().frame(b"ok") + struct.pack(">I", 101))
            await rec.until(lambda: rec.has("protocol_error"))
            assert rec.messages == [b"ok"]
            error = rec.events[rec.names.index("protocol_error")][1]
            assert isinstance(error, FrameTooLarge)
            assert (error.limit, error.size) == (100, 101)
            assert await asyncio.wait_for(reader.read(), 10) == b""  # FIN from the server
            writer.close()
            await rec.until(lambda: rec.has("lost"))
            assert rec.events[-1] == ("lost", error)

    run(main())


def test_handler_that_raises_aborts_only_its_connection(run: Any, caplog: Any) -> None:
    async def main() -> None:
        class Fragile(Recorder):
            def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
                super().messages_received(conn, messages)
                if b"crash" in messages:
                    raise RuntimeError("handler bug")
                conn.write_many(messages)

        async with await polysock.serve(handler_factory=Fragile, host=HOST) as srv:
            ok = await polysock.connect(HOST, srv.port)
            bad = await polysock.connect(HOST, srv.port)
            await bad.send(b"crash")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(bad.recv(), 10)
            await ok.send(b"fine")
            assert await ok.recv() == b"fine"
            await ok.close()
            await bad.close()

    with caplog.at_level(logging.ERROR, logger="polysock"):
        run(main())
    assert "messages_received" in caplog.text


def test_handler_write_drained_after_backpressure(run: Any) -> None:
    limits = Limits(write_high_water=32 * 1024, write_low_water=8 * 1024, flush_threshold=8 * 1024)

    async def main() -> None:
        rec = Recorder()
        conn, peer = await connect_to_raw_peer(rcvbuf=16 * 1024, handler=rec, limits=limits)
        conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        try:
            chunk = b"d" * 4096
            n = 0
            # Write on the loop until the transport reports its buffer full.
            while conn.transport.get_write_buffer_size() <= limits.write_high_water:
                conn.write(chunk)
                n += 1
                await asyncio.sleep(0)  # let the coalesced writes reach the transport
                assert n < 100_000
            # Far more than the kernel can absorb while we look: drain() must wait.
            conn.write_many([chunk] * 256)
            n += 256
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.drain(), 0.2)
            assert not rec.has("drained")
            data = await asyncio.wait_for(raw_read_exactly(peer, n * (len(chunk) + 4)), 20)
            assert frames_of(data) == [chunk] * n
            await rec.until(lambda: rec.has("drained"))
            await asyncio.wait_for(conn.drain(), 1)
            assert conn.write_buffer_size <= limits.write_low_water
        finally:
            peer.close()
        await asyncio.wait_for(conn.wait_closed(), 10)
        assert rec.names[-1] == "lost"

    run(main())


def test_handler_can_keep_the_connection_half_open(run: Any) -> None:
    async def main() -> None:
        rec = Recorder(keep_open_on_eof=True)
        conn, peer = await connect_to_raw_peer(handler=rec)
        loop = asyncio.get_running_loop()
        try:
            peer.shutdown(socket.SHUT_WR)
            await rec.until(lambda: rec.has("eof"))
            conn.write(b"after your eof")
            data = await asyncio.wait_for(raw_read_exactly(peer, 4 + 14), 10)
            assert frames_of(data) == [b"after your eof"]
            assert not rec.has("lost")
            await asyncio.wait_for(conn.close(), 10)
            assert await loop.sock_recv(peer, 10) == b""
        finally:
            peer.close()
        assert rec.names == ["made", "eof", "lost"]

    run(main())


# ------------------------------------------------------------------ socket access


def test_nodelay_and_socket_options(run: Any) -> None:
    async def main() -> None:
        async with await polysock.serve(echo, HOST) as srv:
            fast = await polysock.connect(HOST, srv.port)
            slow = await polysock.connect(HOST, srv.port, nodelay=False)
            assert fast.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert not slow.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert fast.get_extra_info("peername") == (HOST, srv.port)
            assert "client" in repr(fast) and "open" in repr(fast)
            await fast.close()
            await slow.close()

    run(main())


def test_urgent_data_inline_and_duplicate_socket(run: Any) -> None:
    """What mactcp needs: SO_OOBINLINE through ``conn.socket`` and MSG_OOB through a dup."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        conn, peer = await connect_to_raw_peer(framing="raw")
        try:
            conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            peer.send(b"abc")
            peer.send(b"!", socket.MSG_OOB)
            peer.send(b"def")
            got = b""
            while len(got) < 7:
                got += b"".join(await conn.recv_batch())
            assert got == b"abc!def"  # the urgent byte stays in the stream

            await conn.send(b"normal")
            await conn.drain()
            dup = conn.duplicate_socket()
            try:
                dup.send(b"U", socket.MSG_OOB)
            finally:
                dup.close()
            _, _, exceptional = await loop.run_in_executor(None, select.select, [], [], [peer], 5)
            assert exceptional, "no urgent data signalled"
            assert peer.recv(1, socket.MSG_OOB) == b"U"
            assert await raw_read_exactly(peer, 6) == b"normal"
            await conn.send(b"after dup")  # the dup's close did not close the connection
            assert await raw_read_exactly(peer, 9) == b"after dup"
        finally:
            peer.close()
        await asyncio.wait_for(conn.close(), 10)
        with pytest.raises(ConnectionClosed):
            conn.duplicate_socket()

    run(main())


# ------------------------------------------------------------------ server lifecycle


def test_server_close_stops_accepting_but_keeps_connections(run: Any) -> None:
    async def main() -> None:
        srv = await polysock.serve(echo, HOST)
        conn = await polysock.connect(HOST, srv.port)
        port = srv.port
        srv.close()
        assert not srv.is_serving()
        with pytest.raises(OSError):
            await polysock.connect(HOST, port, timeout=5)
        await conn.send(b"still served")
        assert await conn.recv() == b"still served"
        t0 = time.monotonic()
        closing = asyncio.ensure_future(srv.aclose())  # closes live connections gracefully
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(conn.recv(), 10)
        assert info.value.reason is None
        await conn.close()  # our FIN completes the server's graceful close
        await asyncio.wait_for(closing, 10)
        assert time.monotonic() - t0 < 5
        assert not srv.connections

    run(main())


def test_server_close_connections_abort(run: Any) -> None:
    async def main() -> None:
        srv = await polysock.serve(echo, HOST)
        conns = [await polysock.connect(HOST, srv.port) for _ in range(3)]
        for c in conns:
            await c.send(b"x")
            assert await c.recv() == b"x"
        assert len(srv.connections) == 3
        await asyncio.wait_for(srv.close_connections(abort=True), 10)
        assert not srv.connections
        for c in conns:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(c.recv(), 10)
            assert isinstance(info.value.reason, ConnectionResetError)
        await srv.aclose()

    run(main())
