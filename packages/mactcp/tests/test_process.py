"""Process-level behaviour: Ctrl-C in wait(), and streams not keeping a process alive."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

INTERRUPTED_WAIT = r"""
import os, signal, socket, sys, threading, time
import mactcp

s = mactcp.TCPCreate(4096)
s.PassiveOpen(0)
port = s.GetSockName()[1]
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    s.wait()
except KeyboardInterrupt:
    print("interrupted after", round(time.monotonic() - start, 1), "isdone", s.isdone())
else:
    print("wait returned without completion")
    sys.exit(1)
# the open is still pending: a client completes it and wait() returns normally
c = socket.create_connection(("127.0.0.1", port), timeout=10)
s.wait()
print("completed", s.isdone(), s.Status().connectionState)
"""


@pytest.mark.timeout(60)
def test_ctrl_c_in_wait_raises_keyboard_interrupt_and_keeps_the_open() -> None:
    # Defect 4: the original's wait() returned None on Cmd-. without completion.
    out = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WAIT],
        capture_output=True, text=True, check=False, timeout=40,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("interrupted after") and lines[0].endswith("isdone 0")
    assert lines[1] == "completed 1 8"


LINGERING = r"""
import socket, mactcp
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
a = mactcp.TCPCreate(4096)
a.asr = lambda code, detail: None
a.ActiveOpen(0, "127.0.0.1", l.getsockname()[1])
b = mactcp.TCPCreate(4096)
b.PassiveOpen(0)
print("done")
"""


@pytest.mark.timeout(60)
def test_streams_do_not_keep_the_process_alive() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", LINGERING],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "done\n"
            start = time.monotonic()
            assert proc.wait(20) == 0
            exited_after = time.monotonic() - start
            assert proc.stderr is not None and proc.stderr.read() == ""
        finally:
            proc.kill()
    assert exited_after < 1.5  # the script ended: the process ends, streams or not
