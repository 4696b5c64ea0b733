"""Sans-IO framers of serpy's two wire protocols, registered with the core as ``"serpy"`` and
``"serpy2"`` (see :mod:`polysock_serpy.plugin`).

* :class:`SerpyBlockFramer`: protocol 1's block layer, the core's
  :class:`~polysock.DelimiterFramer` on ``0x1F``.
* :class:`Serpy2Framer`: protocol 2's 14-byte header frames. Garbage before a header is
  skipped up to the next magic, frames with a bad checksum or an unknown type are dropped;
  each case is reported through ``on_error`` and never ends the connection.

A frame over ``max_frame_size`` raises :class:`~polysock.FrameTooLarge` as the core's framer
contract asks (``oversize="raise"``, the default, for generic polysock code). The serpy
connections use ``oversize="skip"``: serpy drops the message and goes on, so the oversized
block or payload is skipped as it arrives, without being buffered, and reported in its place
(an :class:`OversizedBlock` marker in protocol 1, ``on_error`` in protocol 2).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from polysock.errors import FrameTooLarge
from polysock.framing import BaseFramer, Buffer, DelimiterFramer

from .codec import byte_sum

__all__ = [
    "BLOCKIDCODE",
    "FLOATTYPECODE",
    "HEADLEN",
    "INTTYPECODE",
    "RAWBYTESTYPECODE",
    "SEPARATOR",
    "SERPY2_MAX_MESSAGE_SIZE",
    "SERPY_MAX_MESSAGE_SIZE",
    "STRTYPECODE",
    "DeferredFrame",
    "OversizedBlock",
    "Serpy2Framer",
    "Serpy2Payload",
    "SerpyBlockFramer",
    "TypedFrame",
]

SEPARATOR = b"\x1f"
SERPY_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
SERPY2_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024

BLOCKIDCODE = b"\xde\xca\xfe\xca\xfe"
INTTYPECODE = b"\x01"
FLOATTYPECODE = b"\x11"
STRTYPECODE = b"\x21"
RAWBYTESTYPECODE = b"\x81"
HEADLEN = 14

_RAW = RAWBYTESTYPECODE[0]
_KNOWN_TYPES = frozenset((INTTYPECODE[0], FLOATTYPECODE[0], STRTYPECODE[0], _RAW))
_HEADER = struct.Struct("<5sBII")  # magic, type, checksum, length
_DIRECT_MIN = 64 * 1024  # bodies at least this large are received in place (get_buffer)
_SCRATCH = 256 * 1024
_spare = threading.local()

ErrorCallback = Callable[[str], object]
OversizePolicy = Literal["raise", "skip"]


def _check_policy(oversize: str) -> None:
    if oversize not in ("raise", "skip"):
        raise ValueError(f"oversize must be 'raise' or 'skip', not {oversize!r}")


# ---------------------------------------------------------------- protocol 1


class OversizedBlock(bytes):
    """Marker (an empty ``bytes``) standing for a block that exceeded ``max_frame_size`` and
    was skipped. ``size`` is its length; ``last`` its final byte (``0x04`` ends a mode-1/3/5
    message even when the block itself is dropped), or -1 for an empty block."""

    size: int
    last: int

    def __new__(cls, size: int, last: int) -> OversizedBlock:
        self = super().__new__(cls, b"")
        self.size = size
        self.last = last
        return self

    def __repr__(self) -> str:
        return f"OversizedBlock(size={self.size}, last={self.last:#x})"


class SerpyBlockFramer(DelimiterFramer):
    """Protocol-1 blocks: payload + ``0x1F``. Receiving yields every block (empty ones too);
    with ``oversize="skip"`` an oversized block yields an :class:`OversizedBlock` marker
    instead of raising. A partial block at the end of the stream is discarded (as serpy did).
    """

    def __init__(
        self, max_frame_size: int = SERPY_MAX_MESSAGE_SIZE, *, oversize: OversizePolicy = "raise"
    ) -> None:
        _check_policy(oversize)
        super().__init__(SEPARATOR, strip=True, at_eof="discard", max_frame_size=max_frame_size)
        self.oversize = oversize
        self._skipping = False  # inside an oversized block: count it, keep nothing
        self._skipped = 0
        self._skipped_last = -1

    def receive_data(self, data: bytes) -> list[bytes]:
        if self.oversize == "raise":
            return super().receive_data(data)
        if not data:
            if self._skipping and not self._eof:
                # The oversized block never ended: still report it (at its place, last).
                self._skipping = False
                self._eof = True
                self._buf.clear()
                return [OversizedBlock(self._skipped, self._skipped_last)]
            return self._end_of_stream()
        self._check_open()
        out: list[bytes] = []
        if self._skipping:
            end = data.find(SEPARATOR)
            if end < 0:
                self._skipped += len(data)
                self._skipped_last = data[-1]
                return out
            if end:
                self._skipped += end
                self._skipped_last = data[end - 1]
            out.append(OversizedBlock(self._skipped, self._skipped_last))
            self._skipping = False
            data = data[end + 1 :]
            if not data:
                return out
        buf = self._buf
        limit = self.max_frame_size
        if buf:
            start = len(buf)
            buf += data
            if buf.find(SEPARATOR, start) < 0:
                if len(buf) > limit:
                    self._skip(buf)
                    buf.clear()
                return out
            data = bytes(buf)
            buf.clear()
        elif SEPARATOR not in data:
            if len(data) > limit:
                self._skip(data)
            else:
                buf += data
            return out
        parts = data.split(SEPARATOR)
        tail = parts.pop()
        if len(data) > limit:
            parts = [
                p if len(p) <= limit else OversizedBlock(len(p), p[-1]) for p in parts
            ]
        out.extend(parts)
        if tail:
            if len(tail) > limit:
                self._skip(tail)
            else:
                buf += tail
        return out

    def _skip(self, data: Buffer) -> None:
        self._skipping = True
        self._skipped = len(data)
        self._skipped_last = data[-1]


# ---------------------------------------------------------------- protocol 2


class TypedFrame(bytes):
    """A received serpy2 payload whose type is not raw bytes: ``type_code`` is ``0x01`` (int),
    ``0x11`` (float) or ``0x21`` (str). Raw-bytes frames are plain ``bytes``.

    Passing one to :meth:`Serpy2Framer.frame` keeps its type, so an echo server built on the
    generic API sends back what it got."""

    type_code: int

    def __new__(cls, payload: Buffer, type_code: int) -> TypedFrame:
        self = super().__new__(cls, payload)
        self.type_code = type_code
        return self

    def __repr__(self) -> str:
        return f"TypedFrame({bytes(self)!r}, type_code={self.type_code:#04x})"


class Serpy2Payload:
    """An outgoing payload with its type and checksum computed by the sender's thread, so
    the event-loop thread only writes the header and hands the body to the socket."""

    __slots__ = ("checksum", "data", "type_code")

    def __init__(self, data: Buffer, type_code: int, checksum: int | None = None) -> None:
        self.data = data
        self.type_code = type_code
        self.checksum = byte_sum(data) if checksum is None else checksum

    def __len__(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return bytes(self.data)

    def __repr__(self) -> str:
        return f"Serpy2Payload(<{len(self.data)} bytes>, type_code={self.type_code:#04x})"


class DeferredFrame:
    """A large received frame whose checksum is still to be verified (``defer_large=True``).

    Verifying the sum of a multi-megabyte payload and copying it into ``bytes`` are left to
    the application thread that takes the message (:meth:`resolve`), so the event-loop
    thread only moves bytes from the socket into the frame's buffer. That buffer goes back
    to a small pool once resolved, so the next large frame is received into memory that is
    already mapped.
    """

    __slots__ = ("_error", "_lock", "_value", "body", "checksum", "size", "type_code")

    def __init__(self, body: Buffer, size: int, checksum: int, type_code: int) -> None:
        self.body: Buffer | None = body
        self.size = size
        self.checksum = checksum
        self.type_code = type_code
        self._lock = threading.Lock()
        self._value: bytes | None = None
        self._error: str | None = None

    def resolve(self) -> bytes:
        """The payload (``bytes`` or :class:`TypedFrame`); ``ValueError`` on a bad checksum.
        Idempotent and thread-safe (the result is kept)."""
        with self._lock:
            if self.body is not None:
                body, self.body = self.body, None
                with memoryview(body) as whole, whole[: self.size] as view:
                    total = byte_sum(view)
                    if total != self.checksum:
                        self._error = (
                            f"checksum mismatch in a {self.size}-byte frame of type "
                            f"{self.type_code:#04x} (header {self.checksum:#010x}, payload "
                            f"{total:#010x}); frame dropped"
                        )
                    elif self.type_code != _RAW:
                        self._value = TypedFrame(view, self.type_code)
                    elif type(body) is bytes and len(body) == self.size:
                        self._value = body
                    else:
                        self._value = view.tobytes()
                if type(body) is bytearray:
                    _release(body)
            if self._error is not None:
                raise ValueError(self._error)
            assert self._value is not None
            return self._value


_pool: list[bytearray] = []  # spare receive buffers (list.append/pop are atomic)
_POOL_MAX = 4
_POOLED_MAX = 64 * 1024 * 1024


def _release(buf: bytearray) -> None:
    if len(buf) <= _POOLED_MAX and len(_pool) < _POOL_MAX:
        _pool.append(buf)


def _acquire(size: int) -> bytearray:
    for _ in range(len(_pool)):
        try:
            buf = _pool.pop()
        except IndexError:
            break
        if size <= len(buf) <= 4 * size:
            return buf
    return bytearray(size)


class Serpy2Framer(BaseFramer):
    """Protocol-2 frames: ``DE CA FE CA FE``, type, LE32 byte-sum checksum, LE32 length, payload.

    ``receive_data`` returns every complete valid frame: raw-bytes payloads as ``bytes``, the
    others as :class:`TypedFrame`. Problems never raise; each calls ``on_error(text)`` once:

    * bytes that are not a header: skipped up to the next magic (one error per garbage run,
      however TCP split it), so the frames after them are kept;
    * a declared length above ``max_frame_size``: the payload is skipped as it arrives;
    * an unknown type byte or a checksum mismatch: the frame is dropped.

    A declared length above ``max_frame_size`` raises :class:`~polysock.FrameTooLarge` (before
    the payload arrives), or with ``oversize="skip"`` the payload is skipped as it arrives (one
    ``on_error``). ``defer_large=True`` leaves the checksum of payloads of 64 KiB and more to
    whoever takes the frame (:class:`DeferredFrame`).

    ``frame(payload)`` sends raw bytes (type ``0x81``), a :class:`TypedFrame` with its type, a
    :class:`Serpy2Payload` with its type and precomputed checksum.
    """

    def __init__(
        self,
        max_frame_size: int = SERPY2_MAX_MESSAGE_SIZE,
        *,
        on_error: ErrorCallback | None = None,
        defer_large: bool = False,
        oversize: OversizePolicy = "raise",
    ) -> None:
        _check_policy(oversize)
        super().__init__(min(max_frame_size, 0xFFFFFFFF))
        self.oversize = oversize
        self.on_error = on_error
        #: frames of 64 KiB and more come out as :class:`DeferredFrame` (checked later)
        self.defer_large = defer_large
        #: problems met so far (also reported through ``on_error``)
        self.errors = 0
        self._buf = bytearray()  # bytes not yet parsed (partial header, small partial body)
        self._in_garbage = False
        # the frame whose body is being received
        self._pending = False
        self._want = 0
        self._have = 0
        self._type = 0
        self._checksum = 0
        self._sum = 0
        self._drop: str | None = None  # why the pending body is skipped, or None
        self._defer = False  # the pending frame is a DeferredFrame (no sum computed here)
        self._body: bytearray | None = None  # large body, received in place
        self._parts: list[bytes] = []

    # ------------------------------------------------------------ receiving

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held until the rest arrives."""
        kept = self._have if self._pending and self._drop is None else 0
        return len(self._buf) + kept

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            return self._end_of_stream()
        self._check_open()
        out: list[Any] = []
        pos = 0
        if self._pending:
            pos = self._feed_body(data, 0, out)
            if pos == len(data):
                return out
        buf = self._buf
        if buf:
            buf += memoryview(data)[pos:]
            rest = self._parse(bytes(buf), 0, out)
            buf.clear()
            data, pos = rest
        else:
            data, pos = self._parse(data, pos, out)
        if pos < len(data):
            buf += memoryview(data)[pos:]
        return out

    def _parse(self, data: bytes, pos: int, out: list[Any]) -> tuple[bytes, int]:
        """Decode frames from ``data[pos:]``; returns (data, where the unparsed rest starts).
        The rest is a partial header; a partial body becomes the pending frame."""
        n = len(data)
        limit = self.max_frame_size
        magic = BLOCKIDCODE
        while pos < n:
            if data.startswith(magic, pos):
                if n - pos < HEADLEN:
                    return data, pos
                self._in_garbage = False
                _, type_code, checksum, length = _HEADER.unpack_from(data, pos)
                start = pos + HEADLEN
                end = start + length
                drop = None
                if length > limit:
                    if self.oversize == "raise":
                        raise FrameTooLarge(
                            limit, length, detail=f"a serpy2 frame declaring {length} bytes",
                            frames=out,
                        )
                    drop = (
                        f"frame declaring {length} bytes exceeds max_message_size={limit}; "
                        "skipped"
                    )
                elif type_code not in _KNOWN_TYPES:
                    drop = f"frame of unknown type {type_code:#04x} ({length} bytes) dropped"
                if drop is None and end <= n:
                    if self.defer_large and length >= _DIRECT_MIN:
                        out.append(DeferredFrame(data[start:end], length, checksum, type_code))
                        pos = end
                        continue
                    body = data[start:end]
                    if byte_sum(body) == checksum:
                        out.append(body if type_code == _RAW else TypedFrame(body, type_code))
                    else:
                        self._error(
                            f"checksum mismatch in a {length}-byte frame of type "
                            f"{type_code:#04x} (header {checksum:#010x}, payload "
                            f"{byte_sum(body):#010x}); frame dropped"
                        )
                    pos = end
                    continue
                if drop is not None:
                    self._error(drop)
                self._pending = True
                self._want = length
                self._have = 0
                self._type = type_code
                self._checksum = checksum
                self._sum = 0
                self._drop = drop
                self._defer = self.defer_large and length >= _DIRECT_MIN
                pos = self._feed_body(data, start, out)
                continue
            # Not at a header: resynchronise on the next magic.
            seen = data[pos : pos + len(magic)]
            if magic.startswith(seen):  # a header may be starting: wait for more
                return data, pos
            idx = data.find(magic, pos + 1)
            if idx < 0:
                # Keep the longest tail that could begin a magic, drop the rest.
                keep = 0
                for k in range(min(len(magic) - 1, n - pos - 1), 0, -1):
                    if data.endswith(magic[:k]):
                        keep = k
                        break
                self._garbage(n - keep - pos)
                return data, n - keep
            self._garbage(idx - pos)
            pos = idx
        return data, pos

    def _garbage(self, count: int) -> None:
        if not self._in_garbage:
            self._in_garbage = True
            self._error(f"{count} bytes of garbage before a frame header skipped")

    def _feed_body(self, data: bytes, pos: int, out: list[Any]) -> int:
        """Take the pending frame's body bytes from ``data[pos:]``; returns the new pos."""
        need = self._want - self._have
        take = min(need, len(data) - pos)
        if take <= 0 and need > 0:
            return pos
        if self._drop is None and take:
            chunk = data[pos : pos + take] if (pos or take < len(data)) else data
            if not self._defer:
                self._sum += byte_sum(chunk)
            if self._body is not None:
                self._body[self._have : self._have + take] = chunk
            else:
                self._parts.append(chunk)
        self._have += take
        if self._have == self._want:
            self._finish(out)
        return pos + take

    def _finish(self, out: list[Any]) -> None:
        self._pending = False
        drop, self._drop = self._drop, None
        body_buf, self._body = self._body, None
        parts, self._parts = self._parts, []
        if drop is not None:
            return
        body: Buffer
        if body_buf is not None:
            body = body_buf
        else:
            body = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._defer:
            out.append(DeferredFrame(body, self._want, self._checksum, self._type))
            return
        if body_buf is not None:
            body = bytes(body_buf) if len(body_buf) == self._want else bytes(
                memoryview(body_buf)[: self._want]
            )
            if len(body_buf) <= 16 * 1024 * 1024:
                _spare.body = body_buf  # the next large frame reuses its pages
        if self._sum & 0xFFFFFFFF != self._checksum:
            self._error(
                f"checksum mismatch in a {self._want}-byte frame of type {self._type:#04x} "
                f"(header {self._checksum:#010x}, payload {self._sum & 0xFFFFFFFF:#010x}); "
                "frame dropped"
            )
            return
        out.append(body if self._type == _RAW else TypedFrame(body, self._type))

    # Optional zero-copy extension of the framer contract (used by the core's transport):
    # the rest of a large frame is read straight into its own buffer, or, for a skipped
    # frame, into a scratch buffer that is reused.

    def get_buffer(self, sizehint: int = -1) -> memoryview | None:
        if not self._pending or self._buf:
            return None
        need = self._want - self._have
        if self._drop is not None:
            scratch = _spare.__dict__.get("scratch")
            if scratch is None:
                scratch = _spare.scratch = bytearray(_SCRATCH)
            return memoryview(scratch)[: min(need, _SCRATCH)]
        if self._want < _DIRECT_MIN:
            return None
        if self._body is None:
            if self._defer:
                body = _acquire(self._want)
            else:
                body = _spare.__dict__.pop("body", None)
                if body is None or len(body) < self._want or len(body) > 4 * self._want:
                    body = bytearray(self._want)
            pos = 0
            for part in self._parts:
                body[pos : pos + len(part)] = part
                pos += len(part)
            self._parts = []
            self._body = body
        return memoryview(self._body)[self._have : self._want]

    def buffer_updated(self, nbytes: int) -> list[bytes]:
        out: list[Any] = []
        if self._drop is None and not self._defer:
            assert self._body is not None
            self._sum += byte_sum(memoryview(self._body)[self._have : self._have + nbytes])
        self._have += nbytes
        if self._have >= self._want:
            self._finish(out)
        return out

    def _end_of_stream(self) -> list[bytes]:
        if self._eof:
            return []
        self._eof = True
        if self._pending or self._buf:
            what = (
                f"{self._have} of {self._want} payload bytes" if self._pending
                else f"{len(self._buf)} bytes of a header"
            )
            if not (self._pending and self._drop is not None) and not self._in_garbage:
                self._error(f"connection closed in the middle of a frame ({what}); discarded")
        self._buf.clear()
        self._pending = False
        self._body = None
        self._parts = []
        return []

    def _error(self, text: str) -> None:
        self.errors += 1
        if self.on_error is not None:
            self.on_error(text)

    # ------------------------------------------------------------ sending

    def max_send_size(self) -> int:
        return self.max_frame_size

    def header(self, payload: Buffer | Serpy2Payload) -> bytes:
        """The 14-byte header for ``payload`` (see :meth:`frame` for the accepted types)."""
        n = len(payload)
        if n > self.max_frame_size:
            raise self._too_large_to_send(n)
        if isinstance(payload, Serpy2Payload):
            return _HEADER.pack(BLOCKIDCODE, payload.type_code, payload.checksum, n)
        type_code = payload.type_code if isinstance(payload, TypedFrame) else _RAW
        return _HEADER.pack(BLOCKIDCODE, type_code, byte_sum(payload), n)

    def frame(self, payload: Buffer | Serpy2Payload) -> bytes:
        body = payload.data if isinstance(payload, Serpy2Payload) else payload
        return self.header(payload) + body

    def frame_pieces(self, payload: Buffer | Serpy2Payload) -> list[Buffer]:
        body = payload.data if isinstance(payload, Serpy2Payload) else payload
        return [self.header(payload), body]

    def frame_many(self, payloads: Iterable[Buffer | Serpy2Payload]) -> bytes:
        items: Sequence[Any] = payloads if isinstance(payloads, Sequence) else list(payloads)
        return b"".join([piece for p in items for piece in self.frame_pieces(p)])

