"""Fixtures for the simplesockets flavour: real servers, clients and raw peers on loopback."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simplesockets import TCPClient, TCPServer
from ss_helpers import Recorder


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_server() -> Iterator[Callable[..., TCPServer]]:
    servers: list[TCPServer] = []

    def make(max_connections: int | None = None, **setup: Any) -> TCPServer:
        server = TCPServer(max_connections)
        setup.setdefault("port", 0)
        server.setup(**setup)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., TCPClient]]:
    clients: list[TCPClient] = []

    def make(port: int, connect: bool = True, autorecv: bool = True, **setup: Any) -> TCPClient:
        client = TCPClient()
        client.setup("127.0.0.1", port, **setup)
        clients.append(client)
        if connect:
            assert client.connect()
            if autorecv:
                client.autorecv()
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def raw_peer() -> Iterator[Callable[[int], socket.socket]]:
    socks: list[socket.socket] = []

    def connect(port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(sock)
        return sock

    yield connect
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


@pytest.fixture
def raw_listener() -> Iterator[socket.socket]:
    """A plain listening socket standing in for a server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(5)
    yield sock
    sock.close()


