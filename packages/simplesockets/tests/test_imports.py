"""Import surface (spec section 2) and the polysock plugin registration."""

from __future__ import annotations

import subprocess
import sys

import pytest

import simplesockets


def test_all_import_paths_in_a_fresh_interpreter_without_pycryptodome() -> None:
    """Acceptance 1: the four import lines work and pull in no Crypto package."""
    code = """
import sys
from simplesockets import TCPServer, TCPClient
from simplesockets.simplesockets import TCPClient as C2, TCPServer as S2
from simplesockets.simple_sockets import (
    TCPServer as S3, TCPClient as C3, Server_Client, Socket_Response
)
import simplesockets.typehints
import simplesockets
assert C2 is TCPClient is C3 and S2 is TCPServer is S3
assert not any(m == "Crypto" or m.startswith("Crypto.") for m in sys.modules)
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_module_names() -> None:
    from simplesockets import simple_sockets, typehints
    from simplesockets import simplesockets as alias

    names = ["TCPServer", "TCPClient", "Server_Client", "Socket_Response", "ReceivedData",
             "Event", "error", "SocketError", "SetupError", "Better_Exception"]
    for name in names:
        obj = getattr(simplesockets, name)
        assert getattr(simple_sockets, name) is obj
        assert getattr(alias, name) is obj
    for name in ["Socket_Response", "Server_Client", "Event", "error", "SocketError",
                 "SetupError", "Better_Exception"]:
        assert getattr(typehints, name) is getattr(simplesockets, name)
    assert issubclass(simplesockets.SetupError, simplesockets.SocketError)
    assert issubclass(simplesockets.SocketError, simplesockets.error)


@pytest.mark.parametrize("name", ["SecureServer", "SecureClient", "secure_sockets"])
def test_secure_classes_are_not_provided(name: str) -> None:
    with pytest.raises(ImportError, match=f"{name} is not provided by polysock-simplesockets"):
        exec(f"from simplesockets import {name}")


def test_unknown_attribute_is_attribute_error() -> None:
    with pytest.raises(AttributeError):
        simplesockets.does_not_exist  # noqa: B018


def test_flavour_is_registered_through_the_entry_point() -> None:
    from polysock.plugins import PluginManager

    pm = PluginManager()
    pm.load_entrypoints()
    info = {p.name: p for p in pm.plugin_infos()}
    assert "simplesockets" in info, list(info)
    assert info["simplesockets"].flavours == ("simplesockets",)
    assert info["simplesockets"].distribution == "polysock-simplesockets"
    flavour = pm.flavour("simplesockets")
    assert flavour.framing == "raw" and flavour.modules == ("simplesockets",)
