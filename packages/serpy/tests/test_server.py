"""Servers: refusal beyond nb_conn, nobody calling getConnection(), close() vs closeServer()."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import serpy as sp
import serpy2
from conftest import HOST, port_of, raw_client, wait_until

pytestmark = pytest.mark.timeout(60)


def test_bind_errors_raise_in_the_constructor(cleanup: Any) -> None:
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen()
    try:
        with pytest.raises(OSError):
            sp.Server(HOST, holder.getsockname()[1])  # listening elsewhere (no SO_REUSEPORT)
    finally:
        holder.close()
    s = cleanup(sp.Server(HOST, 0))
    assert s.serv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert s.start() is s and s.start() is s


@pytest.mark.parametrize("module", [sp, serpy2])
def test_acceptance_13_surplus_clients_are_refused(module: Any, cleanup: Any) -> None:
    s = cleanup(module.Server("", 0, nb_conn=2).start())
    port = port_of(s)
    a = cleanup(module.Connection().connect(HOST, port))
    cleanup(module.Connection().connect(HOST, port))
    wait_until(lambda: len(s.connections) == 2, what="two children")
    third = raw_client(port)
    t0 = time.monotonic()
    assert third.read_eof(timeout=2) == b""  # accepted, nothing sent, closed
    assert time.monotonic() - t0 < 0.5  # spec: 100 ms (margin for a loaded machine)
    assert len(s.connections) == 2
    third.close()
    a.close()
    wait_until(lambda: len(s.connections) == 1, what="a child left")
    fourth = cleanup(module.Connection().connect(HOST, port))
    fourth.sendData("served")
    wait_until(s.readableConnections, what="data from the fourth")
    assert s.readableConnections()[0].getData(timeout=5) in ("served", b"served")


@pytest.mark.parametrize("module", [sp, serpy2])
def test_acceptance_14_nobody_calls_get_connection(module: Any, cleanup: Any) -> None:
    s = cleanup(module.Server(HOST, 0, nb_conn=2).start())
    port = port_of(s)
    for i in range(50):
        c = module.Connection().connect(HOST, port)
        c.sendData(f"client {i}")
        c.close()
    wait_until(lambda: len(s.readableConnections()) == 50, timeout=20, what="50 messages")
    listed = s.getConnectionsList()
    got = [c.getData(timeout=5) for c in listed]
    if module is sp:
        assert got == [b"client %d" % i for i in range(50)]  # accept order
        children = [s.getConnection(timeout=5) for _ in range(50)]
        assert children == listed  # each child once, in accept order
        with pytest.raises(sp.queue.Empty):
            s.getConnection(timeout=0.05)
    else:
        assert got == [f"client {i}" for i in range(50)]

    wait_until(lambda: len(s) == 0, what="pruning of read, disconnected children")


def test_acceptance_15_close_keeps_children_closeserver_closes_them(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    child = s.getConnection(timeout=5)
    peer = cleanup(raw_client(port_of(s)))
    s.getConnection(timeout=5)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port_of(s)), timeout=2)
    c.sendData("still works")
    assert child.getData(timeout=5) == b"still works"
    child.sendData("back")
    assert c.getData(timeout=5) == b"back"
    with pytest.raises(sp.ConnectionClosed):
        s.getConnection()
    assert len(s) == 2  # the list is frozen (no pruning after close)
    s.closeServer()
    assert peer.read_eof() == b""
    with pytest.raises(sp.ConnectionClosed):
        c.getData(timeout=5)
    with pytest.raises(sp.ConnectionClosed):
        s.start()


def test_get_connection_after_close_returns_queued_children(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    cleanup(sp.Connection().connect(HOST, port_of(s)))
    wait_until(lambda: s.connections, what="child")
    s.close()
    assert isinstance(s.getConnection(), sp.Connection)
    with pytest.raises(sp.ConnectionClosed):
        s.getConnection(timeout=1)


def test_iteration_and_len(cleanup: Any) -> None:
    s = cleanup(serpy2.Server(HOST, 0).start())
    for _ in range(3):
        cleanup(serpy2.Connection().connect(HOST, port_of(s)))
    wait_until(lambda: len(s) == 3, what="three children")
    assert list(s) == s.getConnectionsList() == s.connections
    assert s.readableConnections() == []


def test_broadcast_pattern_delivers_the_original_text(cleanup: Any) -> None:
    # Acceptance 21 / sequence 10: forwarding with force_mode used to send base85 text.
    s = cleanup(sp.Server(HOST, 0).start())
    a = cleanup(sp.Connection().connect(HOST, port_of(s)))
    b = cleanup(sp.Connection().connect(HOST, port_of(s)))
    ca, cb = s.getConnection(timeout=5), s.getConnection(timeout=5)
    a.sendData("VOID : hi from A")
    data = ca.getData(timeout=5)
    with pytest.warns(UserWarning):
        cb.sendData(data, mode=ca.in_mode, force_mode=True)
    assert b.getData(timeout=5) == b"VOID : hi from A"
    a.sendData(b"\x00bin", mode=2)
    data = ca.getData(timeout=5)
    with pytest.warns(UserWarning):
        cb.sendData(data, mode=ca.in_mode, force_mode=True)
    assert b.getData(timeout=5) == b"\x00bin"
