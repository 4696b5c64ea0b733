"""The exception classes of simplesockets 0.4.0, kept under the same names."""

from __future__ import annotations

import traceback as _traceback

__all__ = ["Better_Exception", "SetupError", "SocketError", "error"]


class error(Exception):
    """Base class of the errors this package raises itself."""


class SocketError(error):
    pass


class SetupError(SocketError):
    """A method was called in the wrong state (before ``setup()``, after ``close()``)."""


class Better_Exception:
    """A recorded exception together with its formatted traceback.

    The traceback is kept as text because the exception object alone loses it once the
    handler that caught it has returned, and users inspect recorded errors much later.
    """

    __slots__ = ("_exception", "_traceback")

    def __init__(self, exception: BaseException, traceback: str | None = None) -> None:
        self._exception = exception
        if traceback is None:
            traceback = "".join(
                _traceback.format_exception(type(exception), exception, exception.__traceback__)
            )
        self._traceback = traceback

    @property
    def exception(self) -> BaseException:
        return self._exception

    @property
    def traceback(self) -> str:
        return self._traceback

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Better_Exception):
            return NotImplemented
        return (self._exception, self._traceback) == (other._exception, other._traceback)

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable payload: as 0.4.0

    def __str__(self) -> str:
        return (
            f"{type(self._exception).__name__}: {self._exception}\n"
            f"Traceback:\n{self._traceback}"
        )

    __repr__ = __str__
