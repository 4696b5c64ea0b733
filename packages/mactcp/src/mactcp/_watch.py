"""Readiness watching for every mactcp socket of the process, on polysock's event-loop thread.

asyncio (and uvloop) watch descriptors for "readable"/"writable" only, but the asr events need
``EPOLLPRI`` (urgent data arrived) and ``EPOLLRDHUP`` (the peer's FIN) as well, without reading
the data: MacTCP left received bytes in the driver until ``Rcv``. So one private epoll set holds
every mactcp socket and is itself registered as a reader of the shared runtime loop
(:func:`polysock.runtime.get_runtime`). Each socket is armed ``EPOLLONESHOT`` with exactly the
conditions its stream still has to report; after an event the stream re-arms what is left, so
an idle stream costs no wake-up and a reported condition is never reported twice.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable

from polysock.runtime import LoopThread, get_runtime

__all__ = ["EPOLLIN", "EPOLLOUT", "EPOLLPRI", "EPOLLRDHUP", "Watcher", "get_watcher"]

log = logging.getLogger("polysock.mactcp")

# (getattr: the module must import where epoll does not exist; TCPCreate refuses there)
EPOLLIN: int = getattr(select, "EPOLLIN", 0x001)
EPOLLOUT: int = getattr(select, "EPOLLOUT", 0x004)
EPOLLPRI: int = getattr(select, "EPOLLPRI", 0x002)
EPOLLRDHUP: int = getattr(select, "EPOLLRDHUP", 0x2000)
EPOLLONESHOT: int = getattr(select, "EPOLLONESHOT", 1 << 30)
SUPPORTED = hasattr(select, "epoll")

Handler = Callable[[int], None]


class Watcher:
    """One epoll set, read by the runtime loop whenever one of its sockets is ready."""

    def __init__(self, runtime: LoopThread) -> None:
        self.runtime = runtime
        self._ep = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self._lock = threading.Lock()
        runtime.call(runtime.loop.add_reader, self._ep.fileno(), self._ready)

    @property
    def alive(self) -> bool:
        return self.runtime.running

    def arm(self, fd: int, mask: int, handler: Handler) -> None:
        """Watch ``fd`` once for ``mask`` (errors and hang-ups are always reported);
        ``handler(events)`` runs on the loop thread and must re-arm if it wants more."""
        with self._lock:
            known = fd in self._handlers
            self._handlers[fd] = handler
            if known:
                self._ep.modify(fd, mask | EPOLLONESHOT)
            else:
                self._ep.register(fd, mask | EPOLLONESHOT)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd``; call before the descriptor is closed."""
        with self._lock:
            if self._handlers.pop(fd, None) is not None:
                # already closed: the kernel dropped it
                with contextlib.suppress(OSError, ValueError):
                    self._ep.unregister(fd)

    def _ready(self) -> None:
        try:
            events = self._ep.poll(0)
        except OSError:  # pragma: no cover - the epoll set itself failed
            log.exception("polysock.mactcp: epoll failed")
            return
        for fd, mask in events:
            with self._lock:
                handler = self._handlers.get(fd)
            if handler is None:
                continue
            try:
                # Handlers re-check the socket's real state: an event for a descriptor that
                # was closed and reused after this poll must not be taken at face value.
                handler(mask)
            except Exception:
                log.exception("polysock.mactcp: readiness handler failed")


_watcher: Watcher | None = None
_watcher_lock = threading.Lock()


def get_watcher() -> Watcher:
    """The process's watcher, on the shared runtime loop (created with it)."""
    global _watcher
    w = _watcher
    if w is not None and w.alive:
        return w
    with _watcher_lock:
        w = _watcher
        if w is None or not w.alive:
            w = _watcher = Watcher(get_runtime())
    return w
