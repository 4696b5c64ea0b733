"""The socket-like object the documentation hands around as "the client socket"."""

from __future__ import annotations

from typing import Any, Protocol

from polysock import Connection

__all__ = ["SocketView"]


class _Owner(Protocol):
    @property
    def _conn(self) -> Connection | None: ...

    def _send(self, data: object) -> int: ...

    def _recv_bytes(self, bufsize: int) -> bytes: ...

    def close(self) -> None: ...


class SocketView:
    """A stand-in for the connection's ``socket.socket``.

    The socket belongs to the event loop, so user code gets this view: addresses, ``fileno``,
    sending (queued in order through the loop) and closing (a graceful disconnect). Reading
    is only offered where nothing else reads (``handle_client``, client with autorecv off).
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: _Owner) -> None:
        self._owner = owner

    def _connection(self) -> Connection:
        conn = self._owner._conn
        if conn is None:
            raise OSError("not connected")
        return conn

    def getpeername(self) -> Any:
        return self._connection().peername

    def getsockname(self) -> Any:
        return self._connection().sockname

    def fileno(self) -> int:
        conn = self._owner._conn
        sock = None if conn is None else conn.socket
        if conn is None or sock is None or conn.state == "closed":
            return -1
        return int(sock.fileno())

    def send(self, data: object) -> int:
        """Queue every byte of ``data``; returns its length (never a partial count)."""
        return self._owner._send(data)

    def sendall(self, data: object) -> None:
        self._owner._send(data)

    def recv(self, bufsize: int) -> bytes:
        return self._owner._recv_bytes(bufsize)

    def shutdown(self, how: int = 2) -> None:
        self._owner.close()

    def close(self) -> None:
        self._owner.close()

    def __repr__(self) -> str:
        conn = self._owner._conn
        if conn is None:
            return "<simplesockets socket (not connected)>"
        return f"<simplesockets socket {conn.state} laddr={conn.sockname} raddr={conn.peername}>"
