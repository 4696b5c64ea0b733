"""State and behaviour shared by ``TCPServer`` and ``TCPClient``.

One condition variable guards everything a user thread and the event-loop thread both touch
(received items, the event FIFO, recorded exceptions): 0.4.0 shared plain lists between
threads and lost items appended while ``return_recved_data()`` copied them.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from polysock import Connection, Limits

from ._data import Socket_Response
from ._errors import Better_Exception
from ._events import Event, ExceptionStore

log = logging.getLogger("simplesockets")

#: 16 MiB: the largest item delivered at once (a larger burst becomes several items)
DEFAULT_MAX_ITEM_SIZE = 16 * 1024 * 1024
#: more than this many unsent bytes make ``send_data`` wait for the peer
SEND_HIGH_WATER = 1024 * 1024
#: bytes held for a reader that is not reading (autorecv off, handle_client) before the
#: connection stops reading from the socket and TCP flow control holds the sender
READ_HIGH_WATER = 1024 * 1024
READ_LOW_WATER = READ_HIGH_WATER // 2
#: a graceful close that the peer does not complete within this many seconds becomes a reset
CLOSE_TIMEOUT = 5.0

LIMITS = Limits(write_high_water=SEND_HIGH_WATER, write_low_water=SEND_HIGH_WATER // 4)

#: sends are handed to the core in pieces below the core's gathering-write size (64 KiB)
_PIECE = 64 * 1024 - 1


def send_payload(conn: Connection, lock: threading.Lock, payload: bytes) -> None:
    """Queue ``payload`` on ``conn`` from a user thread, atomically with respect to other
    sends on the same connection.

    Large payloads go in pieces because the core writes a single payload of 64 KiB or more
    with ``transport.writelines()``, and CPython 3.12/3.13's selector transport does not pause
    the protocol in ``writelines()``: the 1 MiB send limit would never block there (see the
    package's test of flow control). Pieces take the ``write()`` path, which does.
    """
    with lock:
        if len(payload) <= _PIECE:
            conn.send_threadsafe(payload)
        else:
            view = memoryview(payload)
            conn.send_many_threadsafe(
                [view[i : i + _PIECE] for i in range(0, len(payload), _PIECE)]
            )


class _ExceptionFlags:
    """``obj.event.exception``: ``occurred``, ``exceptions`` and the seed's ``list``."""

    def __init__(self, owner: Endpoint) -> None:
        self._owner = owner

    @property
    def occurred(self) -> bool:
        return self._owner._exception_occurred

    @occurred.setter
    def occurred(self, value: bool) -> None:
        self._owner._exception_occurred = bool(value)

    @property
    def exceptions(self) -> ExceptionStore:
        return self._owner._exceptions

    @property
    def list(self) -> list[Better_Exception]:
        with self._owner._cond:
            return list(self._owner._exceptions.values())


class EndpointEvents:
    """``obj.event``: the flags the documentation tells users to poll."""

    def __init__(self, owner: Endpoint) -> None:
        self._owner = owner
        self.exception = _ExceptionFlags(owner)

    @property
    def new_data(self) -> bool:
        return self._owner._new_data

    @new_data.setter
    def new_data(self, value: bool) -> None:
        self._owner._new_data = bool(value)


class Endpoint:
    """The part of a server or client that user threads poll and wait on."""

    EVENT_EXCEPTION = Event("--EXCEPTION--")
    EVENT_RECEIVED = Event("--RECEIVED--")
    EVENT_TIMEOUT = Event("--TIMEOUT--")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        #: received items not yet returned (the live list; empty it with return_recved_data)
        self.recved_data: list[Socket_Response] = []
        self._new_data = False
        self._events: collections.deque[Event] = collections.deque()
        self._exceptions = ExceptionStore()
        self._exception_occurred = False
        self._tls = threading.local()

    # ------------------------------------------------------------------ recording

    def _record_exception(self, exc: BaseException, traceback: str | None = None) -> None:
        with self._cond:
            self._exceptions.add(exc, traceback)
            self._exception_occurred = True
            self._events.append(self.EVENT_EXCEPTION.copy())
            self._cond.notify_all()

    def _record_item_locked(self, item: Socket_Response) -> None:
        self.recved_data.append(item)
        self._new_data = True
        self._events.append(self.EVENT_RECEIVED.copy())
        self._cond.notify_all()

    def _queue_event_locked(self, event: Event) -> None:
        self._events.append(event.copy())
        self._cond.notify_all()

    def _drop_events_locked(self, *names: str) -> None:
        if any(ev.name in names for ev in self._events):
            kept = [ev for ev in self._events if ev.name not in names]
            self._events.clear()
            self._events.extend(kept)

    # ------------------------------------------------------------------ callbacks

    def _in_callback(self) -> bool:
        """True on a thread that is running one of this object's callbacks right now."""
        return bool(getattr(self._tls, "depth", 0))

    def _run_callback(self, name: str, fn: Callable[..., object] | None, *args: Any) -> None:
        """Run a user callback, recording (and logging) what it raises: a failing callback
        must not end the connection or silence later callbacks."""
        if fn is None:
            return
        tls = self._tls
        tls.depth = getattr(tls, "depth", 0) + 1
        try:
            fn(*args)
        except Exception as exc:
            log.error("simplesockets: callback %s (%r) raised", name, fn, exc_info=exc)
            self._record_exception(exc)
        finally:
            tls.depth -= 1

    def _dispatch_error(self, exc: BaseException) -> None:
        # What escapes _run_callback (SystemExit, KeyboardInterrupt in a callback).
        log.error("simplesockets: callback raised %r", exc, exc_info=exc)
        self._record_exception(exc)

    # ------------------------------------------------------------------ user API

    def return_recved_data(self, clear_event: bool = True) -> list[Socket_Response]:
        """Every item received so far, oldest first; empties the list atomically."""
        with self._cond:
            return self._take_data_locked(clear_event)

    def _take_data_locked(self, clear_event: bool) -> list[Socket_Response]:
        data = list(self.recved_data)
        self.recved_data.clear()
        self._new_data = False
        if clear_event:
            self._drop_events_locked(self.EVENT_RECEIVED.name)
        return data

    def _return_exceptions(self, delete: bool, reset: bool) -> dict[str, Better_Exception]:
        with self._cond:
            exceptions = self._exceptions.exceptions
            if delete:
                self._exceptions.clear()
            if reset:
                self._exception_occurred = False
                self._drop_events_locked(self.EVENT_EXCEPTION.name)
            return exceptions

    def _await_event(
        self, timeout: float, drop: tuple[str, ...] = ()
    ) -> tuple[Event, Any]:
        if timeout < 0:
            raise ValueError("timeout can't be lower than 0")
        deadline = None if timeout == 0 else time.monotonic() + timeout / 1000.0
        with self._cond:
            if drop:
                self._drop_events_locked(*drop)
            while not self._events:
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self.EVENT_TIMEOUT.copy(), None
                self._cond.wait(remaining)
            event = self._events.popleft()
            if event == self.EVENT_RECEIVED:
                return event, self._take_data_locked(True)
            if event == self.EVENT_EXCEPTION:
                return event, self._return_exceptions(True, True)
            return event, None


class CallableBool:
    """A flag that the documentation reads both as a property and as a call
    (``server.killed()``); truthiness and ``==`` are the ``bool``'s."""

    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        self._value = bool(value)

    def __bool__(self) -> bool:
        return self._value

    def __call__(self) -> bool:
        return self._value

    def __eq__(self, other: object) -> bool:
        return self._value == other

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return repr(self._value)
