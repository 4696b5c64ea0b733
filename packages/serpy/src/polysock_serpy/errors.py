"""The exception and warnings shared by :mod:`serpy` and :mod:`serpy2` (the same objects)."""

from __future__ import annotations

import queue

import polysock

__all__ = ["ConnectionClosed", "ProtocolWarning", "UnpickleDisabledWarning"]


class ConnectionClosed(queue.Empty, polysock.ConnectionClosed):
    """The connection is gone (closed, or broken with no restart left) and nothing is queued.

    A subclass of ``queue.Empty`` so that the original serpy loops
    (``try: c.getData(1) except queue.Empty: ...``) keep working, and of ``ConnectionError``
    (through :class:`polysock.ConnectionClosed`) so that new code can tell a dead connection
    from a quiet one.
    """


class ProtocolWarning(UserWarning):
    """The peer sent something malformed; it was dropped and the connection goes on."""


class UnpickleDisabledWarning(UserWarning):
    """A pickled (mode 4/5) message was delivered as raw pickle bytes because
    ``allow_unpickle`` is False (unpickling network data can run arbitrary code)."""
