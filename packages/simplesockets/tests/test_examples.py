"""The manual's two complete examples, run unchanged as separate processes (acceptance 2).

Only the port is replaced (9999 -> a free port), as the spec allows, so that parallel runs
cannot collide. The client's loop prints the item it got back; the server disconnects it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(name: str, port: int, tmp_path: Path) -> Path:
    text = (EXAMPLES / name).read_text()
    assert text.count("9999") == 1
    out = tmp_path / name
    out.write_text(text.replace("9999", str(port)))
    return out


# Runs the unchanged client example with an on_disconnect that prints, to show the client
# notices the server's disconnect exactly once (the example itself sets no callback).
WRAPPER = """
import runpy, sys
import simplesockets
original_setup = simplesockets.TCPClient.setup
def setup(self, *args, **kwargs):
    original_setup(self, *args, **kwargs)
    self.on_disconnect = lambda: print("ON_DISCONNECT", flush=True)
simplesockets.TCPClient.setup = setup
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail("the example server did not start listening")


@pytest.mark.timeout(90)
def test_seed_examples_talk_to_each_other(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, str(_script("echo_server.py", port, tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    client = None
    try:
        _wait_listening(port, server)  # the probe connection is served and forgotten
        client = subprocess.Popen(
            [sys.executable, str(_script("echo_client.py", port, tmp_path))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert client.stdout is not None
        line = client.stdout.readline()  # the client loop prints the echoed item
        assert re.fullmatch(
            r"Socket_Response\(response=b'Test', time=[0-9: .-]+, from_=None\)\n", line
        ), line
        # the server disconnected the client: it is still looping (by design) and has
        # printed nothing more; neither process reported an error
        time.sleep(0.5)
        assert client.poll() is None and server.poll() is None
        watched = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(_script("echo_client.py", port, tmp_path))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            assert watched.stdout is not None
            first = watched.stdout.readline()
            second = watched.stdout.readline()
            lines = sorted([first, second])
            assert lines[0] == "ON_DISCONNECT\n", lines
            assert "response=b'Test'" in lines[1], lines
            time.sleep(0.5)
        finally:
            watched.kill()
            rest, err = watched.communicate(timeout=10)
        assert rest == "" and "Traceback" not in err, (rest, err)
    finally:
        outputs = []
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                outputs.append(proc.communicate(timeout=10))
    for _out, err in outputs:
        assert "Traceback" not in err, err
    assert outputs[0][0] == ""  # exactly one line was printed (read above)
