"""What received data looks like: ``ReceivedData`` and ``Socket_Response``.

The documentation unpacks every received item as ``client_socket, address, data = item`` and
hands ``data`` to ``send_data``; 0.4.0 code reads ``item.response``/``item.time_``/
``item.from_``. A 3-tuple subclass whose third element is a ``bytes`` subclass serves both.
"""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["ReceivedData", "Socket_Response", "payload_of"]


def _join(response: object) -> bytes:
    if isinstance(response, (bytes, bytearray, memoryview)):
        return bytes(response)
    if isinstance(response, str):
        return response.encode("utf-8")
    if isinstance(response, tuple) and all(
        isinstance(part, (bytes, bytearray, memoryview)) for part in response
    ):
        return b"".join(response)
    raise TypeError(
        f"a response must be bytes, a tuple of bytes or str, not {type(response).__name__}"
    )


def _equals(response: bytes, information: object) -> bool:
    if isinstance(information, Socket_Response):
        return response == information.response
    if isinstance(information, (bytes, bytearray, memoryview)):
        return response == bytes(information)
    if isinstance(information, tuple):
        return response == _join(information)
    raise TypeError("information should be a Socket_Response, bytes or tuple object")


class ReceivedData(bytes):
    """One received chunk: ``bytes`` with the receipt time and the sender attached."""

    _time: datetime.datetime
    _from: Any
    _plain: bytes | None

    def __new__(
        cls, data: bytes | bytearray | memoryview, time_: datetime.datetime | None = None,
        from_: Any = None,
    ) -> ReceivedData:
        self = super().__new__(cls, data)
        self._time = time_ if time_ is not None else datetime.datetime.now()
        self._from = from_
        self._plain = None
        return self

    @property
    def response(self) -> bytes:
        """The chunk as plain ``bytes`` (made once, on first use)."""
        plain = self._plain
        if plain is None:
            plain = self._plain = bytes(self)
        return plain

    @property
    def time_(self) -> datetime.datetime:
        return self._time

    @property
    def from_(self) -> Any:
        """The sending ``Server_Client`` on a server, ``None`` on a client."""
        return self._from

    def equals(self, information: object) -> bool:
        return _equals(self, information)


def _rebuild(from_: Any, address: Any, data: ReceivedData) -> Socket_Response:
    return tuple.__new__(Socket_Response, (from_, address, data))


class Socket_Response(tuple[Any, Any, ReceivedData]):
    """One received item: ``(client_socket, address, data)`` with 0.4.0's attributes."""

    __slots__ = ()

    def __new__(
        cls, response: object, time_: datetime.datetime | None = None, from_: Any = None
    ) -> Socket_Response:
        if isinstance(response, ReceivedData) and time_ is None and from_ is None:
            data = response
            from_ = response.from_
        else:
            data = ReceivedData(_join(response), time_, from_)
        address = getattr(from_, "address", None)
        return tuple.__new__(cls, (from_, address, data))

    @classmethod
    def _of(cls, data: ReceivedData, address: Any) -> Socket_Response:
        return tuple.__new__(cls, (data.from_, address, data))

    @property
    def from_(self) -> Any:
        return self[0]

    @property
    def response(self) -> bytes:
        return self[2].response

    @property
    def time_(self) -> datetime.datetime:
        return self[2].time_

    def equals(self, information: object) -> bool:
        return _equals(self.response, information)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self[0], self[1], self[2]))

    def __repr__(self) -> str:
        return f"Socket_Response(response={self.response!r}, time={self.time_}, from_={self[0]})"

    __str__ = __repr__


def payload_of(data: object) -> bytes:
    """What ``send_data`` puts on the wire for ``data``; ``TypeError`` for anything else.

    A ``str`` is refused rather than encoded: the original sent only bytes, and guessing an
    encoding would hide the bug in the caller.
    """
    if isinstance(data, Socket_Response):
        return data.response
    if isinstance(data, ReceivedData):
        return data.response
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(
        f"data must be bytes, bytearray, memoryview or Socket_Response, not "
        f"{type(data).__name__}" + (" (encode text first)" if isinstance(data, str) else "")
    )
