"""Status(): a read-only snapshot of the kernel's view of the connection."""

from __future__ import annotations

import dataclasses
import socket

import mactcp
import pytest
from conftest import LOOPBACK, recv_exactly, unread, wait_until

FIELDS = [
    "localHost", "localPort", "remoteHost", "remotePort", "tosFlags", "precedence",
    "connectionState", "sendWindow", "rcvWindow", "amtUnackedData", "amtUnreadData",
    "sendUnacked", "sendNext", "rcvNext", "congestionWindow", "srtt", "lastRTT",
    "sendMaxSegSize",
]


def test_status_of_an_established_connection(env) -> None:
    # Acceptance check 15 (a 16 KiB stream: a 4096-byte buffer cannot hold 5000 bytes)
    s, peer = env.passive_pair(size=16384)
    st = s.Status()
    assert type(st).__name__ == "MacTCP connection status"
    assert st.connectionState == 8
    assert st.localPort == s.GetSockName()[1]
    assert (st.localHost, st.remoteHost) == (LOOPBACK, LOOPBACK)
    assert st.remotePort == peer.getsockname()[1]
    assert st.amtUnreadData == 0
    peer.sendall(bytes(5000))
    unread(s, 5000)
    st = s.Status()
    assert st.amtUnreadData == 5000
    assert st.rcvNext == 5000  # bytes received since the start of the connection
    assert st.sendMaxSegSize > 0 and st.srtt >= 0 and st.lastRTT == st.srtt
    assert st.sendWindow > 0 and st.rcvWindow > 0 and st.congestionWindow > 0
    assert st.precedence == st.tosFlags >> 5
    assert st.tosFlags == s._s.conn.sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)
    for name in FIELDS:
        value = getattr(st, name)
        assert type(value) is int and value >= 0, name
    assert [f.name for f in dataclasses.fields(st)] == FIELDS
    with pytest.raises(AttributeError):
        st.localPort = 1
    assert st.amtUnreadData == 5000  # a snapshot: reading does not change it
    s.Rcv(1)
    assert st.amtUnreadData == 5000 and s.Status().amtUnreadData < 5000


def test_send_counters_follow_acknowledgement(env) -> None:
    s, peer = env.active_pair()
    before = s.Status()
    assert before.amtUnackedData == 0 and before.sendNext == before.sendUnacked
    s.Send(b"x" * 1000)
    wait_until(lambda: s.Status().amtUnackedData == 0, 5, "acknowledged")
    after = s.Status()
    assert after.sendUnacked - before.sendUnacked == 1000
    assert after.sendNext == after.sendUnacked
    assert recv_exactly(peer, 1000) == b"x" * 1000


def test_unacknowledged_data_is_reported(env) -> None:
    s, peer = env.active_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.Send(b"u" * 300_000)  # fills the peer's window: part stays unacknowledged
    st = s.Status()
    assert st.amtUnackedData > 0
    assert st.sendNext - st.sendUnacked == st.amtUnackedData


def test_connection_state_numbers(env) -> None:
    s, peer = env.passive_pair()
    assert s.Status().connectionState == 8
    peer.shutdown(socket.SHUT_WR)
    wait_until(lambda: s.Status().connectionState == 14, 5, "close-wait")
    c, _cpeer = env.active_pair()
    c.Close()
    assert c.Status().connectionState == 12


def test_status_errors(env) -> None:
    s = env.stream()
    with pytest.raises(mactcp.error) as info:
        s.Status()
    assert info.value.args == (-23008, "connectionDoesntExist")
    s.PassiveOpen(0)
    with pytest.raises(mactcp.error) as info:
        s.Status()
    assert info.value.args == ("Operation not allowed, PassiveOpen in progress",)


def test_state_mapping_table() -> None:
    from mactcp._sys import MACTCP_STATE

    assert MACTCP_STATE == {
        1: 8, 2: 6, 3: 4, 4: 10, 5: 12, 6: 20, 7: 0, 8: 14, 9: 18, 10: 2, 11: 16,
    }
