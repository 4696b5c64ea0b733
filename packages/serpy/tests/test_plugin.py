"""The plugin: serpy's framings registered through the core's hooks and usable by any
polysock code (here the core's asyncio API talking to serpy servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import polysock
import pytest
import serpy
import serpy2
from conftest import HOST, port_of, wait_until
from polysock import plugins
from polysock_serpy.framing import Serpy2Framer, SerpyBlockFramer, TypedFrame

pytestmark = pytest.mark.timeout(30)


def test_registered_through_the_entry_point() -> None:
    info = {i.name: i for i in plugins.list()}["serpy"]
    assert info.distribution == "polysock-serpy"
    assert info.framers == ("serpy", "serpy2")
    assert info.flavours == ("serpy", "serpy2")
    pm = plugins.get_plugin_manager()
    assert pm.flavour("serpy").modules == ("serpy",)
    assert pm.flavour("serpy2").framing == "serpy2"
    for name, cls in (("serpy", SerpyBlockFramer), ("serpy2", Serpy2Framer)):
        framer = polysock.framer(name, max_frame_size=1000)
        assert type(framer) is cls and framer.max_frame_size == 1000
        assert isinstance(framer, polysock.Framer)


def test_core_asyncio_client_talks_to_a_serpy_server(cleanup: Any) -> None:
    s = cleanup(serpy.Server(HOST, 0).start())

    async def client() -> bytes:
        conn = await polysock.connect(HOST, port_of(s), framing="serpy", timeout=5)
        await conn.send(b"from asyncio")
        reply = await asyncio.wait_for(conn.recv(), 5)
        await conn.close()
        return reply

    async def main() -> bytes:
        task = asyncio.ensure_future(client())
        child = await asyncio.to_thread(s.getConnection, 5)
        assert await asyncio.to_thread(child.getData, 5) == b"from asyncio"
        child.sendData("hi back")
        return await task

    assert asyncio.run(main()) == b"hi back"


def test_core_asyncio_client_talks_to_a_serpy2_server(cleanup: Any) -> None:
    s = cleanup(serpy2.Server(HOST, 0).start())

    async def main() -> Any:
        conn = await polysock.connect(HOST, port_of(s), framing="serpy2", timeout=5)
        await conn.send(TypedFrame((7).to_bytes(8, "little", signed=True), 0x01))
        await conn.send(b"raw")
        child = await asyncio.to_thread(
            wait_until, lambda: s.connections and s.connections[0], 5, "child"
        )
        got = [await asyncio.to_thread(child.getData, 5) for _ in range(2)]
        child.sendData("typed")
        reply = await asyncio.wait_for(conn.recv(), 5)
        await conn.close()
        return got, reply

    got, reply = asyncio.run(main())
    assert got == [7, b"raw"]
    assert isinstance(reply, TypedFrame) and reply.type_code == 0x21 and reply == b"typed"
