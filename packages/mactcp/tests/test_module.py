"""Module surface: constants, the error class, TCPCreate, IPAddr/NetMask/MTU, the plugin."""

from __future__ import annotations

import pickle
import shutil
import socket
import struct
import subprocess
import sys
import time

import MACTCP
import mactcp
import MACTCPconst
import pytest

# Spec §3.6, every constant with its value
CONSTANTS = {
    "TCPClosing": 1, "TCPULPTimeout": 2, "TCPTerminate": 3, "TCPDataArrival": 4,
    "TCPUrgent": 5, "TCPICMPReceived": 6, "PassiveOpenDone": 32766,
    "TCPRemoteAbort": 2, "TCPNetworkFailure": 3, "TCPSecPrecMismatch": 4,
    "TCPULPTimeoutTerminate": 5, "TCPULPAbort": 6, "TCPULPClose": 7, "TCPServiceError": 8,
    "UDPDataArrival": 1, "UDPICMPReceived": 2,
    "ipBadLapErr": -23000, "ipBadCnfgErr": -23001, "ipNoCnfgErr": -23002,
    "ipLoadErr": -23003, "ipBadAddr": -23004, "connectionClosing": -23005,
    "invalidLength": -23006, "connectionExists": -23007, "connectionDoesntExist": -23008,
    "insufficientResources": -23009, "invalidStreamPtr": -23010, "streamAlreadyOpen": -23011,
    "connectionTerminated": -23012, "invalidBufPtr": -23013, "invalidRDS": -23014,
    "invalidWDS": -23014, "openFailed": -23015, "commandTimeout": -23016,
    "duplicateSocket": -23017,
    "ipDontFragErr": -23032, "ipDestDeadErr": -23033, "icmpEchoTimeoutErr": -23035,
    "ipNoFragMemErr": -23036, "ipRouteErr": -23037,
}


@pytest.mark.parametrize("module", [mactcp, MACTCPconst, MACTCP], ids=lambda m: m.__name__)
def test_every_constant_has_its_value_in_all_three_modules(module: object) -> None:
    for name, value in CONSTANTS.items():
        assert getattr(module, name) == value, name
    assert MACTCP.PassiveOpenDone == 32766


def test_constants_modules_export_the_same_names() -> None:
    assert set(MACTCP.__all__) == set(MACTCPconst.__all__) == set(CONSTANTS)
    ns: dict[str, object] = {}
    exec("from MACTCPconst import *", ns)
    assert {k: v for k, v in ns.items() if k in CONSTANTS} == CONSTANTS
    assert not hasattr(mactcp, "UDPCreate")  # the optional UDP part is not provided
    assert not hasattr(mactcp, "GlobalInfo")


def test_error_is_an_oserror_with_the_originals_shapes() -> None:
    assert issubclass(mactcp.error, OSError)
    e = mactcp.error(-23016, "commandTimeout")
    assert e.args == (-23016, "commandTimeout")
    assert e.errno == -23016 and e.strerror == "commandTimeout"
    assert e[0] == -23016 and e[1] == "commandTimeout"  # old code indexed the value
    s = mactcp.error("Operation not allowed, connection state=12")
    assert s.args == ("Operation not allowed, connection state=12",) and s.errno is None
    assert s[0] == "Operation not allowed, connection state=12"
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is mactcp.error and again.args == e.args


@pytest.mark.timeout(20)
def test_rcv_timeout_raises_command_timeout_after_the_timeout(env) -> None:
    s, _peer = env.passive_pair()
    start = time.monotonic()
    with pytest.raises(mactcp.error) as info:
        s.Rcv(1)
    elapsed = time.monotonic() - start
    e = info.value
    assert e.args == (-23016, "commandTimeout")
    assert e.errno == -23016 and e[0] == -23016
    assert 1.0 <= elapsed < 1.2 + 0.3  # 1.0-1.2 s, with a margin for a loaded machine
    start = time.monotonic()
    with pytest.raises(mactcp.error, match="commandTimeout"):
        s.Rcv(0.25)  # float seconds
    assert 0.25 <= time.monotonic() - start < 0.8


def test_tcpcreate_checks_its_size() -> None:
    with pytest.raises(mactcp.error) as info:
        mactcp.TCPCreate(0)
    assert info.value.args == (-23006, "invalidLength")
    with pytest.raises(mactcp.error):
        mactcp.TCPCreate(-5)
    with pytest.raises(TypeError):
        mactcp.TCPCreate("x")
    with pytest.raises(TypeError):
        mactcp.TCPCreate(4096.0)
    s = mactcp.TCPCreate(4096)
    assert type(s).__name__ == "MacTCP TCP stream"


def test_rcv_timeout_argument_is_checked(env) -> None:
    s, _peer = env.passive_pair()
    with pytest.raises(ValueError):
        s.Rcv(-1)
    with pytest.raises(TypeError):
        s.Rcv("1")
    with pytest.raises(TypeError):
        s.Rcv()


def test_ipaddr_netmask_mtu_describe_the_default_route_interface() -> None:
    addr = mactcp.IPAddr()
    assert isinstance(addr, int) and 0 <= addr <= 0xFFFFFFFF
    # the address the kernel picks toward the default route, as an unsigned int
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        try:
            u.connect(("10.255.255.255", 9))
            expected = struct.unpack("!I", socket.inet_aton(u.getsockname()[0]))[0]
        except OSError:
            expected = 2130706433
    assert addr == expected
    mask = mactcp.NetMask()
    assert isinstance(mask, int) and 0 <= mask <= 0xFFFFFFFF
    assert mask != 0 and (~mask & 0xFFFFFFFF) & ((~mask & 0xFFFFFFFF) + 1) == 0  # contiguous
    mtu = mactcp.MTU()
    assert isinstance(mtu, int) and mtu > 0


def test_high_addresses_are_unsigned() -> None:
    # Defect 3: the original returned addresses >= 128.0.0.0 as negative numbers.
    if mactcp.IPAddr() < 2**31:
        pytest.skip("this host's primary address is below 128.0.0.0")
    assert mactcp.IPAddr() > 0 and mactcp.NetMask() > 0


LOOPBACK_ONLY = """
import mactcp
print(mactcp.IPAddr(), mactcp.NetMask(), mactcp.MTU())
"""


@pytest.mark.timeout(30)
def test_loopback_only_host_reports_127_0_0_1_and_255_0_0_0() -> None:
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    if unshare is None or ip is None:
        pytest.skip("unshare/ip not available to make a loopback-only network namespace")
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False, timeout=20)
    if probe.returncode != 0:
        pytest.skip("user network namespaces are not allowed here")
    script = f"{ip} link set lo up && exec {sys.executable} -c '{LOOPBACK_ONLY}'"
    out = subprocess.run(
        [unshare, "-rn", "sh", "-c", script],
        capture_output=True, text=True, check=False, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    addr, mask, mtu = map(int, out.stdout.split())
    assert (addr, mask) == (2130706433, 4278190080)
    assert mtu > 0


def test_flavour_is_registered_through_the_core_plugin_system() -> None:
    import polysock.plugins

    pm = polysock.plugins.PluginManager()  # a fresh manager loads the entry points
    flavour = pm.flavour("mactcp")
    assert flavour.framing == "raw"
    assert set(flavour.modules) == {"mactcp", "MACTCPconst", "MACTCP"}
    infos = {info.name: info for info in pm.plugin_infos()}
    assert infos["mactcp"].distribution == "polysock-mactcp"
    assert infos["mactcp"].flavours == ("mactcp",)
    # the framing it names is one the core builds: a pass-through of the raw bytes
    framer = pm.make_framer(flavour.framing, **flavour.framing_options)
    assert framer.receive_data(b"hello") == [b"hello"]
