"""The example plugin, installed the way a user installs a plugin.

A fresh virtualenv gets the core and ``examples/netstring-plugin`` with pip, from their
directories (pip builds the wheels; it needs the network only for pluggy and the build
backend). Then, in that virtualenv only: ``polysock plugins`` lists the plugin with its
distribution and version, the environment variables switch it off, ``polysock serve`` and
``polysock send`` talk netstrings to each other through the plugin, a raw socket checks the
bytes on the wire, and ``polysock demo`` includes the new framing.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "packages" / "core"
EXAMPLE = ROOT / "examples" / "netstring-plugin"

pytestmark = pytest.mark.timeout(600)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a process in the test virtualenv: nothing of ours leaks in (no
    PYTHONPATH, no POLYSOCK_* switches, no outer virtualenv)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("POLYSOCK_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh virtualenv with the core and the example plugin pip-installed."""
    path = tmp_path_factory.mktemp("plugin-venv") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", str(path)], check=True, timeout=300, env=clean_env()
    )
    bin_dir = path / ("Scripts" if os.name == "nt" else "bin")
    pip = subprocess.run(
        [
            str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check",
            "--no-input", "--quiet", str(CORE), str(EXAMPLE),
        ],
        capture_output=True, text=True, timeout=600, env=clean_env(), check=False,
    )
    assert pip.returncode == 0, f"pip install failed:\n{pip.stdout}\n{pip.stderr}"
    return bin_dir


def polysock_cli(bin_dir: Path, *args: str, timeout: float = 120, **env: str) -> str:
    proc = subprocess.run(
        [str(bin_dir / "polysock"), *args],
        capture_output=True, text=True, timeout=timeout, env=clean_env(**env), check=False,
    )
    assert proc.returncode == 0, f"polysock {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


# -------------------------------------------------------------------- driving the installed
# polysock: `polysock serve --echo` and `polysock send`, each in its own process of the
# virtualenv, the way a person pokes a device. Everything that depends on the commands' flags
# and output format is in echo_server() and send_messages().

SERVING = re.compile(r"serving .* on 127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def echo_server(bin_dir: Path, framing: str, timeout: float = 60) -> Iterator[int]:
    """``polysock serve --framing FRAMING --echo`` of the virtualenv; yields its port."""
    proc = subprocess.Popen(
        [
            str(bin_dir / "polysock"), "serve", "--framing", framing, "--echo", "--quiet",
            "--idle-timeout", "300",  # a safety net: the server stops by itself
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=clean_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    try:
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"polysock serve --framing {framing} did not start within {timeout} s")
        match = SERVING.search(first)
        assert match, f"unexpected first line of polysock serve: {first!r}"
        yield int(match.group(1))
    finally:
        proc.terminate()  # SIGTERM: the command stops serving and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            pytest.fail("polysock serve did not stop within 30 s of SIGTERM")
        reader.join(timeout=10)


def send_messages(bin_dir: Path, framing: str, port: int, messages: list[bytes]) -> list[str]:
    """``polysock send --framing FRAMING --hex --expect N``: sends ``messages``, returns the
    replies as the command prints them (text, ``<empty>``, or ``<n bytes> hex``)."""
    proc = subprocess.run(
        [
            str(bin_dir / "polysock"), "send", "--framing", framing, "--hex",
            "--expect", str(len(messages)), "--timeout", "60", "--raw-output",
            "127.0.0.1", str(port), *(m.hex() for m in messages),
        ],
        capture_output=True, text=True, timeout=120, env=clean_env(), check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


# -------------------------------------------------------------------- the tests


def test_polysock_plugins_lists_the_installed_plugin(venv_bin: Path) -> None:
    out = polysock_cli(venv_bin, "plugins")
    (line,) = [ln for ln in out.splitlines() if ln.startswith("netstring ")]
    assert line.split() == ["netstring", "polysock-netstring", "0.1.0", "netstring", "-", "-"]
    assert "failed to load" not in out


@pytest.mark.parametrize(
    "switch", [{"POLYSOCK_DISABLE_PLUGINS": "netstring"}, {"POLYSOCK_NO_AUTOLOAD": "1"}]
)
def test_the_environment_switches_the_plugin_off(venv_bin: Path, switch: dict[str, str]) -> None:
    out = polysock_cli(venv_bin, "plugins", **switch)
    assert not [ln for ln in out.splitlines() if ln.startswith("netstring ")]
    assert any(ln.startswith("polysock ") for ln in out.splitlines())


def test_polysock_serve_and_send_talk_through_the_installed_plugin(venv_bin: Path) -> None:
    text = "gr\u00fc\u00df dich, \u4e16\u754c"
    messages = [b"hello", b"", text.encode(), b"1:x,", b"\x00\xff\n", b"y" * 30_000]
    with echo_server(venv_bin, "netstring") as port:
        replies = send_messages(venv_bin, "netstring", port, messages)
    assert replies == ["hello", "<empty>", text, "1:x,", "<3 bytes> 00 ff 0a", "y" * 30_000]


def test_the_wire_is_netstrings_byte_for_byte(venv_bin: Path) -> None:
    with (
        echo_server(venv_bin, "netstring") as port,
        socket.create_connection(("127.0.0.1", port), timeout=30) as peer,
    ):
        peer.settimeout(30)
        sent = b"5:hello,0:,12:hello world!,"
        peer.sendall(sent)
        got = b""
        while len(got) < len(sent):
            chunk = peer.recv(4096)
            assert chunk, f"connection closed after {got!r}"
            got += chunk
        assert got == sent
        peer.sendall(b"05:hello,")  # malformed (leading zero): the server hangs up
        assert peer.recv(4096) == b""


def test_the_demo_includes_the_plugin_framing(venv_bin: Path) -> None:
    out = polysock_cli(venv_bin, "demo", timeout=300)
    assert any(ln.split()[:2] == ["PASS", "netstring:"] for ln in out.splitlines()), out
    assert "FAIL" not in out
