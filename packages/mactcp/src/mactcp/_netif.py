"""``IPAddr()``, ``NetMask()`` and ``MTU()``: "the" interface of a Mac, on a multi-homed host.

MacTCP had one interface. polysock takes the one the kernel would use for the default route:
the local address chosen when a UDP socket is connected toward 10.255.255.255 (nothing is
sent), and the interface holding that address for netmask and MTU.
"""

from __future__ import annotations

import fcntl
import socket
import struct

__all__ = ["interface_of", "ip_addr", "mtu", "netmask"]

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
SIOCGIFMTU = 0x8921
LOOPBACK = 0x7F000001


def ip_addr() -> int:
    """The primary IPv4 address as an unsigned 32-bit int; 127.0.0.1 without a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))
            host = s.getsockname()[0]
        except OSError:
            return LOOPBACK
    value: int = struct.unpack("!I", socket.inet_aton(host))[0]
    return value if value else LOOPBACK


def _ifreq(name: str) -> bytes:
    return struct.pack("16s16x", name.encode()[:15])


def _if_ioctl(name: str, request: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, _ifreq(name))


def _if_addr(name: str, request: int) -> int | None:
    try:
        raw = _if_ioctl(name, request)
    except OSError:
        return None
    value: int = struct.unpack("!I", raw[20:24])[0]  # ifr_addr: sockaddr_in.sin_addr
    return value


def interface_of(address: int) -> str | None:
    """The name of the interface holding ``address``, or None."""
    try:
        names = [name for _index, name in socket.if_nameindex()]
    except OSError:
        return None
    for name in names:
        if _if_addr(name, SIOCGIFADDR) == address:
            return name
    if (address >> 24) == 127:  # 127.0.0.0/8 is all loopback
        for name in names:
            if _if_addr(name, SIOCGIFADDR) == LOOPBACK:
                return name
    return None


def netmask() -> int:
    """Unsigned netmask of the interface holding ``ip_addr()`` (0 if it cannot be read)."""
    address = ip_addr()
    name = interface_of(address)
    if name is None:
        return 0xFF000000 if (address >> 24) == 127 else 0
    value = _if_addr(name, SIOCGIFNETMASK)
    return 0 if value is None else value


def mtu() -> int:
    """MTU of the default route's interface, else of loopback; 0 if it cannot be read."""
    for name in (interface_of(ip_addr()), interface_of(LOOPBACK)):
        if name is None:
            continue
        try:
            raw = _if_ioctl(name, SIOCGIFMTU)
        except OSError:
            continue
        value: int = struct.unpack_from("i", raw, 16)[0]
        return value
    return 0
