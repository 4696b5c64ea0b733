"""Sans-IO framers: bytes in, frames out, no sockets.

A framer turns the byte stream of one connection into messages and back. It never touches a
socket, so the same object serves the event loop, the tests (which feed it every possible
split of a stream) and anyone who wants to parse a capture.

Contract (what :mod:`polysock.testing` checks for any framer):

* ``receive_data(data)`` returns every frame completed by ``data``, in order; ``b""`` means
  end of stream and either returns a last frame, nothing, or raises
  :class:`~polysock.errors.IncompleteFrame`.
* ``frame(payload)`` returns the bytes to put on the wire; ``frame_many(payloads)`` the same for
  a batch in one buffer (one syscall for a burst).
* ``max_frame_size`` is checked as early as the framing allows, on a declared length before the
  body arrives, or once more bytes than the limit are buffered without a frame end, so that the
  outcome never depends on how TCP split the stream.
* A :class:`~polysock.errors.RemoteProtocolError` carries, in ``frames``, the frames completed
  before the error in the same call: nothing that arrived intact is lost.
"""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Literal, Protocol, runtime_checkable

from .errors import FrameTooLarge, IncompleteFrame, LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "BaseFramer",
    "DelimiterFramer",
    "Framer",
    "LengthPrefixFramer",
    "RawFramer",
]

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
Buffer = bytes | bytearray | memoryview


@runtime_checkable
class Framer(Protocol):
    """What the transport needs from a framer. Subclassing :class:`BaseFramer` is optional."""

    max_frame_size: int
    #: False for pass-through framings whose "frames" are whatever each read returned; the
    #: conformance kit then checks the byte stream instead of frame boundaries.
    message_boundaries: bool

    def receive_data(self, data: bytes) -> list[bytes]: ...

    def frame(self, payload: Buffer) -> bytes: ...

    def frame_many(self, payloads: Iterable[Buffer]) -> bytes: ...


@runtime_checkable
class DeferrableFramer(Framer, Protocol):
    """A framer whose ``deferrable`` is true also offers these (see :class:`BaseFramer`)."""

    deferrable: bool

    def max_send_size(self) -> int: ...

    def frame_pieces(self, payload: Buffer) -> list[Buffer]: ...


class BaseFramer:
    """Shared plumbing: a batch ``frame_many`` and the end-of-stream bookkeeping.

    ``deferrable`` tells the transport that ``frame()`` refuses nothing but payloads larger
    than :meth:`max_send_size`, so it may check that size at send time and frame a whole
    burst at once with ``frame_many`` when it flushes (one C-level join instead of one
    ``frame()`` call per message). Framers that validate content set it to False.
    """

    message_boundaries = True
    deferrable = True

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError(f"max_frame_size must be >= 0, not {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._eof = False

    def receive_data(self, data: bytes) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame(self, payload: Buffer) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame_many(self, payloads: Iterable[Buffer]) -> bytes:
        return b"".join(map(self.frame, payloads))

    def frame_pieces(self, payload: Buffer) -> list[Buffer]:
        """The frame as pieces whose concatenation equals ``frame(payload)``, for a
        gathering write that does not copy a large payload (header, payload, trailer)."""
        return [self.frame(payload)]

    def max_send_size(self) -> int:
        """The largest payload ``frame()`` accepts."""
        return self.max_frame_size

    def _check_open(self) -> None:
        if self._eof:
            raise LocalProtocolError("receive_data() called with data after the end of stream")

    def _too_large_to_send(self, size: int) -> LocalProtocolError:
        return LocalProtocolError(
            f"cannot send a payload of {size} bytes: max_frame_size of this "
            f"{type(self).__name__} is {self.max_frame_size}"
        )


class RawFramer(BaseFramer):
    """No framing: every chunk read from the socket is a message, payloads go out unchanged.

    Chunks larger than ``max_frame_size`` are cut into pieces of at most that size (a raw
    stream has no frames to be too large, so this is never an error).
    """

    message_boundaries = False

    def max_send_size(self) -> int:
        return sys.maxsize

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            self._eof = True
            return []
        self._check_open()
        limit = self.max_frame_size
        if len(data) <= limit or limit == 0:
            return [bytes(data)]
        return [bytes(data[i : i + limit]) for i in range(0, len(data), limit)]

    def frame(self, payload: Buffer) -> bytes:
        return bytes(payload)

    def frame_pieces(self, payload: Buffer) -> list[Buffer]:
        return [payload]


TailPolicy = Literal["error", "deliver", "discard"]


class DelimiterFramer(BaseFramer):
    """Frames end with ``delimiter`` (any non-empty byte string: ``b"\\0"``, ``b"\\r\\n"``...).

    ``strip`` removes the delimiter from received frames (default); ``frame()`` always appends
    it. A payload that contains the delimiter arrives as several frames (as with every
    delimiter protocol); ``escape_check=True`` makes ``frame()`` refuse such payloads instead.
    ``at_eof`` says what happens to bytes after the last delimiter when the stream ends:
    ``"error"`` raises :class:`IncompleteFrame`, ``"deliver"`` returns them as a last frame,
    ``"discard"`` drops them. ``max_frame_size`` counts payload bytes, without the delimiter.
    """

    def __init__(
        self,
        delimiter: bytes | str = b"\n",
        *,
        strip: bool = True,
        at_eof: TailPolicy = "error",
        escape_check: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(max_frame_size)
        if isinstance(delimiter, str):
            delimiter = delimiter.encode()
        if not delimiter:
            raise ValueError("the delimiter must be at least one byte")
        if at_eof not in ("error", "deliver", "discard"):
            raise ValueError(f"at_eof must be 'error', 'deliver' or 'discard', not {at_eof!r}")
        self.delimiter = bytes(delimiter)
        self.strip = strip
        self.at_eof: TailPolicy = at_eof
        self.escape_check = escape_check
        self.deferrable = not escape_check
        self._buf = bytearray()
        # A tail longer than this cannot end in a frame within the limit, even if the next
        # byte completes a multi-byte delimiter.
        self._tail_limit = max_frame_size + len(self.delimiter) - 1

    @property
    def buffered(self) -> int:
        """Bytes received after the last delimiter."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            return self._end_of_stream()
        self._check_open()
        d = self.delimiter
        buf = self._buf
        if buf:
            start = max(len(buf) - len(d) + 1, 0)
            buf += data
            if buf.find(d, start) < 0:
                if len(buf) > self._tail_limit:
                    raise FrameTooLarge(
                        self.max_frame_size, len(buf), detail=self._detail(len(buf))
                    )
                return []
            data = bytes(buf)
            buf.clear()
        elif d not in data:
            if len(data) > self._tail_limit:
                raise FrameTooLarge(self.max_frame_size, len(data), detail=self._detail(len(data)))
            buf += data
            return []
        parts = data.split(d)
        tail = parts.pop()
        if len(data) > self.max_frame_size:
            self._check_parts(parts)
        if tail:
            if len(tail) > self._tail_limit:
                raise FrameTooLarge(
                    self.max_frame_size, len(tail), detail=self._detail(len(tail)),
                    frames=self._finish(parts),
                )
            buf += tail
        return self._finish(parts)

    def _finish(self, parts: list[bytes]) -> list[bytes]:
        if self.strip:
            return parts
        d = self.delimiter
        return [p + d for p in parts]

    def _check_parts(self, parts: list[bytes]) -> None:
        limit = self.max_frame_size
        for i, part in enumerate(parts):
            if len(part) > limit:
                raise FrameTooLarge(limit, len(part), frames=self._finish(parts[:i]))

    def _detail(self, size: int) -> str:
        return f"{size} bytes without a {self.delimiter!r} delimiter"

    def _end_of_stream(self) -> list[bytes]:
        if self._eof:
            return []
        self._eof = True
        tail = bytes(self._buf)
        self._buf.clear()
        if not tail or self.at_eof == "discard":
            return []
        if self.at_eof == "deliver":
            if len(tail) > self.max_frame_size:
                # A multi-byte delimiter lets the buffer hold up to len(delimiter) - 1 bytes
                # more than the limit; at EOF the frame is known to be too large.
                raise FrameTooLarge(self.max_frame_size, len(tail), detail=self._detail(len(tail)))
            return [tail]
        raise IncompleteFrame(len(tail))

    def frame(self, payload: Buffer) -> bytes:
        if len(payload) > self.max_frame_size:
            raise self._too_large_to_send(len(payload))
        payload = bytes(payload)
        if self.escape_check and self.delimiter in payload:
            raise LocalProtocolError(
                f"payload contains the delimiter {self.delimiter!r} and would arrive as "
                "several frames; escape it or choose another framing"
            )
        return payload + self.delimiter

    def frame_pieces(self, payload: Buffer) -> list[Buffer]:
        if len(payload) > self.max_frame_size or self.escape_check:
            return [self.frame(payload)]
        return [payload, self.delimiter]

    def frame_many(self, payloads: Iterable[Buffer]) -> bytes:
        items = payloads if isinstance(payloads, Sequence) else list(payloads)
        if not items:
            return b""
        if max(map(len, items)) > self.max_frame_size or self.escape_check:
            return b"".join(map(self.frame, items))
        d = self.delimiter
        return d.join(items) + d


_LENGTH_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_DIRECT_MIN = 64 * 1024  # bodies this large are received in place (get_buffer)
_SPARE_MAX = 16 * 1024 * 1024
_spare = threading.local()
_RUN_MIN = 8  # frames of one size in a row before the C-level run decoder is worth it
_first = itemgetter(0)


class LengthPrefixFramer(BaseFramer):
    """Each frame is ``magic + length + payload``.

    ``length_size`` is 1, 2, 4 or 8 bytes, ``byteorder`` ``"big"`` (network order, default) or
    ``"little"``. ``magic`` is an optional fixed header sent before the length and checked on
    receipt (a mismatch is a :class:`RemoteProtocolError`). The declared length is checked
    against ``max_frame_size`` the moment the header arrives, before any of the body is
    buffered.
    """

    def __init__(
        self,
        length_size: int = 4,
        byteorder: Literal["big", "little"] = "big",
        *,
        magic: bytes = b"",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if length_size not in _LENGTH_CODES:
            raise ValueError(f"length_size must be 1, 2, 4 or 8, not {length_size!r}")
        if byteorder not in ("big", "little"):
            raise ValueError(f"byteorder must be 'big' or 'little', not {byteorder!r}")
        representable = (1 << (8 * length_size)) - 1
        super().__init__(min(max_frame_size, representable))
        self.length_size = length_size
        self.byteorder = byteorder
        self.magic = bytes(magic)
        self._header = struct.Struct(
            ("<" if byteorder == "little" else ">")
            + f"{len(self.magic)}s{_LENGTH_CODES[length_size]}"
        )
        self._length = struct.Struct(
            ("<" if byteorder == "little" else ">") + _LENGTH_CODES[length_size]
        )
        self.header_size = self._header.size
        # An incomplete frame is held as the bytes of a partial header (``_head``), or, once
        # the header is known, as the received pieces of its body (``_parts``, memoryviews of
        # the chunks TCP delivered) joined in one copy when the last piece arrives: a 1 GiB
        # frame costs one copy, never a growing buffer.
        self._head = b""
        self._pending = False
        self._body: bytearray | None = None  # large body being received in place
        self._parts: list[Buffer] = []
        self._have = 0
        self._want = 0  # body size of the pending frame
        self._runs: dict[int, struct.Struct] = {}

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held until the rest arrives."""
        return len(self._head) + (self.header_size + self._have if self._pending else 0)

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            return self._end_of_stream()
        self._check_open()
        out: list[bytes] = []
        start = 0
        if self._body is not None:
            need = self._want - self._have
            chunk = data[:need]
            self._body[self._have : self._have + len(chunk)] = chunk
            frames = self.buffer_updated(len(chunk))
            if len(data) <= need:
                return frames
            out.extend(frames)
            start = need
        elif self._pending:
            n = len(data)
            need = self._want - self._have
            if n < need:
                self._parts.append(data)
                self._have += n
                return out
            parts = self._parts
            parts.append(data if n == need else memoryview(data)[:need])
            out.append(b"".join(parts))
            self._parts = []
            self._pending = False
            self._have = self._want = 0
            if n == need:
                return out
            start = need
        elif self._head:
            data = self._head + data  # fewer than header_size bytes were left over
            self._head = b""
        elif not self.magic and len(data) > self.header_size:
            # Request/response traffic: the read holds exactly one whole frame.
            hs = self.header_size
            if self._length.unpack_from(data)[0] == len(data) - hs <= self.max_frame_size:
                return [data[hs:]]
        consumed = self._parse(data, out, start)
        if consumed < len(data):
            if self._pending:
                body = consumed + self.header_size
                if body < len(data):
                    self._parts = [memoryview(data)[body:]]
                    self._have = len(data) - body
            else:
                self._head = data[consumed:]
        return out

    # Optional zero-copy extension of the framer contract (used by the transport when
    # present): get_buffer() offers memory for the next bytes, buffer_updated() says how
    # many arrived there. Offered only for the rest of a large frame whose size is known.

    def get_buffer(self, sizehint: int = -1) -> memoryview | None:
        """Where the next bytes should go, or None to have them passed to receive_data()."""
        if not self._pending or self._want < _DIRECT_MIN:
            return None
        if self._body is None:
            body = _spare.__dict__.pop("body", None)
            if body is None or len(body) < self._want or len(body) > 4 * self._want:
                body = bytearray(self._want)
            self._body = body
            pos = 0
            for part in self._parts:
                body[pos : pos + len(part)] = part
                pos += len(part)
            self._parts = []
        return memoryview(self._body)[self._have :]

    def buffer_updated(self, nbytes: int) -> list[bytes]:
        """``nbytes`` were written into the memory get_buffer() returned."""
        self._have += nbytes
        if self._have < self._want:
            return []
        body = self._body
        assert body is not None
        frame = bytes(body) if len(body) == self._want else bytes(memoryview(body)[: self._want])
        self._body = None
        if len(body) <= _SPARE_MAX:
            _spare.body = body  # one spare per thread: the next large frame reuses its pages
        self._pending = False
        self._have = self._want = 0
        return [frame]

    def _parse(self, data: bytes, out: list[bytes], off: int = 0) -> int:
        """Append every complete frame of ``data[off:]`` to ``out``; return where the
        undecoded rest starts (a partial header, or a header whose body is incomplete, in
        which case ``_pending`` is set and ``_want`` holds the body size)."""
        n = len(data)
        hs = self.header_size
        limit = self.max_frame_size
        magic = self.magic
        ml = len(magic)
        unpack = self._length.unpack_from
        append = out.append
        try_run = n >= _RUN_MIN * (hs + 1)
        while n - off >= hs:
            if ml and data[off : off + ml] != magic:
                raise self._bad_magic(data[off : off + ml], out)
            (size,) = unpack(data, off + ml)
            if size > limit:
                raise FrameTooLarge(
                    limit, size, detail=f"a frame declaring {size} bytes", frames=out
                )
            end = off + hs + size
            if end > n:
                self._pending = True
                self._want = size
                return off
            if try_run and n - off >= _RUN_MIN * (hs + size):
                run_end = self._parse_run(data, off, size, out)
                if run_end:
                    off = run_end
                    continue
                try_run = False
            append(data[off + hs : end])
            off = end
        if magic and off < n:
            seen = data[off : off + ml]
            if not magic.startswith(seen):
                raise self._bad_magic(seen, out)
        return off

    def _parse_run(self, data: bytes, off: int, size: int, out: list[bytes]) -> int:
        """Decode a run of equally sized frames from ``off`` in C (struct.iter_unpack).

        Streams of same-size records (samples, telemetry, fixed messages) are common; for
        them this costs a fraction of the per-frame loop. Every header of the run is checked
        byte for byte first, so the result is exactly the per-frame loop's; returns the end
        of the run, or 0 when the frames are not all of ``size`` bytes.
        """
        hs = self.header_size
        rec = hs + size
        k = (len(data) - off) // rec
        end = off + k * rec
        for j in range(hs):
            if data[off + j : end : rec] != data[off + j : off + j + 1] * k:
                return 0
        run = self._runs.get(size)
        if run is None:
            if len(self._runs) >= 64:
                self._runs.clear()
            run = self._runs[size] = struct.Struct(f"{hs}x{size}s")
        with memoryview(data) as view:
            out.extend(map(_first, run.iter_unpack(view[off:end])))
        return end

    def _bad_magic(self, seen: bytes, frames: list[bytes]) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"expected frame header {self.magic.hex(' ')}, got {bytes(seen).hex(' ')}: the peer "
            "does not speak this framing or the stream is out of sync",
            frames=frames,
        )

    def _end_of_stream(self) -> list[bytes]:
        if self._eof:
            return []
        self._eof = True
        n = self.buffered
        self._head = b""
        self._body = None
        self._parts = []
        self._pending = False
        if n:
            raise IncompleteFrame(n)
        return []

    def frame(self, payload: Buffer) -> bytes:
        n = len(payload)
        if n > self.max_frame_size:
            raise self._too_large_to_send(n)
        return self._header.pack(self.magic, n) + payload

    def frame_pieces(self, payload: Buffer) -> list[Buffer]:
        n = len(payload)
        if n > self.max_frame_size:
            raise self._too_large_to_send(n)
        return [self._header.pack(self.magic, n), payload]

    def frame_many(self, payloads: Iterable[Buffer]) -> bytes:
        items = payloads if isinstance(payloads, Sequence) else list(payloads)
        if not items:
            return b""
        sizes = list(map(len, items))
        largest = max(sizes)
        if largest > self.max_frame_size:
            raise self._too_large_to_send(largest)
        if largest == min(sizes):
            # All the same size: one header between all of them, joined in C.
            header = self._header.pack(self.magic, largest)
            return header + header.join(items)
        if self.magic:
            magic = self.magic
            headers: Iterable[bytes] = (self._header.pack(magic, s) for s in sizes)
        else:
            headers = map(self._length.pack, sizes)
        return b"".join(chain.from_iterable(zip(headers, items, strict=True)))
