"""PassiveOpen / wait / isdone / GetSockName / ActiveOpen, and the lifetime of streams."""

from __future__ import annotations

import gc
import socket
import struct
import threading
import time

import mactcp
import pytest
from conftest import HOST, LOOPBACK, Recorder, free_port, recv_exactly

PENDING = ("Operation not allowed, PassiveOpen in progress",)


def test_passive_open_sequence(env) -> None:
    # §5 sequence 1 and acceptance checks 4 and 5
    rec = Recorder()
    s = env.stream(asr=rec)
    assert s.PassiveOpen(0) is None  # returns at once
    assert s.isdone() == 0 and type(s.isdone()) is int
    host, port = s.GetSockName()
    assert (host, port) == (mactcp.IPAddr(), port) and port > 0
    for call in (
        lambda: s.Send(b"x"),
        lambda: s.Rcv(1),
        s.Close,
        s.Status,
        lambda: s.ActiveOpen(0, HOST, port),
        lambda: s.PassiveOpen(0),
    ):
        with pytest.raises(mactcp.error) as info:
            call()
        assert info.value.args == PENDING
        assert info.value.errno is None
    assert rec.snapshot() == []
    peer = env.connect(port)
    rec.wait_for((32766, 0))
    assert s.wait() is None
    assert s.isdone() == 1
    st = s.Status()
    assert st.connectionState == 8
    assert st.remotePort == peer.getsockname()[1]
    assert st.remoteHost == LOOPBACK and st.localPort == port
    # the stream stopped listening: a second raw peer is refused by the OS
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5)
    assert rec.snapshot() == [(32766, 0)]  # exactly once


def test_fresh_stream_is_done_waits_not_and_has_no_name(env) -> None:
    s = env.stream()
    assert s.isdone() == 1
    start = time.monotonic()
    assert s.wait() is None
    assert time.monotonic() - start < 0.1
    assert s.GetSockName() == (0, 0)


def test_passive_open_on_a_busy_port_is_duplicate_socket(env) -> None:
    lsock = env.listener()
    s = env.stream()
    with pytest.raises(mactcp.error) as info:
        s.PassiveOpen(lsock.getsockname()[1])
    assert info.value.args == (-23017, "duplicateSocket")
    assert isinstance(info.value.__cause__, OSError)
    assert s.isdone() == 1 and s.GetSockName() == (0, 0)


def test_passive_open_on_a_chosen_port(env) -> None:
    port = free_port()
    s = env.stream()
    s.PassiveOpen(port)
    assert s.GetSockName() == (mactcp.IPAddr(), port)
    peer = env.connect(port)
    s.wait()
    s.Send(b"hi")
    assert recv_exactly(peer, 2) == b"hi"


def test_active_open_with_int_and_string_hosts(env) -> None:
    # V11 and acceptance check 8
    lsock = env.listener()
    port = lsock.getsockname()[1]
    for host in (2130706433, "127.0.0.1"):
        c = env.stream()
        assert c.ActiveOpen(0, host, port) is None
        peer, addr = lsock.accept()
        env.sock(peer)
        assert addr[0] == "127.0.0.1"
        assert c.GetSockName() == (LOOPBACK, addr[1])
        assert c.Status().remotePort == port
        with pytest.raises(mactcp.error) as info:
            c.ActiveOpen(0, host, port)
        assert info.value.args == (-23007, "connectionExists")
        with pytest.raises(mactcp.error) as info:
            c.PassiveOpen(0)
        assert info.value.args == (-23007, "connectionExists")


def test_active_open_refused_fails_fast(env) -> None:
    port = free_port()
    c = env.stream()
    start = time.monotonic()
    with pytest.raises(mactcp.error) as info:
        c.ActiveOpen(0, "127.0.0.1", port)
    assert time.monotonic() - start < 0.1
    assert info.value.args == (-23015, "openFailed")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    # the stream is still usable
    lsock = env.listener()
    c.ActiveOpen(0, HOST, lsock.getsockname()[1])
    assert c.Status().connectionState == 8


def test_active_open_signed_address_form(env) -> None:
    # V12: a negative 32-bit int is read as two's complement, like the original's C ints.
    # 192.168.0.1 is not reachable here; this host's own address >= 128.0.0.0 is, in the
    # same signed form, through a listener on all interfaces.
    addr = mactcp.IPAddr()
    if addr < 2**31:
        pytest.skip("no local address >= 128.0.0.0 to connect to")
    signed = addr - 2**32
    assert signed < 0
    lsock = env.sock(socket.socket())
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("", 0))
    lsock.listen(1)
    c = env.stream()
    c.ActiveOpen(0, signed, lsock.getsockname()[1])
    peer, _ = lsock.accept()
    env.sock(peer)
    assert peer.getsockname()[0] == socket.inet_ntoa(struct.pack("!I", addr))
    assert c.Status().remoteHost == addr


def test_signed_form_of_192_168_0_1_is_that_address() -> None:
    from mactcp._stream import _check_host, _check_port

    assert _check_host(-1062731775) == "192.168.0.1"  # V12's example value
    assert _check_host(3232235521) == "192.168.0.1"
    assert _check_host(2130706433) == "127.0.0.1"
    assert _check_port(-25536, "port") == 40000  # a signed 16-bit port, as GetSockName gave
    with pytest.raises(ValueError):
        _check_host(2**32)
    with pytest.raises(ValueError):
        _check_port(65536, "port")
    with pytest.raises(TypeError):
        _check_host(1.5)


def test_bad_host_string_is_ip_bad_addr(env) -> None:
    c = env.stream()
    with pytest.raises(mactcp.error) as info:
        c.ActiveOpen(0, "not.an.address", 7)
    assert info.value.args == (-23004, "ipBadAddr")
    assert c.isdone() == 1


def test_local_port_is_used_and_reported(env) -> None:
    # Acceptance check 9 (port 40000 when free; ports > 32767 come back unsigned)
    lsock = env.listener()
    lport = 40000
    probe = socket.socket()
    try:
        probe.bind(("", lport))
    except OSError:
        lport = free_port()
    finally:
        probe.close()
    c = env.stream()
    c.ActiveOpen(lport, HOST, lsock.getsockname()[1])
    peer, addr = lsock.accept()
    env.sock(peer)
    assert addr == ("127.0.0.1", lport)
    assert c.GetSockName() == (2130706433, lport)


def test_local_port_in_use_is_duplicate_socket(env) -> None:
    lsock = env.listener()
    c = env.stream()
    with pytest.raises(mactcp.error) as info:
        c.ActiveOpen(lsock.getsockname()[1], HOST, lsock.getsockname()[1])
    assert info.value.args == (-23017, "duplicateSocket")


@pytest.mark.timeout(20)
def test_active_open_without_answer_is_command_timeout(env, monkeypatch) -> None:
    # A listener whose accept queue is full drops SYNs: the connect gets no answer.
    from mactcp import _stream

    monkeypatch.setattr(_stream, "ULP_TIMEOUT", 0.5)
    lsock = env.listener(backlog=0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex((HOST, port))
        fillers.append(env.sock(f))
    time.sleep(0.2)  # let the fillers' handshakes complete and fill the queue
    c = env.stream()
    start = time.monotonic()
    with pytest.raises(mactcp.error) as info:
        c.ActiveOpen(0, HOST, port)
    assert info.value.args == (-23016, "commandTimeout")
    assert 0.5 <= time.monotonic() - start < 3.0


def test_abort_cancels_a_pending_passive_open(env) -> None:
    # Acceptance check 21 and defect 7
    rec = Recorder()
    s = env.stream(asr=rec)
    s.PassiveOpen(0)
    port = s.GetSockName()[1]
    s.Abort()
    assert s.isdone() == 1
    with pytest.raises(mactcp.error) as info:
        s.wait()
    assert info.value.args == (-23012, "connectionTerminated")
    assert s.wait() is None  # reported once, then cleared
    # the port is free again immediately
    with socket.socket() as again:
        again.bind(("", port))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5)
    assert rec.snapshot() == []  # no asr event for a cancel
    with pytest.raises(mactcp.error) as info:
        s.Abort()
    assert info.value.args == (-23008, "connectionDoesntExist")


def test_abort_from_another_thread_wakes_wait(env) -> None:
    s = env.stream()
    s.PassiveOpen(0)
    errors = []

    def waiter() -> None:
        try:
            s.wait()
        except mactcp.error as exc:
            errors.append(exc.args)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    assert t.is_alive()  # really blocked in wait()
    s.Abort()
    t.join(5)
    assert not t.is_alive()
    assert errors == [(-23012, "connectionTerminated")]


def test_deleting_a_stream_resets_its_connection(env) -> None:
    # Acceptance check 22: the last reference disappears -> the peer sees a reset quickly
    lsock = env.listener()
    s = mactcp.TCPCreate(4096)
    s.ActiveOpen(0, HOST, lsock.getsockname()[1])
    peer, _ = lsock.accept()
    env.sock(peer)
    peer.settimeout(5)
    start = time.monotonic()
    del s
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    assert time.monotonic() - start < 0.1


def test_with_block_resets_on_exit(env) -> None:
    lsock = env.listener()
    with mactcp.TCPCreate(4096) as s:
        s.ActiveOpen(0, HOST, lsock.getsockname()[1])
        peer, _ = lsock.accept()
        env.sock(peer)
        peer.settimeout(5)
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    assert time.monotonic() - start < 0.1


def test_deleting_a_listening_stream_frees_its_port() -> None:
    # Defect 7: the original leaked the MacTCP stream of a pending PassiveOpen.
    s = mactcp.TCPCreate(4096)
    s.PassiveOpen(0)
    port = s.GetSockName()[1]
    del s
    gc.collect()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5)
    with mactcp.TCPCreate(4096) as s2:
        s2.PassiveOpen(port)
        assert s2.GetSockName()[1] == port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5)


def test_passive_open_done_comes_before_the_connections_other_events(env) -> None:
    rec = Recorder()
    s = env.stream(asr=rec)
    s.PassiveOpen(0)
    peer = env.connect(s.GetSockName()[1])
    peer.sendall(b"early data")  # may arrive together with the accept
    rec.wait_len(2)
    assert rec.snapshot()[:2] == [(32766, 0), (4, 0)]
    s.wait()
    assert s.Rcv(5) == (b"early data", 0, 0)


def test_stream_can_passive_open_again_after_a_connection(env) -> None:
    s, peer = env.passive_pair()
    first_name = s.GetSockName()
    peer.close()
    with pytest.raises(mactcp.error, match="connectionClosing"):
        s.Rcv(5)
    s.Close()
    with pytest.raises(mactcp.error, match="connectionClosing"):
        s.Rcv(5)  # the final report of the ended connection
    assert s.GetSockName() == first_name  # the last values
    s.PassiveOpen(0)
    peer2 = env.connect(s.GetSockName()[1])
    s.wait()
    peer2.sendall(b"again")
    assert s.Rcv(5) == (b"again", 0, 0)


def test_open_in_phase_ended_discards_the_old_connection(env) -> None:
    s, peer = env.passive_pair()
    peer.sendall(b"never read")
    peer.shutdown(socket.SHUT_WR)
    s.Close()  # both directions closed, data unread: phase ended
    lsock = env.listener()
    s.ActiveOpen(0, HOST, lsock.getsockname()[1])  # allowed; the unread data is dropped
    peer2, _ = lsock.accept()
    env.sock(peer2)
    peer2.sendall(b"new")
    assert s.Rcv(5) == (b"new", 0, 0)


def test_ports_and_hosts_are_type_checked(env) -> None:
    c = env.stream()
    with pytest.raises(TypeError):
        c.ActiveOpen("0", HOST, 80)
    with pytest.raises(TypeError):
        c.ActiveOpen(0, None, 80)
    with pytest.raises(ValueError):
        c.ActiveOpen(0, HOST, 70000)
    with pytest.raises(TypeError):
        c.PassiveOpen("80")


def _full_listener(env) -> int:
    """A port whose listener drops SYNs (accept queue full): connects hang there."""
    lsock = env.listener(backlog=0)
    port = lsock.getsockname()[1]
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex((HOST, port))
        env.sock(f)
    time.sleep(0.2)
    return int(port)


@pytest.mark.timeout(20)
def test_calls_during_a_pending_active_open(env) -> None:
    port = _full_listener(env)
    c = env.stream()
    errors: list[tuple[object, ...]] = []

    def opener() -> None:
        try:
            c.ActiveOpen(0, HOST, port)
        except mactcp.error as exc:
            errors.append(exc.args)

    t = threading.Thread(target=opener)
    t.start()
    wait_until_phase = time.monotonic() + 5
    while c._s.phase != "connecting" and time.monotonic() < wait_until_phase:
        time.sleep(0.005)
    state6 = ("Operation not allowed, connection state=6",)
    for call in (lambda: c.Send(b"x"), lambda: c.Rcv(1), c.Close):
        with pytest.raises(mactcp.error) as info:
            call()
        assert info.value.args == state6
    with pytest.raises(mactcp.error) as info:
        c.PassiveOpen(0)
    assert info.value.args == (-23007, "connectionExists")
    assert c.Status().connectionState == 6  # SYN-sent
    c.Abort()  # cancels the open; no connection existed, so no asr event
    t.join(5)
    assert not t.is_alive()
    assert errors == [(-23012, "connectionTerminated")]
    assert c.isdone() == 1
    lsock = env.listener()
    c.ActiveOpen(0, HOST, lsock.getsockname()[1])  # and the stream can open again


def test_every_connection_gets_oobinline_and_the_60_s_user_timeout(env) -> None:
    s, _peer = env.passive_pair()
    c, _cpeer = env.active_pair()
    for stream in (s, c):
        sock = stream._s.conn.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, 18) == 60000  # TCP_USER_TIMEOUT
        # SO_RCVBUF = size, doubled by the kernel
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 4096
