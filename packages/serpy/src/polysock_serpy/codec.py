"""Base85 (RFC 1924 alphabet, as :func:`base64.b85encode`) and the serpy2 byte-sum checksum.

Both run over whole buffers with C-level primitives instead of a Python loop per 4-byte group
or per byte: the standard library's ``b85encode``/``b85decode`` cost 150-400 ms per MiB, the
per-byte ``sum()`` about 10 ms per MiB, which made large serpy messages slow and would stall
the event loop. The results are byte-identical to the standard library's (the tests compare
them on random data of every length).

The base85 functions treat a big ``int`` as a vector: every 4-byte group is placed in a slot
of its own inside one integer, so one multiplication or subtraction works on all groups at
once without carries crossing slots (SIMD within a register, with Python's arbitrary-length
integers as the register).
"""

from __future__ import annotations

import importlib
import struct
import zlib
from collections.abc import Callable
from itertools import starmap
from typing import Any

__all__ = ["B85_ALPHABET", "b85decode", "b85encode", "b85encoded_size", "byte_sum"]

Buffer = bytes | bytearray | memoryview

B85_ALPHABET = (
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
)
_DIGIT_TO_CHAR = B85_ALPHABET + bytes(256 - 85)
_CHAR_TO_DIGIT = bytearray(256)
for _i, _c in enumerate(B85_ALPHABET):
    _CHAR_TO_DIGIT[_c] = _i
_CHAR_TO_DIGIT_T = bytes(_CHAR_TO_DIGIT)
del _i, _c

# Work in chunks: bounded temporary memory (a few times the chunk) and cache-friendly sizes.
_ENC_CHUNK = 256 * 1024  # input bytes, a multiple of 4
_DEC_CHUNK = 320 * 1024  # input characters, a multiple of 5
# Magic reciprocals (multiply, then shift): exact for the operand ranges used below.
_M7225 = -(-(1 << 48) // 7225)  # w // 7225 for w < 2**32, shift 48
_M85 = -(-(1 << 32) // 85)  # v // 85 for v < 2**20, shift 32


def b85encoded_size(n: int) -> int:
    """Length of ``b85encode`` of ``n`` bytes (checked before encoding a huge message)."""
    return (n * 5 + 3) // 4


def b85encode(data: Buffer, suffix: bytes = b"") -> bytes:
    """``base64.b85encode(data) + suffix`` (the suffix costs no extra copy)."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    n = len(view)
    out = bytearray()
    for start in range(0, n, _ENC_CHUNK):
        out += _encode_chunk(view[start : start + _ENC_CHUNK])
    out += suffix
    return bytes(out)


def _slotted(width: int, count: int, planes: list[tuple[int, Buffer]]) -> int:
    """A big-endian integer of ``count`` slots of ``width`` bytes; ``planes`` gives, for some
    byte offsets inside a slot, the bytes to put there in every slot."""
    buf = bytearray(width * count)
    for offset, plane in planes:
        buf[offset::width] = plane
    return int.from_bytes(buf, "big")


def _encode_chunk(chunk: Buffer) -> bytes:
    n = len(chunk)
    pad = -n % 4
    data = bytes(chunk) + b"\0" * pad
    k = (n + pad) // 4
    if k == 0:
        return b""
    # Each 32-bit group w gives five digits d0..d4 (w = d0*85**4 + ... + d4). First split
    # w = q*7225 + r (q < 2**20, r < 7225) with one multiplication by a reciprocal, in
    # 9-byte slots (the product needs 68 bits).
    w = _slotted(9, k, [(5, data[0::4]), (6, data[1::4]), (7, data[2::4]), (8, data[3::4])])
    prod = (w * _M7225).to_bytes(9 * k, "big")
    q0, q1, q2 = prod[0::9], prod[1::9], prod[2::9]  # q = bits 48..71 of each slot
    q = _slotted(9, k, [(6, q0), (7, q1), (8, q2)])
    rem = (w - 7225 * q).to_bytes(9 * k, "big")
    r0, r1 = rem[7::9], rem[8::9]
    # Then q = a*85 + d2 and r = d3*85 + d4, both at once in alternating 6-byte slots.
    pair = _slotted(12, k, [(3, q0), (4, q1), (5, q2), (10, r0), (11, r1)])
    prod = (pair * _M85).to_bytes(12 * k, "big")
    quot = bytearray(12 * k)
    quot[4::6] = prod[0::6]
    quot[5::6] = prod[1::6]
    digits = (pair - 85 * int.from_bytes(quot, "big")).to_bytes(12 * k, "big")
    d2, d4 = digits[5::12], digits[11::12]
    d3 = quot[11::12]
    # Finally a = d0*85 + d1 (a < 7225).
    a = _slotted(6, k, [(4, quot[4::12]), (5, quot[5::12])])
    d0 = (a * _M85).to_bytes(6 * k, "big")[1::6]
    d1 = (a - 85 * _slotted(6, k, [(5, d0)])).to_bytes(6 * k, "big")[5::6]
    out = bytearray(5 * k)
    out[0::5] = d0
    out[1::5] = d1
    out[2::5] = d2
    out[3::5] = d3
    out[4::5] = d4
    text = out.translate(_DIGIT_TO_CHAR)
    if pad:
        del text[-pad:]
    return bytes(text)


def b85decode(text: Buffer) -> bytes:
    """``base64.b85decode(text)``; raises ``ValueError`` for characters outside the alphabet
    and for groups that overflow 32 bits, as the standard library does."""
    data = bytes(text)
    if data.translate(None, B85_ALPHABET):
        bad = next(i for i, c in enumerate(data) if c not in B85_ALPHABET)
        raise ValueError(f"bad base85 character at position {bad}")
    out = bytearray()
    for start in range(0, len(data), _DEC_CHUNK):
        out += _decode_chunk(data[start : start + _DEC_CHUNK], start)
    return bytes(out)


def _decode_chunk(chunk: bytes, base: int) -> bytes:
    pad = -len(chunk) % 5
    if pad:
        chunk += b"~" * pad
    k = len(chunk) // 5
    if k == 0:
        return b""
    digits = chunk.translate(_CHAR_TO_DIGIT_T)
    # Horner's rule on 8-byte slots, one per group: w = (((d0*85 + d1)*85 + d2)*85 + d3)*85 + d4
    acc = _slotted(8, k, [(7, digits[0::5])])
    for i in range(1, 5):
        acc = acc * 85 + _slotted(8, k, [(7, digits[i::5])])
    slots = acc.to_bytes(8 * k, "big")
    if slots[3::8].strip(b"\0"):  # a group of 2**32 or more
        group = next(i for i, c in enumerate(slots[3::8]) if c)
        raise ValueError(f"base85 overflow in hunk starting at byte {base + 5 * group}")
    out = bytearray(4 * k)
    out[0::4] = slots[4::8]
    out[1::4] = slots[5::8]
    out[2::4] = slots[6::8]
    out[3::4] = slots[7::8]
    if pad:
        del out[-pad:]
    return bytes(out)


# ------------------------------------------------------------------ checksum

_ADLER_MOD = 65521
_INV_65536 = pow(65536, -1, _ADLER_MOD)
_BLOCK = struct.Struct("256s")
_EXACT_MAX = 16 * 1024 * 1024  # below 255 * this the CRT result below is exact
_numpy_sum: Callable[[memoryview], int] | bool | None = None  # None: not tried yet


def _load_numpy() -> None:
    global _numpy_sum
    try:
        numpy: Any = importlib.import_module("numpy")
    except ImportError:  # pragma: no cover - depends on the environment
        _numpy_sum = False
        return

    def _sum(view: memoryview) -> int:
        # uint32 accumulation wraps modulo 2**32, which is exactly the checksum's definition.
        return int(numpy.frombuffer(view, numpy.uint8).sum(dtype=numpy.uint32))

    _numpy_sum = _sum


def byte_sum(data: Buffer, *, use_numpy: bool | None = None) -> int:
    """Sum of all bytes modulo 2**32 (serpy2's checksum), at C speed.

    With NumPy installed (optional) one vectorised pass is used for buffers of 64 KiB and
    more (``use_numpy=False`` forbids it). Without NumPy: ``zlib.adler32`` over 256-byte blocks
    gives the sum modulo 65536 (each block's A-sum is exact), one ``adler32`` over everything
    gives it modulo 65521, and the Chinese remainder theorem joins both.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    n = len(view)
    if n < 256:
        return sum(view)
    if use_numpy is not False and n >= 65536:
        if _numpy_sum is None:
            _load_numpy()
        if callable(_numpy_sum):
            return _numpy_sum(view)
    total = 0
    for start in range(0, n, _EXACT_MAX):
        total += _exact_sum(view[start : start + _EXACT_MAX])
    return total & 0xFFFFFFFF


def _exact_sum(view: memoryview) -> int:
    n = len(view)
    whole = n - n % 256
    blocks = whole // 256
    # adler32(block) with its default start value 1 has A = 1 + sum(block) (< 65521).
    low = sum(starmap(zlib.adler32, _BLOCK.iter_unpack(view[:whole]))) - blocks
    low = (low + sum(view[whole:])) & 0xFFFF
    mod_p = zlib.adler32(view, 0) & 0xFFFF
    return low + 65536 * (((mod_p - low) * _INV_65536) % _ADLER_MOD)
