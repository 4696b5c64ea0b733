"""No busy loop: 0.4.0 spun at 100 % CPU after a peer's FIN, after stop() and after its own
close(). Measured as this process's CPU time over a quiet window."""

from __future__ import annotations

import socket

import pytest

from simplesockets import TCPClient, TCPServer
from ss_helpers import Recorder, cpu_during, eventually, port_of


@pytest.mark.timeout(60)
def test_idle_server_with_idle_clients_and_stopped_server() -> None:
    """Acceptance 26."""
    server = TCPServer()
    server.setup(port=0)
    clients = []
    try:
        for _ in range(5):
            client = TCPClient()
            client.setup("127.0.0.1", port_of(server))
            assert client.connect()
            client.autorecv()
            clients.append(client)
        eventually(lambda: len(server.clients) == 5)
        assert cpu_during(3.0) < 0.05
        stopped = TCPServer()
        stopped.setup(port=0)
        stopped.stop()
        try:
            assert cpu_during(2.0) < 0.05
        finally:
            stopped.close()
    finally:
        for client in clients:
            client.close()
        server.close()


@pytest.mark.timeout(60)
def test_no_cpu_after_disconnects_of_every_kind() -> None:
    rec = Recorder()
    server = TCPServer()
    server.setup(port=0, on_disconnect=rec.on_disconnect)
    killed = TCPServer()
    killed.setup(port=0)
    try:
        port = port_of(server)
        # peer FIN, our client's close(), server-side disconnect, server killed
        raw = socket.create_connection(("127.0.0.1", port))
        a = TCPClient()
        a.setup("127.0.0.1", port)
        assert a.connect()
        a.autorecv()
        b = TCPClient()
        b.setup("127.0.0.1", port, on_disconnect=lambda: rec.add("b-disconnect"))
        assert b.connect()
        b.autorecv()
        eventually(lambda: len(server.clients) == 3)
        raw.close()
        a.close()
        server.disconnect(b.socket.getsockname())
        rec.wait_for("disconnect", 3)
        rec.wait_for("b-disconnect")
        killed.exit_accept()
        assert cpu_during(2.0) < 0.05
        assert len(rec.named("disconnect")) == 3 and len(rec.named("b-disconnect")) == 1
    finally:
        server.close()
        killed.close()
