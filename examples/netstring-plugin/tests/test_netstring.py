"""The netstring framer: the framer contract (polysock.testing), the wire format byte for
byte, its errors, the plugin registration, and real connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import polysock
import pytest
from polysock import (
    Connection,
    ConnectionClosed,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
)
from polysock.plugins import PluginManager
from polysock.runtime import get_runtime, serve_sync
from polysock.testing import FramerContractTests, feed, loopback_pair, loopback_pair_sync
from polysock_netstring import NetstringFramer
from polysock_netstring import plugin as netstring_plugin


class TestNetstringContract(FramerContractTests):
    """The whole framer contract: round trip, every split, byte at a time, garbage, limits
    on send and receive, end of stream."""

    framer_factory = NetstringFramer


# -------------------------------------------------------------------- wire format


@pytest.mark.parametrize(
    ("payload", "wire"),
    [
        (b"hello", b"5:hello,"),
        (b"", b"0:,"),
        (b"hello world!", b"12:hello world!,"),
        ("\u3053\u3093\u306b\u3061\u306f".encode(), b"15:\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab"
         b"\xe3\x81\xa1\xe3\x81\xaf,"),
        (b"a,b:c", b"5:a,b:c,"),
        (b"x" * 1000, b"1000:" + b"x" * 1000 + b","),
    ],
)
def test_wire_format(payload: bytes, wire: bytes) -> None:
    framer = NetstringFramer()
    assert framer.frame(payload) == wire
    assert b"".join(framer.frame_pieces(payload)) == wire
    assert NetstringFramer().receive_data(wire) == [payload]


def test_a_batch_is_the_netstrings_one_after_the_other() -> None:
    framer = NetstringFramer()
    assert framer.frame_many([b"a", b"", b"bc"]) == b"1:a,0:,2:bc,"
    assert framer.frame_many(iter([b"a"])) == b"1:a,"
    assert NetstringFramer().receive_data(b"1:a,0:,2:bc,3:d") == [b"a", b"", b"bc"]


@pytest.mark.parametrize(
    ("stream", "error", "message"),
    [
        (b"5x", RemoteProtocolError, "malformed netstring length b'5x': b'x' is not a digit"),
        (b"05:hello,", RemoteProtocolError, "a length has no leading zeros"),
        (b":,", RemoteProtocolError, "the length is empty"),
        (b"-1:", RemoteProtocolError, "b'-' is not a digit"),
        (b" 5:hello,", RemoteProtocolError, "b' ' is not a digit"),
        (b"GET / HTTP/1.1\r\n", RemoteProtocolError, "is the peer speaking another framing?"),
        (b"5:hello!", RemoteProtocolError, "netstring of 5 bytes is not followed by ','"),
    ],
)
def test_malformed_input_is_a_remote_protocol_error_that_says_why(
    stream: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        NetstringFramer().receive_data(stream)
    assert message in str(info.value)


def test_frames_before_an_error_are_not_lost() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        NetstringFramer().receive_data(b"1:a,2:bc,x")
    assert info.value.frames == [b"a", b"bc"]


def test_declared_length_is_checked_before_the_body_arrives() -> None:
    framer = NetstringFramer(max_frame_size=100)
    assert framer.receive_data(b"100:") == []
    framer = NetstringFramer(max_frame_size=100)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"101")  # not even the colon yet
    assert info.value.limit == 100
    assert info.value.size == 101
    # an endless run of digits is refused after a handful of bytes, not buffered
    framer = NetstringFramer()
    with pytest.raises(FrameTooLarge):
        for digit in b"9" * 100:
            framer.receive_data(bytes([digit]))
    assert framer.buffered <= 9


def test_payload_over_the_limit_is_refused_on_send() -> None:
    framer = NetstringFramer(max_frame_size=4)
    assert framer.frame(b"1234") == b"4:1234,"
    with pytest.raises(LocalProtocolError, match="max_frame_size is 4"):
        framer.frame(b"12345")
    with pytest.raises(LocalProtocolError):
        framer.frame_many([b"1", b"12345"])


def test_end_of_stream() -> None:
    assert feed(NetstringFramer(), [b"1:a,"]) == ([b"a"], None)
    frames, error = feed(NetstringFramer(), [b"1:a,", b"3:ab"])
    assert frames == [b"a"]
    assert isinstance(error, IncompleteFrame)
    assert error.buffered == 4


# -------------------------------------------------------------------- the plugin


def test_plugin_registers_the_netstring_framing() -> None:
    pm = PluginManager(builtins_only=True)
    pm.register(netstring_plugin, name="netstring")
    framer = pm.make_framer("netstring", max_frame_size=10)
    assert isinstance(framer, NetstringFramer)
    assert framer.max_frame_size == 10
    (info,) = [i for i in pm.plugin_infos() if i.name == "netstring"]
    assert info.framers == ("netstring",)


# -------------------------------------------------------------------- real connections


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


@pytest.mark.timeout(60)
def test_registered_name_end_to_end() -> None:
    pm = PluginManager(builtins_only=True)
    pm.register(netstring_plugin, name="netstring")
    options = {"plugin_manager": pm}
    messages = [b"hello", b"", b"1:x,", b"y" * 100_000]

    async def main() -> None:
        async with loopback_pair(
            "netstring", {"max_frame_size": 200_000},
            server_options=options, client_options=options,
        ) as (client, server):
            assert isinstance(client.framer, NetstringFramer)
            assert client.framer.max_frame_size == 200_000
            for msg in messages:
                await client.send(msg)
            assert [await server.recv() for _ in messages] == messages
            await server.send(b"reply")
            assert await client.recv() == b"reply"

    run(main())


@pytest.mark.timeout(60)
def test_raw_socket_peer_sees_netstrings_byte_for_byte() -> None:
    """A plain socket talks to a polysock echo server that uses the framer: the bytes on the
    wire are exactly the netstrings; a malformed one ends only that connection, after the
    good netstring before it reached the application."""
    received: list[bytes] = []
    errors: list[Exception] = []
    ended = threading.Event()

    async def echo(conn: Connection) -> None:
        try:
            async for msg in conn:
                received.append(msg)
                with contextlib.suppress(ConnectionClosed):  # closing after a bad netstring
                    await conn.send(msg)
        except RemoteProtocolError as exc:
            errors.append(exc)
        finally:
            ended.set()

    server = serve_sync(echo, framing=NetstringFramer)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as peer:
            peer.sendall(b"5:hello,0:,3:a,b,")
            want = b"5:hello,0:,3:a,b,"
            got = b""
            while len(got) < len(want):
                chunk = peer.recv(4096)
                assert chunk, f"closed early after {got!r}"
                got += chunk
            assert got == want
            peer.sendall(b"2:ok,5x")
            # the server closes this connection (EOF; anything echoed first is fine)
            while peer.recv(4096):
                pass
        assert ended.wait(10), "the session did not end"
        assert received == [b"hello", b"", b"a,b", b"ok"]
        (error,) = errors
        assert "malformed netstring length b'5x'" in str(error)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as other:
            other.sendall(b"4:fine,")
            assert other.recv(7) == b"4:fine,"
    finally:
        get_runtime().run(server.aclose(), 15)


@pytest.mark.timeout(60)
def test_threaded_code_through_the_sync_pair() -> None:
    with loopback_pair_sync(NetstringFramer) as (client, server):
        client.send_many([b"one", b"two"])
        assert [server.recv(), server.recv()] == [b"one", b"two"]


def test_polysock_framer_finds_it_when_installed() -> None:
    """Through the real entry point (only when the distribution is installed)."""
    from importlib import metadata

    names = {ep.name for ep in metadata.entry_points(group="polysock")}
    if "netstring" not in names:
        pytest.skip("polysock-netstring is not installed (running from a checkout)")
    polysock.plugins.reset()
    try:
        assert isinstance(polysock.framer("netstring"), NetstringFramer)
        (info,) = [i for i in polysock.plugins.list() if i.name == "netstring"]
        assert info.distribution == "polysock-netstring"
        assert info.framers == ("netstring",)
    finally:
        polysock.plugins.reset()
