"""Every exception polysock raises on purpose.

The split follows h11: a :class:`LocalProtocolError` means *we* were asked to do something the
protocol forbids (fix the calling code); a :class:`RemoteProtocolError` means the *peer* sent
something invalid (the connection that carried it is closed, nothing else is affected).
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "FrameTooLarge",
    "HandshakeError",
    "IncompleteFrame",
    "LocalProtocolError",
    "PluginError",
    "PluginLoadError",
    "PluginLoadWarning",
    "PolysockError",
    "ProtocolError",
    "RemoteProtocolError",
]


class PolysockError(Exception):
    """Base class of every polysock error."""


class ProtocolError(PolysockError):
    """The bytes exchanged do not follow the connection's framing or handshake.

    ``frames`` holds the complete frames that a framer decoded *before* it met the error in
    the same ``receive_data`` call, so that a caller can deliver them: nothing that arrived
    intact is lost because something after it was broken.
    """

    def __init__(self, message: str, *, frames: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.frames: list[bytes] = frames if frames is not None else []


class LocalProtocolError(ProtocolError):
    """We were asked to send something the framing cannot carry (e.g. a payload too large)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the framing or handshake; its connection is closed."""


class FrameTooLarge(RemoteProtocolError):
    """A frame declared or accumulated more than ``limit`` bytes.

    ``size`` is the declared length when the framing carries one, otherwise the number of
    bytes seen so far without a frame end (a lower bound of the real size).
    """

    def __init__(
        self, limit: int, size: int, *, detail: str = "", frames: list[bytes] | None = None
    ):
        self.limit = limit
        self.size = size
        what = detail or f"a frame of {size} bytes"
        super().__init__(
            f"{what} exceeds max_frame_size={limit}; raise max_frame_size on this side "
            "if such frames are legitimate",
            frames=frames,
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.limit, self.size))


class IncompleteFrame(RemoteProtocolError):
    """The stream ended in the middle of a frame (``buffered`` bytes were left undecoded)."""

    def __init__(self, buffered: int, *, frames: list[bytes] | None = None) -> None:
        self.buffered = buffered
        super().__init__(
            f"connection closed by peer in the middle of a frame ({buffered} bytes undecoded)",
            frames=frames,
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.buffered,))


class HandshakeError(PolysockError):
    """The exchange between connect and the first message failed (bad certificate, bad magic)."""


class ConnectionClosed(PolysockError, ConnectionError):
    """The connection is closed: no more messages can be sent, or none are left to receive.

    ``reason`` is the exception that ended the connection, or ``None`` for an orderly close.
    """

    def __init__(self, message: str = "connection closed", reason: BaseException | None = None):
        super().__init__(message)
        self.reason = reason


class PluginError(PolysockError):
    """A plugin is misbehaving: a name clash, an unknown name, a broken hook implementation."""


class PluginLoadError(PluginError):
    """A plugin could not be imported and ``POLYSOCK_STRICT_PLUGINS=1`` is set."""


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported and was skipped."""
