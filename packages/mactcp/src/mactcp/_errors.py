"""``mactcp.error`` and the mapping from Linux socket errors to MacTCP result codes."""

from __future__ import annotations

import errno as _errno
from typing import Any

import MACTCPconst as C

__all__ = ["MESSAGES", "driver_error", "error", "state_error"]

#: MacTCP code -> the name the original used as the error message
MESSAGES: dict[int, str] = {
    C.ipBadLapErr: "ipBadLapErr",
    C.ipBadCnfgErr: "ipBadCnfgErr",
    C.ipNoCnfgErr: "ipNoCnfgErr",
    C.ipLoadErr: "ipLoadErr",
    C.ipBadAddr: "ipBadAddr",
    C.connectionClosing: "connectionClosing",
    C.invalidLength: "invalidLength",
    C.connectionExists: "connectionExists",
    C.connectionDoesntExist: "connectionDoesntExist",
    C.insufficientResources: "insufficientResources",
    C.invalidStreamPtr: "invalidStreamPtr",
    C.streamAlreadyOpen: "streamAlreadyOpen",
    C.connectionTerminated: "connectionTerminated",
    C.invalidBufPtr: "invalidBufPtr",
    C.invalidRDS: "invalidRDS",
    C.openFailed: "openFailed",
    C.commandTimeout: "commandTimeout",
    C.duplicateSocket: "duplicateSocket",
    C.ipDontFragErr: "ipDontFragErr",
    C.ipDestDeadErr: "ipDestDeadErr",
    C.icmpEchoTimeoutErr: "icmpEchoTimeoutErr",
    C.ipNoFragMemErr: "ipNoFragMemErr",
    C.ipRouteErr: "ipRouteErr",
}


class error(OSError):
    """The exception of every mactcp operation.

    An ``OSError`` (the original raised a string exception) with the original's two value
    shapes: ``(code, message)`` for driver errors, where ``errno`` is the negative MacTCP code
    and ``strerror`` its name, and ``(text,)`` for calls made in the wrong connection state.
    Old code indexed the exception value (``arg[0]`` is the code), so indexing is kept.
    """

    def __getitem__(self, index: Any) -> Any:
        return self.args[index]


error.__module__ = "mactcp"


def driver_error(code: int, cause: BaseException | None = None) -> error:
    """``error(code, name)``; the OSError that caused it, if any, becomes ``__cause__``."""
    exc = error(code, MESSAGES.get(code, "unknown MacTCP error"))
    if cause is not None:
        exc.__cause__ = cause
    return exc


PASSIVE_PENDING = "Operation not allowed, PassiveOpen in progress"


def state_error(state: int | None = None) -> error:
    """The original's error for a call the current connection state does not allow."""
    if state is None:
        return error(PASSIVE_PENDING)
    return error(f"Operation not allowed, connection state={state}")


#: errno values that mean "the peer or the network ended the connection"
TERMINATED_ERRNOS = frozenset(
    {
        _errno.ECONNRESET,
        _errno.EPIPE,
        _errno.ETIMEDOUT,
        _errno.ECONNABORTED,
        _errno.EHOSTUNREACH,
        _errno.ENETUNREACH,
        _errno.EHOSTDOWN,
        _errno.ENETDOWN,
        _errno.ENETRESET,
    }
)


def termination_reason(err: int | None) -> int:
    """The ``TCPTerminate`` detail for the errno that ended a connection."""
    if err == _errno.ETIMEDOUT:
        return C.TCPULPTimeoutTerminate
    if err in (_errno.EHOSTUNREACH, _errno.ENETUNREACH, _errno.EHOSTDOWN, _errno.ENETDOWN):
        return C.TCPNetworkFailure
    return C.TCPRemoteAbort


def open_error(exc: OSError) -> error:
    """Map a failed connect/bind to the MacTCP code the original reported."""
    if exc.errno in (_errno.EADDRINUSE, _errno.EADDRNOTAVAIL):
        return driver_error(C.duplicateSocket, exc)
    if exc.errno == _errno.ETIMEDOUT:
        return driver_error(C.commandTimeout, exc)
    return driver_error(C.openFailed, exc)
