"""Keeping the process alive the way the original's non-daemon threads did.

TigerJython scripts create a ``TCPServer`` at module level and simply end; the original's
server thread kept the interpreter running until ``terminate()``. polysock's sockets live on
the core's daemon loop thread, so this module supplies the missing anchor: one non-daemon
thread that exists only while something holds the process, blocked on a condition (no
polling), and ends as soon as the last hold is released.

Holds are taken by a running server, a connected client, and every queued callback batch (so
a ``TERMINATED`` or ``PORT_IN_USE`` callback still runs before a finished script exits).
"""

from __future__ import annotations

import threading
import weakref
from typing import Protocol

__all__ = ["Closable", "hold", "holds", "live_objects", "register", "release", "wait_released"]

_cond = threading.Condition(threading.Lock())
_holds = 0
_thread: threading.Thread | None = None


class Closable(Protocol):
    def _shutdown_for_tests(self) -> None: ...


_live: weakref.WeakSet[Closable] = weakref.WeakSet()


def _keep_alive() -> None:
    global _thread
    with _cond:
        while _holds > 0:
            _cond.wait()
        _thread = None


def hold() -> None:
    """Keep the interpreter from exiting until the matching :func:`release`."""
    global _holds, _thread
    with _cond:
        _holds += 1
        if _thread is None:
            _thread = threading.Thread(target=_keep_alive, name="tcpcom-keepalive", daemon=False)
            _thread.start()


def release() -> None:
    global _holds
    with _cond:
        _holds -= 1
        if _holds <= 0:
            _holds = 0
            _cond.notify_all()


def holds() -> int:
    """How many holds are taken (for tests and diagnostics)."""
    return _holds


def wait_released(timeout: float) -> bool:
    """Wait until no hold is left (False on timeout); for test harnesses."""
    with _cond:
        return _cond.wait_for(lambda: _holds <= 0, timeout)


def register(obj: Closable) -> None:
    """Remember a live server or client so that a test harness can close leftovers."""
    _live.add(obj)


def live_objects() -> list[Closable]:
    return list(_live)
