"""The polysock plugin of tcpcom: the ``"tcpcom"`` framing and the ``tcpcom`` flavour.

Registered through the ``polysock`` entry-point group, so any polysock tool (``polysock demo``,
``polysock serve --framing tcpcom``) speaks tcpcom's wire format without importing the
TCPServer/TCPClient facade. The framing is the core's :class:`~polysock.DelimiterFramer` with
tcpcom's rules fixed: a one-byte end-of-block (NUL by default), stripped on receipt, and an
unterminated tail dropped when the stream ends (the original never delivered it either).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from polysock import DelimiterFramer, Flavour, Framer, hookimpl
from polysock.framing import DEFAULT_MAX_FRAME_SIZE

__all__ = ["DEFAULT_END_OF_BLOCK", "end_of_block_byte", "tcpcom_framer"]

DEFAULT_END_OF_BLOCK = b"\0"


def end_of_block_byte(end_of_block: str | bytes | bytearray) -> bytes:
    """The terminator as one byte; anything else is refused here rather than on the wire.

    Only ASCII is allowed for a ``str`` because a non-ASCII character would be several UTF-8
    bytes, and the Java twin and the 1.32 original both treat the terminator as one byte.
    """
    if isinstance(end_of_block, str):
        if len(end_of_block) != 1 or ord(end_of_block) >= 128:
            raise ValueError(
                f"endOfBlock must be one ASCII character, not {end_of_block!r}"
            )
        return end_of_block.encode("ascii")
    if isinstance(end_of_block, (bytes, bytearray)):
        if len(end_of_block) != 1:
            raise ValueError(f"endOfBlock must be a single byte, not {bytes(end_of_block)!r}")
        return bytes(end_of_block)
    raise TypeError(
        f"endOfBlock must be a str of length 1 or bytes of length 1, "
        f"not {type(end_of_block).__name__}"
    )


def tcpcom_framer(
    delimiter: str | bytes = DEFAULT_END_OF_BLOCK,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> DelimiterFramer:
    """A fresh framer for one tcpcom connection (payload + one end-of-block byte)."""
    return DelimiterFramer(
        end_of_block_byte(delimiter),
        strip=True,
        at_eof="discard",
        max_frame_size=max_frame_size,
    )


@hookimpl
def polysock_add_framers() -> Mapping[str, Callable[..., Framer]]:
    return {"tcpcom": tcpcom_framer}


@hookimpl
def polysock_add_flavours() -> list[Flavour]:
    return [
        Flavour(
            name="tcpcom",
            summary="TigerJython/RaspiBrick tcpcom: TCPServer/TCPClient, NUL-terminated UTF-8",
            framing="tcpcom",
            framing_options={},
            modules=("tcpcom",),
        )
    ]
