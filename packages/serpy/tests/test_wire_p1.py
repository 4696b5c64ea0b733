"""Protocol 1 byte for byte: vectors P1-P17 (a raw peer checks what serpy writes and answers
control blocks) and Q1-Q8 (a raw peer writes, a serpy server child delivers)."""

from __future__ import annotations

import pickle
import socket
import threading
import time
import warnings
from typing import Any

import pytest
import serpy as sp
from conftest import (
    ACKEOT,
    ACKMODCG,
    HOST,
    SETMODE,
    RawListener,
    RawPeer,
    port_of,
    raw_client,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


def connect(listener: RawListener, cleanup: Any, **kw: Any) -> tuple[sp.Connection, RawPeer]:
    c = cleanup(sp.Connection(**kw))
    c.connect(HOST, listener.port)
    return c, listener.accept()


def in_thread(fn: Any, *args: Any, **kw: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(fn(*args, **kw)), daemon=True)
    t.start()
    return t, result


# ------------------------------------------------------------------ P: what serpy writes


def test_p1_p2_p3_plain_text_and_numbers(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    c.sendData("hello")
    peer.expect(bytes.fromhex("68656c6c6f1f"))
    c.sendData("é")
    peer.expect(bytes.fromhex("c3a91f"))
    c.sendData(42)
    c.sendData(1.5)
    peer.expect(bytes.fromhex("34321f") + bytes.fromhex("312e351f"))
    peer.expect_nothing()


def test_p3_numbers_are_received_as_text(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    child = s.getConnection(timeout=5)
    c.sendData(42)
    c.sendData(1.5)
    assert child.getData(timeout=5) == b"42"
    assert child.getData(timeout=5) == b"1.5"


def test_p4_p5_bytes_switch_to_mode_2_and_back(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    with pytest.warns(UserWarning, match="Wrong mode used, using mode 2 instead"):
        c.sendData(b"\x00\x01\x1f\xff")
    peer.expect(SETMODE[2])
    peer.expect_nothing(0.1)  # the data waits for the acknowledgement of the switch
    peer.send(ACKMODCG)
    peer.expect(b"00AHW\x1f")
    wait_until(lambda: c.out_mode == 2, what="out_mode 2")
    c.sendData("abc")
    peer.expect(SETMODE[0])
    peer.send(ACKMODCG)
    peer.expect(b"abc\x1f")


def test_p6_p7_acknowledged_messages(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    t, result = in_thread(c.sendData, "ack me", mode=1, timeout=5)
    peer.expect(SETMODE[1])
    peer.send(ACKMODCG)
    peer.expect(bytes.fromhex("61636b206d65041f"))
    assert t.is_alive()  # still waiting for ACKEOT
    peer.send(ACKEOT)
    t.join(5)
    assert result == [True]
    t, result = in_thread(c.sendData, "again", mode=1, timeout=5)
    peer.expect(b"again\x04\x1f")  # same mode: no SETMODE
    peer.send(ACKEOT)
    t.join(5)
    assert result == [True]


def test_p8_text_in_mode_2(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    c.sendData("hello", mode=2)
    peer.expect(SETMODE[2])
    peer.send(ACKMODCG)
    peer.expect(bytes.fromhex("586b7e307b5a761f"))


def test_p9_bytes_in_mode_1_become_mode_3(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t, result = in_thread(c.sendData, b"\x00\x04", mode=1, timeout=5)
        peer.expect(SETMODE[3])
        peer.send(ACKMODCG)
        peer.expect(bytes.fromhex("303061041f"))
        peer.send(ACKEOT)
        t.join(5)
    assert result == [True]
    assert any("using mode 3 instead" in str(w.message) for w in caught)


def test_p10_objects_are_pickled_in_mode_4(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    with pytest.warns(UserWarning, match="using mode 4 instead"):
        c.sendData([1, "a"])
    peer.expect(SETMODE[4])
    peer.send(ACKMODCG)
    block = peer.recv_exact(29)
    assert block == b"fCZHc0000000018lqgF9i~(VkWi9\x1f"
    assert pickle.loads(sp.b85decode(block[:-1])) == [1, "a"]


def test_p11_empty_text_is_a_bare_separator(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    with pytest.warns(sp.ProtocolWarning, match="bare separator"):
        c.sendData("")
    peer.expect(b"\x1f")


@pytest.mark.parametrize(
    ("data", "mode", "setmode", "wire", "acked"),
    [
        ("a\x1fb", 0, 2, b"VIN`\x1f", False),  # P12
        ("\x01XYZ", 0, 2, b"0a#gD\x1f", False),  # P13
        ("a\x04b", 1, 3, bytes.fromhex("56465933041f"), True),  # P14
    ],
)
def test_p12_p13_p14_transparent_protection(  # noqa: PLR0917 - parametrized
    listener: RawListener, cleanup: Any, data: str, mode: int, setmode: int, wire: bytes,
    acked: bool,
) -> None:
    c, peer = connect(listener, cleanup)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t, result = in_thread(c.sendData, data, mode=mode, timeout=5)
        peer.expect(SETMODE[setmode])
        peer.send(ACKMODCG)
        peer.expect(wire)
        if acked:
            peer.send(ACKEOT)
        t.join(5)
    assert result == [True if acked else None]
    assert not caught  # transparent: no warning


@pytest.mark.parametrize(
    ("data", "mode"), [("a\x1fb", 0), ("\x01XYZ", 0), ("a\x04b", 1), ("\x01ACKEOT!!", 0)]
)
def test_p12_p13_p14_receiver_gets_the_original_bytes(
    cleanup: Any, data: str, mode: int
) -> None:
    # The original split 'a\x1fb' into b'a', b'b', delivered '\x01XYZ' as the str 'XYZ'
    # and killed its receiver thread on 'a\x04b' in mode 1.
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection().connect(HOST, port_of(s)))
    child = s.getConnection(timeout=5)
    assert c.sendData(data, mode=mode, timeout=5) in (None, True)
    assert child.getData(timeout=5) == data.encode()
    c.sendData("next")
    assert child.getData(timeout=5) == b"next"


def test_p15_forced_raw_bytes_are_sent_raw(listener: RawListener, cleanup: Any) -> None:
    c, peer = connect(listener, cleanup)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c.sendData(b"xx", mode=0, force_mode=True)
    assert [str(w.message) for w in caught] == [
        "Wrong mode used, using mode 2 instead", "Discouraged. Forcing mode 0 instead of 2",
    ]
    peer.expect(bytes.fromhex("78781f"))  # the original sent 63 7a 36 1f ('cz6')
    peer.expect_nothing()


def test_p16_modes_reset_on_reconnection(cleanup: Any) -> None:
    listener = cleanup(RawListener())
    c = cleanup(sp.Connection(auto_restart=True, restart_interval=0.05))
    c.connect(HOST, listener.port)
    first = listener.accept()
    c.sendData(b"xx", mode=2)
    first.expect(SETMODE[2])
    first.send(ACKMODCG)
    first.expect(b"cz6\x1f")
    wait_until(lambda: c.out_mode == 2, what="out_mode 2")
    first.close()  # the connection breaks; the client restarts
    second = listener.accept()
    wait_until(c.isConnected, what="reconnection")
    assert (c.out_mode, c.in_mode) == (0, 0)
    c.sendData(b"xx", mode=2)
    second.expect(SETMODE[2])  # sent again: the new peer starts at mode 0
    second.send(ACKMODCG)
    second.expect(b"cz6\x1f")


def test_p16_receiver_decodes_after_reconnection(cleanup: Any) -> None:
    # Original: the client kept out_mode 2, the new child started at 0 and delivered b'cz6'.
    s = cleanup(sp.Server(HOST, 0).start())
    c = cleanup(sp.Connection(auto_restart=True, restart_interval=0.05))
    c.connect(HOST, port_of(s))
    child = s.getConnection(timeout=5)
    c.sendData(b"xx", mode=2)
    assert child.getData(timeout=5) == b"xx"
    child.close()
    child2 = s.getConnection(timeout=5)
    wait_until(c.isConnected, what="reconnection")
    c.sendData(b"xx", mode=2)
    assert child2.getData(timeout=5) == b"xx"


def test_p17_idle_sends_nothing_and_close_sends_only_fin(
    listener: RawListener, cleanup: Any
) -> None:
    c, peer = connect(listener, cleanup)
    peer.expect_nothing(0.3)
    c.close()
    assert peer.read_eof() == b""


def test_p17_close_by_the_peer(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0).start())
    peer = raw_client(port_of(s))
    child = s.getConnection(timeout=5)
    child.close()
    assert peer.read_eof() == b""
    peer.close()


# ------------------------------------------------------------------ Q: what serpy delivers


@pytest.fixture
def child_and_peer(cleanup: Any) -> tuple[sp.Connection, RawPeer]:
    s = cleanup(sp.Server(HOST, 0).start())
    peer = cleanup(raw_client(port_of(s)))
    return s.getConnection(timeout=5), peer


def set_mode(peer: RawPeer, mode: int) -> None:
    peer.send(SETMODE[mode])
    peer.expect(ACKMODCG)


def test_q1_q2_mode_0(child_and_peer: tuple[sp.Connection, RawPeer]) -> None:
    child, peer = child_and_peer
    peer.send(bytes.fromhex("611f621f"))
    assert child.getData(timeout=5) == b"a"
    assert child.getData(timeout=5) == b"b"
    peer.send(bytes.fromhex("01585 95a1f".replace(" ", "")))
    assert child.getData(timeout=5) == b"\x01XYZ"  # the original: the str 'XYZ'


@pytest.mark.parametrize(
    ("wire", "delivered"),
    [
        (bytes.fromhex("611f62041f"), b"a\x1fb"),  # Q3
        (bytes.fromhex("610462041f"), b"a\x04b"),  # Q4
        (bytes.fromhex("041f"), b""),  # Q5
    ],
)
def test_q3_q4_q5_mode_1(
    child_and_peer: tuple[sp.Connection, RawPeer], wire: bytes, delivered: bytes
) -> None:
    child, peer = child_and_peer
    set_mode(peer, 1)
    peer.send(wire)
    assert child.getData(timeout=5) == delivered
    peer.expect(ACKEOT)
    assert child.in_mode == 1


def test_q6_invalid_base85_is_dropped(child_and_peer: tuple[sp.Connection, RawPeer]) -> None:
    child, peer = child_and_peer
    set_mode(peer, 2)
    peer.send(bytes.fromhex("2e2e1f") + b"Xk~0{Zv\x1f")
    with pytest.warns(sp.ProtocolWarning, match="invalid base85"):
        assert child.getData(timeout=5) == b"hello"
    assert child.rx_errors == 1
    assert child.isConnected()


def test_q7_pickle_is_not_unpickled_by_default(
    child_and_peer: tuple[sp.Connection, RawPeer],
) -> None:
    child, peer = child_and_peer
    set_mode(peer, 4)
    block = sp.b85encode(pickle.dumps([1, "a"], 5))
    peer.send(block + b"\x1f" + block + b"\x1f")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = child.getData(timeout=5)
        second = child.getData(timeout=5)
    assert first == second == pickle.dumps([1, "a"], 5)
    assert [w.category for w in caught] == [sp.UnpickleDisabledWarning]


def test_q8_pickle_with_allow_unpickle(cleanup: Any) -> None:
    s = cleanup(sp.Server(HOST, 0, allow_unpickle=True).start())
    peer = cleanup(raw_client(port_of(s)))
    child = s.getConnection(timeout=5)
    set_mode(peer, 4)
    peer.send(sp.b85encode(pickle.dumps([1, "a"], 5)) + b"\x1f")
    assert child.getData(timeout=5) == [1, "a"]


def test_q_control_block_lookalikes_are_data(
    child_and_peer: tuple[sp.Connection, RawPeer],
) -> None:
    child, peer = child_and_peer
    peer.send(b"\x01SETMODE9\x1f\x01ACK\x1f")
    assert child.getData(timeout=5) == b"\x01SETMODE9"
    assert child.getData(timeout=5) == b"\x01ACK"
    assert child.in_mode == 0


def test_q_unexpected_ackeot_is_a_protocol_error(
    child_and_peer: tuple[sp.Connection, RawPeer],
) -> None:
    child, peer = child_and_peer
    with pytest.warns(sp.ProtocolWarning, match="unexpected ACKEOT"):
        peer.send(ACKEOT + b"ok\x1f")
        assert child.getData(timeout=5) == b"ok"
        wait_until(lambda: child.rx_errors == 1, what="rx_errors 1")


def test_urgent_data_does_not_break_the_connection(
    child_and_peer: tuple[sp.Connection, RawPeer],
) -> None:
    # The original treated TCP urgent data as a broken connection.
    child, peer = child_and_peer
    peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer.send(b"ab")
    peer.sock.send(b"!", socket.MSG_OOB)
    time.sleep(0.05)  # let the urgent segment arrive on its own
    peer.send(b"c\x1f")
    assert child.getData(timeout=5) == b"abc"
    assert child.isConnected()
    peer.send(b"more\x1f")
    assert child.getData(timeout=5) == b"more"
