"""A sans-IO netstring framer: bytes in, payloads out, no socket in sight.

Wire format: ``<length>:<payload>,`` where ``<length>`` is the payload's size in ASCII decimal
digits without leading zeros (``0:,`` is the empty payload, ``5:hello,`` is ``b"hello"``).

Why it is written the way it is:

* The declared length is checked against ``max_frame_size`` digit by digit, as it arrives, so
  an oversized netstring is refused before a byte of its body is buffered, and a peer that
  sends endless digits is refused as soon as the number exceeds the limit.
* The length is parsed by hand, one digit at a time from the left, not with ``int()``:
  ``int()`` accepts ``" 5"``, ``"+5"``, ``"5_0"`` and non-ASCII digits and raises
  ``ValueError`` on the rest, and the verdict on a malformed length must not depend on how
  TCP cut the stream (the contract's "every split" rule). Scanning from the left decides at
  the first byte that is wrong, wherever the reads were cut.
* The body is never scanned: once the length is known the framer only waits until
  ``length + 1`` bytes are buffered, so a large payload costs one copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

from polysock import FrameTooLarge, IncompleteFrame, LocalProtocolError, RemoteProtocolError
from polysock.framing import DEFAULT_MAX_FRAME_SIZE, BaseFramer, Buffer

__all__ = ["NetstringFramer"]

_COLON = 0x3A
_COMMA = 0x2C
_ZERO = 0x30
_NINE = 0x39


class NetstringFramer(BaseFramer):
    """``<length>:<payload>,`` frames (D. J. Bernstein's netstrings).

    ``max_frame_size`` bounds the payload (the length written in the header). A malformed
    header (not a digit, a leading zero, no length), a missing ``,`` after the payload or the
    end of the stream in the middle of a netstring are
    :class:`~polysock.RemoteProtocolError` (the last one :class:`~polysock.IncompleteFrame`);
    a declared length over the limit is :class:`~polysock.FrameTooLarge`.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame_size)
        # A length with more digits than the limit has is over the limit (no leading zeros).
        self._max_digits = len(str(max_frame_size))
        self._buf = bytearray()
        self._want = -1  # payload size of the netstring being received; -1: in its header
        self._body = 0  # where that payload starts in _buf
        self._ended = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete netstring held until the rest arrives."""
        return len(self._buf)

    # ---------------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            return self._end_of_stream()
        if self._ended:
            raise LocalProtocolError("receive_data() called with data after the end of stream")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0  # start of the first undelivered netstring in buf
        try:
            while True:
                if self._want < 0:
                    length, colon = self._parse_length(buf, pos, out)
                    if colon < 0:
                        break  # the header is not complete yet
                    self._want = length
                    self._body = colon + 1
                end = self._body + self._want
                if end >= len(buf):
                    break  # payload or its comma not here yet
                if buf[end] != _COMMA:
                    raise RemoteProtocolError(
                        f"netstring of {self._want} bytes is not followed by ',' (got "
                        f"{bytes(buf[end : end + 1])!r}): the length does not match the "
                        "payload, or the peer does not speak netstrings",
                        frames=out,
                    )
                with memoryview(buf) as view:
                    out.append(bytes(view[self._body : end]))
                pos = end + 1
                self._want = -1
        finally:
            if pos:
                del buf[:pos]
                self._body -= pos
        return out

    def _parse_length(self, buf: bytearray, pos: int, out: list[bytes]) -> tuple[int, int]:
        """The declared length and the index of its colon (-1 while the header is
        incomplete), checking each digit as it arrives."""
        length = 0
        stop = min(len(buf), pos + self._max_digits + 1)
        for i in range(pos, stop):
            byte = buf[i]
            if byte == _COLON:
                if i == pos:
                    raise self._malformed(buf, pos, i, "the length is empty", out)
                return length, i
            if not _ZERO <= byte <= _NINE:
                raise self._malformed(buf, pos, i, f"{bytes([byte])!r} is not a digit", out)
            if i > pos and buf[pos] == _ZERO:
                raise self._malformed(buf, pos, i, "a length has no leading zeros", out)
            length = length * 10 + byte - _ZERO
            if length > self.max_frame_size:
                raise FrameTooLarge(
                    self.max_frame_size,
                    length,
                    detail=f"a netstring declaring at least {length} bytes",
                    frames=out,
                )
        return length, -1

    @staticmethod
    def _malformed(
        buf: bytearray, pos: int, at: int, why: str, out: list[bytes]
    ) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"malformed netstring length {bytes(buf[pos : at + 1])!r}: {why}; a netstring is "
            "<decimal length>:<payload>, (e.g. b'5:hello,') - is the peer speaking another "
            "framing?",
            frames=out,
        )

    def _end_of_stream(self) -> list[bytes]:
        if self._ended:
            return []
        self._ended = True
        left = len(self._buf)
        self._buf.clear()
        self._want = -1
        if left:
            raise IncompleteFrame(left)
        return []

    # ---------------------------------------------------------------- sending

    def _header(self, size: int) -> bytes:
        if size > self.max_frame_size:
            raise LocalProtocolError(
                f"cannot send a payload of {size} bytes as a netstring: max_frame_size is "
                f"{self.max_frame_size} (the peer would refuse it)"
            )
        return b"%d:" % size

    def frame(self, payload: Buffer) -> bytes:
        return b"".join((self._header(len(payload)), payload, b","))

    def frame_pieces(self, payload: Buffer) -> list[Buffer]:
        # The transport writes large payloads as these pieces, without copying the payload.
        return [self._header(len(payload)), payload, b","]

    def frame_many(self, payloads: Iterable[Buffer]) -> bytes:
        items = payloads if isinstance(payloads, Sequence) else list(payloads)
        return b"".join(
            chain.from_iterable((self._header(len(p)), p, b",") for p in items)
        )
