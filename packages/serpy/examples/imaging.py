"""Synthetic 512x512 float32 camera frames for the instrument examples.

NumPy is used when it is installed (as the original's test scripts did); without it the
standard library's ``array`` module builds the very same bytes, so the examples run anywhere.
"""

from __future__ import annotations

import array
import functools
import sys

WIDTH = HEIGHT = 512

try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the environment
    np = None


@functools.lru_cache(maxsize=64)
def frame(index: int) -> memoryview:
    """Frame number ``index``: pixel (y, x) = index + (x * y) % 251 / 251, float32."""
    if np is not None:
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
        img = (index + ((x * y) % 251) / 251.0).astype(np.float32)
        return memoryview(img)  # sent as is: serpy2 takes any buffer
    values = array.array("f", (index + ((x * y) % 251) / 251.0
                               for y in range(HEIGHT) for x in range(WIDTH)))
    if sys.byteorder != "little":  # match NumPy's native little-endian bytes
        values.byteswap()
    return memoryview(values)


@functools.lru_cache(maxsize=64)
def frame_bytes(index: int) -> bytes:
    return frame(index).tobytes()
