"""What TCPServer and TCPClient share: callback dispatch, text encoding, framer plumbing.

Threading model (spec section 3.1): socket work happens on the core's one event-loop thread;
every ``stateChanged`` call goes through one :class:`~polysock.runtime.CallbackDispatcher`
per object, so callbacks of one object run in event order, one at a time, on a worker thread,
and a slow callback never holds up another object or any socket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from polysock import Connection, Framer, plugins
from polysock.runtime import CallbackDispatcher, get_runtime

from . import _lifetime, _plugin
from .__about__ import __version__
from ._outbox import Outbox

__all__ = [
    "StateCallback",
    "encode_message",
    "log",
]

log = logging.getLogger("polysock.tcpcom")

StateCallback = Callable[[str, str], object]
Buffer = bytes | bytearray | memoryview

#: How long a graceful close may wait for the peer before the connection is reset.
CLOSE_TIMEOUT = 5.0


def encode_message(msg: object) -> bytes:
    """The payload bytes for ``sendMessage``: UTF-8 for text, bytes unchanged.

    Checked in the caller's thread so that a wrong type is the caller's ``TypeError`` (as in
    the original), never a failure on the loop thread.
    """
    if isinstance(msg, str):
        return msg.encode("utf-8")
    if isinstance(msg, (bytes, bytearray)):
        return bytes(msg)
    raise TypeError(f"sendMessage() needs a str or bytes, not {type(msg).__name__}")


def check_end_of_block(args: tuple[Any, ...]) -> None:
    if args and isinstance(args[0], (str, bytes, bytearray)):
        raise TypeError("endOfBlock must be passed as a keyword argument")


class ObservedFramer:
    """The connection's tcpcom framer, plus a note of when bytes (not messages) arrive.

    tcpcom's rules look at bytes: the idle timeout counts any byte as activity, and the
    client's occupancy check decides "accepted" on the first byte even if no terminator
    followed yet. Everything but ``receive_data`` is the inner framer's own bound method, so
    sending costs nothing extra; receiving costs one clock read per socket read.
    """

    def __init__(self, inner: Framer, on_first_data: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.max_frame_size = inner.max_frame_size
        self.message_boundaries = inner.message_boundaries
        self.deferrable: bool = bool(getattr(inner, "deferrable", False))
        self.frame: Callable[[Buffer], bytes] = inner.frame
        self.frame_many: Callable[[Iterable[Buffer]], bytes] = inner.frame_many
        if self.deferrable:
            self.frame_pieces: Callable[[Buffer], list[Buffer]] = inner.frame_pieces  # type: ignore[attr-defined]
            self.max_send_size: Callable[[], int] = inner.max_send_size  # type: ignore[attr-defined]
        self._receive = inner.receive_data
        self.last_data = time.monotonic()
        self.on_first_data = on_first_data

    def receive_data(self, data: bytes) -> list[bytes]:
        if data:
            self.last_data = time.monotonic()
            first = self.on_first_data
            if first is not None:
                self.on_first_data = None
                first()
        return self._receive(data)


def framer_factory(
    end_of_block: bytes, max_message_size: int
) -> Callable[[], ObservedFramer]:
    """Framers built through the plugin manager (so other plugins' ``polysock_make_framer``
    hooks apply), registering tcpcom's own plugin first when entry points were not loaded
    (``POLYSOCK_NO_AUTOLOAD``, a source checkout): importing tcpcom must be enough."""
    pm = plugins.get_plugin_manager()
    if "tcpcom" not in pm.registry.framers and not pm.is_registered(_plugin):
        name = "tcpcom" if pm.get_plugin("tcpcom") is None else "tcpcom-facade"
        pm.register(_plugin, name=name)
    options = {"delimiter": end_of_block, "max_frame_size": max_message_size}

    def make() -> ObservedFramer:
        return ObservedFramer(pm.make_framer("tcpcom", **options))

    return make


def check_send_size(payload: bytes, max_message_size: int) -> None:
    """Refuse in the caller what the framer would refuse on the loop thread, where it could
    only be logged: a message larger than ``maxMessageSize`` (the limit applies both ways)."""
    if len(payload) > max_message_size:
        raise ValueError(
            f"message of {len(payload)} bytes exceeds maxMessageSize ({max_message_size} bytes)"
        )


def check_max_message_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"maxMessageSize must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"maxMessageSize must be at least 1, not {value}")
    return value


class Session:
    """One served (server) or connected (client) connection as the facade sees it.

    ``active`` turns False when our side ends the connection (``disconnect``/``terminate``/
    idle timeout): messages already received but not yet delivered are then dropped. When the
    peer ends it, ``active`` stays True so that every complete message still arrives before the
    end callback. ``ended`` makes the end callback fire once, whoever ends first.
    """

    __slots__ = ("active", "conn", "ended", "framer", "outbox", "reply", "timer")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.outbox = Outbox(conn)
        self.framer: ObservedFramer = conn.framer  # type: ignore[assignment]
        self.active = True
        self.ended = False
        self.reply: Reply | None = None
        self.timer: Any = None


class Reply:
    """The pending answer of one ``sendMessage(msg, responseTime)`` (set on the loop thread)."""

    __slots__ = ("cancelled", "event", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: bytes | None = None
        self.cancelled = False

    def resolve(self, value: bytes | None) -> None:
        if not self.cancelled:
            self.value = value
            self.event.set()


class Endpoint:
    """Callback plumbing of one TCPServer or TCPClient."""

    _kind = "TCPEndpoint"

    def __init__(self, state_changed: StateCallback | None, is_verbose: bool) -> None:
        if state_changed is not None and not callable(state_changed):
            raise TypeError(
                f"stateChanged must be callable or None, not {type(state_changed).__name__}"
            )
        self._callback = state_changed
        self.isVerbose = bool(is_verbose)
        self._prefix = f"   {self._kind}-> "
        self._dispatcher = CallbackDispatcher(name=f"{self._kind} {id(self):#x}")
        self._rt = get_runtime()
        _lifetime.register(self)

    # ------------------------------------------------------------ output

    def _debug(self, text: str) -> None:
        if self.isVerbose:
            print(self._prefix + text)

    def _report(self, state: str, exc: Exception) -> None:
        print(f"Caught exception in {self._kind}.{state}: {exc}")
        log.debug("stateChanged(%s) of %s raised", state, self._kind, exc_info=exc)

    # ------------------------------------------------------------ dispatch

    def _submit(self, fn: Callable[..., object], *args: Any) -> None:
        _lifetime.hold()
        self._dispatcher.submit(self._run_held, fn, args)

    @staticmethod
    def _run_held(fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        finally:
            _lifetime.release()

    def _call(self, state: str, msg: str, done: threading.Event | None = None) -> None:
        try:
            cb = self._callback
            if cb is not None:
                try:
                    cb(state, msg)
                except Exception as exc:
                    self._report(state, exc)
        finally:
            if done is not None:
                done.set()

    def _fire(self, state: str, msg: str) -> threading.Event:
        """Queue ``stateChanged(state, msg)``; the event is set once it has run."""
        done = threading.Event()
        self._submit(self._call, state, msg, done)
        return done

    def _wait(self, done: threading.Event) -> None:
        """Wait for a callback fired by one of our methods, except from inside our own
        callback thread (it would wait for itself: the callback runs after the current one)."""
        if not self._dispatcher.in_callback() and not self._rt.in_loop_thread():
            done.wait()

    def _deliver(self, session: Session, frames: list[bytes]) -> None:
        # Runs on the callback thread: decoding happens here, not on the loop thread.
        cb = self._callback
        verbose = self.isVerbose
        for frame in frames:
            if not session.active:
                return
            text = frame.decode("utf-8", "replace")
            if verbose:
                self._debug(f"Received msg: {text}")
            if cb is None:
                continue
            try:
                cb("MESSAGE", text)
            except Exception as exc:
                self._report("MESSAGE", exc)

    def _queue_messages(self, session: Session, frames: list[bytes]) -> None:
        # On the loop thread: one dispatcher hand-off per socket read, however many messages.
        if self._callback is not None or self.isVerbose:
            self._submit(self._deliver, session, frames)

    @staticmethod
    def getVersion() -> str:
        """The version of the installed polysock-tcpcom package."""
        return __version__

    def _shutdown_for_tests(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
