"""Import surface, constants, signatures, version, and the polysock plugin registration."""

from __future__ import annotations

import _thread
import asyncio
import importlib.metadata
import shutil
import subprocess
import sys
import threading

import polysock
import pytest
from conftest import Recorder, raw_connect, recv_exactly, script_env
from polysock import plugins

import tcpcom
from tcpcom import TCPClient, TCPServer

SERVER_STATES = ["PORT_IN_USE", "CONNECTED", "LISTENING", "TERMINATED", "MESSAGE"]
CLIENT_STATES = [
    "CONNECTING", "SERVER_OCCUPIED", "CONNECTION_FAILED", "CONNECTED", "DISCONNECTED", "MESSAGE",
]


def test_a1_star_import_provides_the_originals_names() -> None:
    ns: dict[str, object] = {}
    exec("from tcpcom import *", ns)
    for name in ("TCPServer", "TCPClient", "TCPCOM_VERSION", "time", "socket", "sys",
                 "Thread", "thread"):
        assert name in ns, name
    assert ns["time"] is sys.modules["time"]
    assert ns["socket"] is sys.modules["socket"]
    assert ns["sys"] is sys
    assert ns["Thread"] is threading.Thread
    assert ns["thread"] is _thread
    for internal in ("ServerHandler", "ClientHandler", "TimeoutThread", "HTTPServer",
                     "HTTPClient", "ThingSpeakChannel"):
        assert internal not in ns


def test_a1_other_import_forms() -> None:
    from tcpcom import TCPClient as C
    from tcpcom import TCPServer as S

    assert S is tcpcom.TCPServer and C is tcpcom.TCPClient


def test_a2_constants_are_their_own_names() -> None:
    for name in SERVER_STATES:
        assert getattr(TCPServer, name) == name
    for name in CLIENT_STATES:
        assert getattr(TCPClient, name) == name
    assert TCPServer.CONNECTED == TCPClient.CONNECTED == "CONNECTED"
    assert (TCPClient.OCCUPIED_MIN_WINDOW, TCPClient.OCCUPIED_RTT_FACTOR,
            TCPClient.OCCUPIED_MAX_WINDOW) == (0.2, 10, 2.0)


def test_a30_d16_version_is_the_package_version() -> None:
    version = importlib.metadata.version("polysock-tcpcom")
    assert TCPServer.getVersion() == TCPClient.getVersion() == tcpcom.TCPCOM_VERSION == version


def test_a31_positional_end_of_block_is_refused() -> None:
    with pytest.raises(TypeError, match="endOfBlock must be passed as a keyword argument"):
        TCPServer(0, None, "\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="endOfBlock must be passed as a keyword argument"):
        TCPServer(0, None, b"\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="endOfBlock must be passed as a keyword argument"):
        TCPClient("127.0.0.1", 1, None, "\n")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "ab", "é", b"", b"ab"])
def test_end_of_block_must_be_one_ascii_byte(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        TCPServer(0, None, endOfBlock=bad)
    with pytest.raises(ValueError):
        TCPClient("127.0.0.1", 1, None, endOfBlock=bad)


def test_argument_errors() -> None:
    with pytest.raises(TypeError):
        TCPServer(0, None, endOfBlock=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TCPServer(70000, None)
    with pytest.raises(TypeError):
        TCPServer("5001", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TCPServer(0, "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TCPServer(0, None, maxMessageSize=0)
    with pytest.raises(ValueError):
        TCPClient("127.0.0.1", 1, None, occupiedWindow=-1)
    with pytest.raises(TypeError):
        TCPClient(None, 1, None)  # type: ignore[arg-type]


def test_is_verbose_is_an_instance_attribute() -> None:
    a = TCPClient("127.0.0.1", 1, None, True)
    b = TCPClient("127.0.0.1", 1, None)
    assert a.isVerbose is True and b.isVerbose is False
    assert "isVerbose" not in vars(TCPClient) and "isVerbose" not in vars(TCPServer)


def test_a33_get_ip_address_is_dotted_ipv4() -> None:
    address = TCPServer.getIPAddress()
    parts = address.split(".")
    assert len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a33_without_a_default_route_it_is_loopback() -> None:
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("user/network namespaces are not available here")
    out = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c",
         "from tcpcom import TCPServer; print(TCPServer.getIPAddress())"],
        capture_output=True, text=True, timeout=30, env=script_env(), check=True,
    )
    assert out.stdout.strip() == "127.0.0.1"


# ---------------------------------------------------------------- the polysock plugin


def test_the_framing_is_registered_through_the_hooks() -> None:
    pm = plugins.get_plugin_manager()
    _factory, plugin_name = pm.registry.framers["tcpcom"]
    assert plugin_name == "tcpcom"
    framer = polysock.framer("tcpcom")
    assert isinstance(framer, polysock.DelimiterFramer)
    assert framer.frame(b"hello") == bytes.fromhex("68 65 6c 6c 6f 00")
    assert framer.receive_data(bytes.fromhex("ff 00 fe 41 00 41")) == [b"\xff", b"\xfeA"]
    assert framer.receive_data(b"") == []  # the tail is dropped at EOF, not an error
    assert polysock.framer("tcpcom", delimiter="\n").frame(b"x") == b"x\n"
    with pytest.raises(ValueError):
        polysock.framer("tcpcom", delimiter=b"\r\n")


def test_the_flavour_is_registered() -> None:
    flavour = plugins.get_plugin_manager().flavour("tcpcom")
    assert flavour.framing == "tcpcom"
    assert flavour.modules == ("tcpcom",)
    info = next(i for i in plugins.list() if i.name == "tcpcom")
    assert info.distribution == "polysock-tcpcom"
    assert info.framers == ("tcpcom",) and info.flavours == ("tcpcom",)


def test_polysock_cli_lists_the_plugin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "polysock", "plugins"],
        capture_output=True, text=True, timeout=60, env=script_env(), check=True,
    )
    line = next(line for line in out.stdout.splitlines() if line.startswith("tcpcom"))
    assert "polysock-tcpcom" in line


def test_core_serve_with_framing_tcpcom_talks_to_tcp_client() -> None:
    """What ``polysock serve --framing tcpcom`` does: a plain core server, by name."""
    from polysock.runtime import get_runtime

    async def echo(conn: polysock.Connection) -> None:
        async for msg in conn:
            await conn.send(b"core:" + msg)

    rt = get_runtime()
    server = rt.run(polysock.serve(echo, "127.0.0.1", 0, framing="tcpcom"), 10)
    try:
        rec = Recorder()
        client = TCPClient("127.0.0.1", server.port, rec)
        assert client.connect()
        assert client.sendMessage("grüß", 5) == "core:grüß"
        client.disconnect()
        raw = raw_connect(server.port)
        raw.sendall("é\0".encode())
        assert recv_exactly(raw, 8) == "core:é\0".encode()
        raw.close()
    finally:
        rt.run(server.aclose(1.0), 10)


def test_works_without_entry_point_autoload() -> None:
    code = (
        "from tcpcom import *\n"
        "got = []\n"
        "def cb(state, msg):\n"
        "    got.append((state, msg))\n"
        "    if state == 'MESSAGE': server.terminate()\n"
        "server = TCPServer(0, cb)\n"
        "c = TCPClient('127.0.0.1', server.port, None)\n"
        "assert c.connect()\n"
        "c.sendMessage('hi')\n"
        "from polysock import plugins\n"
        "print(sorted(plugins.get_plugin_manager().registry.framers))\n"
    )
    env = script_env()
    env["POLYSOCK_NO_AUTOLOAD"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env, check=True)
    assert "'tcpcom'" in out.stdout


def test_asyncio_core_client_against_tcp_server() -> None:
    """A core asyncio client using framing "tcpcom" against TCPServer."""
    from polysock.runtime import get_runtime

    rec = Recorder()
    srv = TCPServer(0, rec)

    async def talk() -> bytes:
        conn = await polysock.connect("127.0.0.1", srv.port, framing="tcpcom", timeout=10)
        await conn.send("héllo€".encode())
        srv_msg = await asyncio.wait_for(conn.recv(), 10)
        await conn.close()
        return srv_msg

    def reply(state: str, msg: str) -> None:
        if state == "MESSAGE":
            srv.sendMessage(msg[::-1])

    rec.action = reply
    assert get_runtime().run(talk(), 20) == "€olléh".encode()
    srv.terminate()
