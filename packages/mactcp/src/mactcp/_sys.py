"""The Linux socket interfaces the MacTCP semantics need and the core does not wrap.

ioctls on the socket (``SIOCINQ``, ``SIOCOUTQ``, ``SIOCOUTQNSD``, ``SIOCATMARK``), ``TCP_INFO``
decoding with a check of the length the kernel returned, and zero-timeout ``poll`` for the
conditions asyncio cannot watch (``POLLPRI`` for urgent data, ``POLLRDHUP`` for the peer's FIN).
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "POLLIN",
    "POLLOUT",
    "POLLPRI",
    "POLLRDHUP",
    "TcpInfo",
    "atmark",
    "inq",
    "make_wakeup",
    "outq",
    "outq_unsent",
    "poll_now",
    "tcp_info",
]

SIOCINQ = 0x541B
SIOCOUTQ = 0x5411
SIOCOUTQNSD = 0x894B
SIOCATMARK = 0x8905

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLPRI = select.POLLPRI
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLRDHUP: int = getattr(select, "POLLRDHUP", 0x2000)

TCP_INFO: int = getattr(socket, "TCP_INFO", 11)
TCP_USER_TIMEOUT: int = getattr(socket, "TCP_USER_TIMEOUT", 18)
MSG_NOSIGNAL: int = getattr(socket, "MSG_NOSIGNAL", 0)


def _int_ioctl(sock: socket.socket, request: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), request, buf, True)
    return buf[0]


def inq(sock: socket.socket) -> int:
    """Bytes received and not read yet (urgent bytes included: SO_OOBINLINE)."""
    return _int_ioctl(sock, SIOCINQ)


def outq(sock: socket.socket) -> int:
    """Bytes (and the FIN) sent or queued and not yet acknowledged by the peer."""
    return _int_ioctl(sock, SIOCOUTQ)


def outq_unsent(sock: socket.socket) -> int:
    """Bytes queued and not sent yet (``SIOCOUTQNSD``)."""
    return _int_ioctl(sock, SIOCOUTQNSD)


def atmark(sock: socket.socket) -> bool:
    """True when the next byte to read is the urgent byte."""
    return bool(_int_ioctl(sock, SIOCATMARK))


def poll_now(sock: socket.socket, mask: int) -> int:
    """The socket's current poll flags (``mask`` plus POLLERR/POLLHUP), without waiting."""
    p = select.poll()
    p.register(sock.fileno(), mask)
    for _fd, ev in p.poll(0):
        return ev
    return 0


# Linux tcp_states -> MacTCP connectionState
MACTCP_STATE = {1: 8, 2: 6, 3: 4, 4: 10, 5: 12, 6: 20, 7: 0, 8: 14, 9: 18, 10: 2, 11: 16}
LINUX_CLOSE = 7

_INFO_HEAD = struct.Struct("=B7x4I5I4I8I2II")  # up to tcpi_total_retrans (104 bytes)
_INFO_SIZE = 256
_OFF_BYTES_ACKED = 120
_OFF_BYTES_RECEIVED = 128
_OFF_SND_WND = 228
_OFF_RCV_WND = 232


@dataclass(frozen=True)
class TcpInfo:
    """The fields of ``struct tcp_info`` polysock reports; ``None`` where the kernel's reply
    was too short to contain them."""

    state: int
    snd_mss: int
    rtt_us: int
    snd_cwnd: int
    rcv_space: int
    bytes_acked: int | None
    bytes_received: int | None
    snd_wnd: int | None
    rcv_wnd: int | None


def _field(raw: bytes, offset: int, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    if len(raw) < offset + size:
        return None
    return struct.unpack_from(fmt, raw, offset)[0]


def tcp_info(sock: socket.socket) -> TcpInfo:
    raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _INFO_SIZE)
    if len(raw) < _INFO_HEAD.size:
        raw = raw + bytes(_INFO_HEAD.size - len(raw))
    head = _INFO_HEAD.unpack_from(raw)
    # head: state, rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, fackets,
    # 4 times, pmtu, rcv_ssthresh, rtt, rttvar, snd_ssthresh, snd_cwnd, advmss, reordering,
    # rcv_rtt, rcv_space, total_retrans
    return TcpInfo(
        state=head[0],
        snd_mss=head[3],
        rtt_us=head[16],
        snd_cwnd=head[19],
        rcv_space=head[23],
        bytes_acked=_field(raw, _OFF_BYTES_ACKED, "=Q"),
        bytes_received=_field(raw, _OFF_BYTES_RECEIVED, "=Q"),
        snd_wnd=_field(raw, _OFF_SND_WND, "=I"),
        rcv_wnd=_field(raw, _OFF_RCV_WND, "=I"),
    )


def linux_state(sock: socket.socket) -> int:
    return tcp_info(sock).state


def make_wakeup() -> tuple[int, int]:
    """A (read fd, write fd) pair that wakes threads blocked in ``poll``: an eventfd where
    the platform has one (one descriptor for both ends), a pipe otherwise."""
    eventfd = getattr(os, "eventfd", None)
    if eventfd is not None:
        fd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return fd, fd
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w
