"""Events, the per-object event FIFO and the store of recorded exceptions."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ._errors import Better_Exception

__all__ = ["Event", "ExceptionStore"]

KEY_FORMAT = "%H:%M:%S|%d.%m.%Y"


def _now() -> datetime.datetime:
    return datetime.datetime.now()


@dataclass(frozen=True)
class Event:
    """Something that happened to a server or client, time-stamped when it happened.

    Equal by ``name`` only, so a queued copy compares equal to the class constant
    (``ev == TCPClient.EVENT_RECEIVED``).
    """

    name: str
    time_: datetime.datetime = field(default_factory=_now, compare=False)

    def copy(self, new_time: bool = True) -> Event:
        return Event(self.name, _now() if new_time else self.time_)


class ExceptionStore(Mapping[str, Better_Exception]):
    """Recorded exceptions keyed by the time they happened (0.4.0's key format).

    A key that already exists gets ``#2``, ``#3``... appended: two errors in the same second
    are two entries (0.4.0 overwrote the first). Truthy iff non-empty (0.4.0 had it inverted).
    Not locked itself: its owner guards it with its own lock.
    """

    def __init__(self) -> None:
        self._items: dict[str, Better_Exception] = {}

    def add(self, exception: BaseException | Better_Exception, traceback: str | None = None) -> str:
        item = (
            exception
            if isinstance(exception, Better_Exception)
            else Better_Exception(exception, traceback)
        )
        base = _now().strftime(KEY_FORMAT)
        key, n = base, 1
        while key in self._items:
            n += 1
            key = f"{base}#{n}"
        self._items[key] = item
        return key

    def clear(self) -> None:
        self._items.clear()

    @property
    def exceptions(self) -> dict[str, Better_Exception]:
        """A copy as a plain dict (0.4.0's ``Exception_Collection.exceptions``)."""
        return dict(self._items)

    def __getitem__(self, key: str) -> Better_Exception:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return repr(self._items)
