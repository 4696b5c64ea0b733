"""Unit tests of the sans-IO framers: test vectors, limits, EOF, errors, large frames.

The property-based tests (every split of every stream) are in test_framing_properties.py.
"""

from __future__ import annotations

import pickle
import time

import polysock
import pytest
from polysock import (
    DelimiterFramer,
    FrameTooLarge,
    IncompleteFrame,
    LengthPrefixFramer,
    LocalProtocolError,
    PluginError,
    ProtocolError,
    RawFramer,
    RemoteProtocolError,
)
from polysock.framing import DEFAULT_MAX_FRAME_SIZE, Framer

KiB = 1024
MiB = 1024 * KiB


def feed(framer: Framer, chunks, *, eof: bool = True):
    """Feed ``chunks`` (then EOF); return (every frame delivered, the error or None)."""
    frames: list[bytes] = []
    try:
        for chunk in chunks:
            frames += framer.receive_data(chunk)
        if eof:
            frames += framer.receive_data(b"")
    except ProtocolError as exc:
        frames += exc.frames
        return frames, exc
    return frames, None


def chunked(data: bytes, size: int):
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


# ---------------------------------------------------------------- test vectors

VECTORS = [
    # (framer factory, payload, exact wire bytes)
    (lambda: DelimiterFramer(b"\0"), b"hello", b"hello\x00"),  # tcpcom
    (lambda: DelimiterFramer(b"\x1f"), b"hello", b"hello\x1f"),  # serpy
    (lambda: DelimiterFramer(b"\r\n"), b"hello", b"hello\r\n"),
    (lambda: DelimiterFramer("\n"), b"hello", b"hello\n"),  # str delimiter is encoded
    (lambda: DelimiterFramer(b"\0"), b"", b"\x00"),
    (lambda: LengthPrefixFramer(4, "big"), b"hello", b"\x00\x00\x00\x05hello"),
    (LengthPrefixFramer, b"hello", b"\x00\x00\x00\x05hello"),  # default: 4, big
    (lambda: LengthPrefixFramer(4, "little"), b"hello", b"\x05\x00\x00\x00hello"),
    (lambda: LengthPrefixFramer(2, "little"), b"hello", b"\x05\x00hello"),
    (lambda: LengthPrefixFramer(2, "big"), b"hello", b"\x00\x05hello"),
    (lambda: LengthPrefixFramer(2, "big"), b"x" * 300, b"\x01\x2c" + b"x" * 300),
    (lambda: LengthPrefixFramer(2, "little"), b"x" * 300, b"\x2c\x01" + b"x" * 300),
    (lambda: LengthPrefixFramer(1), b"hello", b"\x05hello"),
    (lambda: LengthPrefixFramer(1), b"", b"\x00"),
    (lambda: LengthPrefixFramer(8, "big"), b"hello", b"\x00" * 7 + b"\x05hello"),
    (lambda: LengthPrefixFramer(8, "little"), b"hello", b"\x05" + b"\x00" * 7 + b"hello"),
    (lambda: LengthPrefixFramer(4, magic=b"PS"), b"hello", b"PS\x00\x00\x00\x05hello"),
    (
        lambda: LengthPrefixFramer(2, "little", magic=b"\xca\xfe\xba\xbe"),
        b"hello",
        b"\xca\xfe\xba\xbe\x05\x00hello",
    ),
    (RawFramer, b"hello", b"hello"),
]


@pytest.mark.parametrize(("make", "payload", "wire"), VECTORS)
def test_vector_encode(make, payload, wire):
    assert make().frame(payload) == wire


@pytest.mark.parametrize(("make", "payload", "wire"), VECTORS)
def test_vector_decode(make, payload, wire):
    framer = make()
    frames, error = feed(framer, [wire])
    assert error is None
    assert frames == [payload]


@pytest.mark.parametrize(("make", "payload", "wire"), VECTORS)
def test_vector_decode_byte_by_byte(make, payload, wire):
    framer = make()
    frames, error = feed(framer, [wire[i : i + 1] for i in range(len(wire))])
    assert error is None
    if framer.message_boundaries:
        assert frames == [payload]
    else:  # raw: one message per chunk, the stream unchanged
        assert frames == [bytes([b]) for b in wire]


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
@pytest.mark.parametrize(
    "make",
    [
        RawFramer,
        lambda: DelimiterFramer(b"\0"),
        lambda: LengthPrefixFramer(2, "little", magic=b"M"),
    ],
)
def test_frame_accepts_any_buffer(make, buffer_type):
    framer = make()
    expected = framer.frame(b"abc")
    got = framer.frame(buffer_type(b"abc"))
    assert type(got) is bytes
    assert got == expected
    assert framer.frame_many([buffer_type(b"abc"), b"de"]) == expected + framer.frame(b"de")


PAYLOAD_LISTS = [[], [b""], [b"hello"], [b"a", b"", b"bc", b"x" * 255], [b"\x00\xff" * 40] * 5]
ALL_FRAMERS = [
    RawFramer,
    lambda: DelimiterFramer(b"\0"),
    lambda: DelimiterFramer(b"\r\n", strip=False),
    lambda: DelimiterFramer(b"|", escape_check=True),
    lambda: LengthPrefixFramer(1),
    lambda: LengthPrefixFramer(2, "little"),
    lambda: LengthPrefixFramer(4),
    lambda: LengthPrefixFramer(8, "little"),
    lambda: LengthPrefixFramer(4, magic=b"PS"),
]


@pytest.mark.parametrize("make", ALL_FRAMERS)
@pytest.mark.parametrize("payloads", PAYLOAD_LISTS)
def test_frame_many_is_concatenation_of_frame(make, payloads):
    framer = make()
    expected = b"".join(framer.frame(p) for p in payloads)
    assert framer.frame_many(payloads) == expected
    assert framer.frame_many(iter(payloads)) == expected  # any iterable, not only sequences
    assert framer.frame_many(tuple(payloads)) == expected


@pytest.mark.parametrize("make", ALL_FRAMERS)
@pytest.mark.parametrize("payloads", PAYLOAD_LISTS)
def test_frame_pieces_join_to_frame(make, payloads):
    framer = make()
    for payload in payloads:
        for buffer_type in (bytes, bytearray, memoryview):
            pieces = framer.frame_pieces(buffer_type(payload))
            assert b"".join(pieces) == framer.frame(payload)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DelimiterFramer(b"\0", max_frame_size=8),
        lambda: DelimiterFramer(b"\0", max_frame_size=8, escape_check=True),
        lambda: LengthPrefixFramer(2, max_frame_size=8),
        lambda: LengthPrefixFramer(1, magic=b"M", max_frame_size=8),
    ],
)
def test_send_size_limit_is_the_same_for_every_encoder(make):
    framer = make()
    limit = framer.max_send_size()
    assert limit == 8
    assert framer.frame(b"x" * limit)
    assert b"".join(framer.frame_pieces(b"x" * limit)) == framer.frame(b"x" * limit)
    for encode in (framer.frame, framer.frame_pieces, lambda p: framer.frame_many([b"", p])):
        with pytest.raises(LocalProtocolError, match="max_frame_size"):
            encode(b"x" * (limit + 1))


def test_deferrable_only_when_frame_refuses_nothing_but_size():
    # A deferrable framer promises that frame() accepts every payload up to max_send_size().
    assert RawFramer().deferrable
    assert RawFramer(max_frame_size=4).frame(b"x" * 100) == b"x" * 100  # raw never refuses
    assert RawFramer(max_frame_size=4).max_send_size() >= 100
    assert LengthPrefixFramer().deferrable
    assert DelimiterFramer(b"\0").deferrable
    assert not DelimiterFramer(b"\0", escape_check=True).deferrable  # refuses content too


@pytest.mark.parametrize("make", ALL_FRAMERS)
def test_frames_are_bytes(make):
    framer = make()
    wire = framer.frame_many([b"abc", b"de"])
    frames, error = feed(framer, [wire[:2], wire[2:]])
    assert error is None
    assert frames
    assert all(type(f) is bytes for f in frames)


def test_builtins_satisfy_the_framer_protocol():
    for make in ALL_FRAMERS:
        assert isinstance(make(), Framer)
    assert DEFAULT_MAX_FRAME_SIZE == 16 * 1024 * 1024
    for framer in (RawFramer(), DelimiterFramer(), LengthPrefixFramer()):
        assert framer.max_frame_size == DEFAULT_MAX_FRAME_SIZE
    assert RawFramer().message_boundaries is False
    assert DelimiterFramer().message_boundaries is True
    assert LengthPrefixFramer().message_boundaries is True


# ---------------------------------------------------------------- public lookup


def test_public_framer_lookup():
    framer = polysock.framer("delimiter", delimiter=b"\0")
    assert isinstance(framer, DelimiterFramer)
    assert framer.frame(b"hello") == b"hello\x00"
    lp = polysock.framer("length-prefix", length_size=2, byteorder="little", magic=b"M")
    assert isinstance(lp, LengthPrefixFramer)
    assert lp.frame(b"hi") == b"M\x02\x00hi"
    assert isinstance(polysock.framer("raw"), RawFramer)
    # a fresh object per call: framers hold per-connection state
    assert polysock.framer("raw") is not polysock.framer("raw")


def test_unknown_framing_is_a_helpful_plugin_error():
    with pytest.raises(PluginError) as info:
        polysock.framer("no-such-framing")
    message = str(info.value)
    assert "'no-such-framing'" in message
    for name in ("raw", "delimiter", "length-prefix"):
        assert name in message  # lists what is installed
    assert "plugin" in message


def test_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="delimiter"):
        DelimiterFramer(b"")
    with pytest.raises(ValueError, match="at_eof"):
        DelimiterFramer(b"\n", at_eof="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length_size"):
        LengthPrefixFramer(3)
    with pytest.raises(ValueError, match="byteorder"):
        LengthPrefixFramer(4, "middle")  # type: ignore[arg-type]
    for make in (RawFramer, DelimiterFramer, LengthPrefixFramer):
        with pytest.raises(ValueError, match="max_frame_size"):
            make(max_frame_size=-1)


# ---------------------------------------------------------------- raw


def test_raw_each_chunk_is_a_message():
    framer = RawFramer()
    assert framer.receive_data(b"abc") == [b"abc"]
    assert framer.receive_data(b"\x00\n") == [b"\x00\n"]
    assert framer.receive_data(b"") == []


def test_raw_cuts_chunks_larger_than_max_frame_size():
    framer = RawFramer(max_frame_size=4)
    assert framer.receive_data(b"abcd") == [b"abcd"]
    assert framer.receive_data(b"0123456789") == [b"0123", b"4567", b"89"]
    assert framer.receive_data(b"abcdefgh") == [b"abcd", b"efgh"]


def test_raw_default_limit_cuts_at_16_mib():
    framer = RawFramer()
    frames = framer.receive_data(b"x" * (DEFAULT_MAX_FRAME_SIZE + 5))
    assert [len(f) for f in frames] == [DEFAULT_MAX_FRAME_SIZE, 5]


# ---------------------------------------------------------------- delimiter


def test_delimiter_several_frames_in_one_chunk_and_across_chunks():
    framer = DelimiterFramer(b"\r\n")
    assert framer.receive_data(b"a\r\nbb\r\nc") == [b"a", b"bb"]
    assert framer.buffered == 1
    assert framer.receive_data(b"c\r") == []
    assert framer.receive_data(b"\n\r\n") == [b"cc", b""]
    assert framer.buffered == 0
    assert framer.receive_data(b"") == []


def test_delimiter_strip_false_keeps_the_delimiter():
    framer = DelimiterFramer(b"\r\n", strip=False)
    assert framer.receive_data(b"a\r\nb") == [b"a\r\n"]
    assert framer.receive_data(b"\r\n") == [b"b\r\n"]


def test_delimiter_payload_containing_delimiter_arrives_as_several_frames():
    framer = DelimiterFramer(b"\0")
    assert framer.receive_data(framer.frame(b"a\0b")) == [b"a", b"b"]


def test_delimiter_escape_check_refuses_payloads_with_the_delimiter():
    framer = DelimiterFramer(b"\r\n", escape_check=True)
    assert framer.frame(b"a\rb\nc") == b"a\rb\nc\r\n"  # the parts alone are fine
    with pytest.raises(LocalProtocolError, match="delimiter"):
        framer.frame(b"a\r\nb")
    with pytest.raises(LocalProtocolError):
        framer.frame_many([b"ok", b"x\r\n"])
    # without escape_check it is allowed (and arrives split)
    assert DelimiterFramer(b"\r\n").frame(b"a\r\nb") == b"a\r\nb\r\n"


@pytest.mark.parametrize("delimiter", [b"\0", b"\r\n", b"<END>"])
def test_delimiter_limit_counts_payload_bytes(delimiter):
    framer = DelimiterFramer(delimiter, max_frame_size=5)
    assert framer.frame(b"12345") == b"12345" + delimiter
    frames, error = feed(framer, [b"12345" + delimiter + b"" + delimiter])
    assert error is None
    assert frames == [b"12345", b""]
    with pytest.raises(LocalProtocolError, match="max_frame_size"):
        framer.frame(b"123456")
    with pytest.raises(LocalProtocolError):
        framer.frame_many([b"1", b"123456"])


@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n", b"<END>"])
def test_delimiter_limit_enforced_as_soon_as_buffer_exceeds_it(delimiter):
    limit = 10
    framer = DelimiterFramer(delimiter, max_frame_size=limit)
    # Up to limit + len(delimiter) - 1 bytes without a delimiter can still end in a legal
    # frame (the last bytes may be the start of the delimiter): no error yet.
    room = limit + len(delimiter) - 1
    for _ in range(room):
        assert framer.receive_data(b"x") == []
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"x")
    assert info.value.limit == limit
    assert info.value.size == room + 1
    assert isinstance(info.value, RemoteProtocolError)
    assert "max_frame_size=10" in str(info.value)


def test_delimiter_limit_in_one_big_chunk_without_delimiter():
    framer = DelimiterFramer(b"\n", max_frame_size=10)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"x" * 11)
    assert (info.value.limit, info.value.size) == (10, 11)


def test_delimiter_too_large_frame_keeps_the_frames_before_it():
    framer = DelimiterFramer(b"\n", max_frame_size=4)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"ok\nfine\n" + b"x" * 5 + b"\nlater\n")
    assert info.value.frames == [b"ok", b"fine"]
    assert info.value.size == 5
    framer = DelimiterFramer(b"\n", max_frame_size=4, strip=False)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"ok\n" + b"x" * 6)  # oversized tail
    assert info.value.frames == [b"ok\n"]


def test_delimiter_default_limit_is_16_mib():
    framer = DelimiterFramer(b"\0")
    assert framer.max_frame_size == 16 * MiB
    framer.receive_data(b"x" * (16 * MiB))
    with pytest.raises(FrameTooLarge):
        framer.receive_data(b"x")


# ---------------------------------------------------------------- delimiter EOF policies


def test_delimiter_eof_error_policy():
    framer = DelimiterFramer(b"\n")
    assert framer.receive_data(b"a\nincomplete") == [b"a"]
    with pytest.raises(IncompleteFrame) as info:
        framer.receive_data(b"")
    assert info.value.buffered == len(b"incomplete")
    assert isinstance(info.value, RemoteProtocolError)


def test_delimiter_eof_deliver_policy():
    framer = DelimiterFramer(b"\n", at_eof="deliver")
    assert framer.receive_data(b"a\ntail") == [b"a"]
    assert framer.receive_data(b"") == [b"tail"]
    assert framer.receive_data(b"") == []  # EOF is reported once


def test_delimiter_eof_deliver_never_delivers_an_oversized_tail():
    # With a 2-byte delimiter the buffer may hold limit + 1 bytes (the last one could be the
    # first half of the delimiter); at EOF that tail is a frame larger than the limit.
    framer = DelimiterFramer(b"\r\n", at_eof="deliver", max_frame_size=3)
    assert framer.receive_data(b"abc\r") == []
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"")
    assert info.value.limit == 3
    framer = DelimiterFramer(b"\r\n", at_eof="deliver", max_frame_size=3)
    assert feed(framer, [b"abc"]) == ([b"abc"], None)  # exactly the limit is fine


def test_delimiter_eof_discard_policy():
    framer = DelimiterFramer(b"\n", at_eof="discard")
    assert framer.receive_data(b"a\ntail") == [b"a"]
    assert framer.receive_data(b"") == []


@pytest.mark.parametrize("policy", ["error", "deliver", "discard"])
def test_delimiter_clean_eof_is_silent_for_every_policy(policy):
    framer = DelimiterFramer(b"\n", at_eof=policy)
    assert feed(framer, [b"a\nb\n"]) == ([b"a", b"b"], None)
    assert feed(DelimiterFramer(b"\n", at_eof=policy), []) == ([], None)


# ---------------------------------------------------------------- length-prefix


def test_length_prefix_header_split_and_body_split():
    framer = LengthPrefixFramer(4)
    assert framer.receive_data(b"\x00\x00") == []
    assert framer.receive_data(b"\x00\x05he") == []
    assert framer.buffered == 6
    assert framer.receive_data(b"llo\x00\x00\x00\x01x\x00") == [b"hello", b"x"]
    assert framer.buffered == 1
    assert framer.receive_data(b"\x00\x00\x00") == [b""]
    assert framer.receive_data(b"") == []


@pytest.mark.parametrize(
    ("make", "header"),
    [
        (lambda: LengthPrefixFramer(4), b"\x01\x00\x00\x01"),  # 16 MiB + 1, default limit
        (lambda: LengthPrefixFramer(4, "little"), b"\x01\x00\x00\x01"),
        (lambda: LengthPrefixFramer(8), b"\xff" * 8),
        (lambda: LengthPrefixFramer(2, max_frame_size=100), b"\x00\x65"),
        (lambda: LengthPrefixFramer(1, max_frame_size=10), b"\x0b"),
        (lambda: LengthPrefixFramer(4, magic=b"PS"), b"PS\x7f\xff\xff\xff"),
    ],
)
def test_length_prefix_oversized_frame_rejected_on_the_header_alone(make, header):
    framer = make()
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(header)  # not one byte of the body has arrived
    assert info.value.limit == framer.max_frame_size
    assert info.value.size > framer.max_frame_size
    # The same when the header itself trickles in byte by byte: the error comes with its
    # last byte, and nothing is buffered while waiting for a body that will not be accepted.
    framer = make()
    for byte in header[:-1]:
        assert framer.receive_data(bytes([byte])) == []
    with pytest.raises(FrameTooLarge) as info2:
        framer.receive_data(header[-1:])
    assert info2.value.size == info.value.size


def test_length_prefix_declared_size_is_reported():
    framer = LengthPrefixFramer(4)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"\x01\x00\x00\x01")
    assert info.value.size == 16 * MiB + 1
    assert info.value.limit == 16 * MiB
    assert str(16 * MiB + 1) in str(info.value)


def test_length_prefix_limit_is_inclusive():
    framer = LengthPrefixFramer(2, max_frame_size=3)
    assert feed(framer, [b"\x00\x03abc"]) == ([b"abc"], None)
    framer = LengthPrefixFramer(2, max_frame_size=3)
    with pytest.raises(FrameTooLarge):
        framer.receive_data(b"\x00\x04")
    with pytest.raises(LocalProtocolError, match="max_frame_size"):
        framer.frame(b"abcd")
    with pytest.raises(LocalProtocolError):
        framer.frame_many([b"a", b"abcd"])


def test_length_prefix_limit_is_capped_by_the_length_field():
    assert LengthPrefixFramer(1).max_frame_size == 255
    assert LengthPrefixFramer(2).max_frame_size == 65535
    assert LengthPrefixFramer(4).max_frame_size == 16 * MiB
    assert LengthPrefixFramer(4, max_frame_size=1 << 40).max_frame_size == (1 << 32) - 1
    framer = LengthPrefixFramer(1)
    assert framer.frame(b"x" * 255)[:1] == b"\xff"
    with pytest.raises(LocalProtocolError):
        framer.frame(b"x" * 256)  # would not fit in the length byte


def test_length_prefix_frames_before_an_error_are_kept():
    framer = LengthPrefixFramer(2, max_frame_size=10)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"\x00\x01a\x00\x02bc\x00\x0b" + b"z" * 11)
    assert info.value.frames == [b"a", b"bc"]
    # the pending frame completed by this call is among them
    framer = LengthPrefixFramer(2, max_frame_size=10)
    assert framer.receive_data(b"\x00\x03ab") == []
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(b"c\x00\x01d\x00\xff")
    assert info.value.frames == [b"abc", b"d"]


def test_length_prefix_bad_magic():
    framer = LengthPrefixFramer(4, magic=b"PS")
    with pytest.raises(RemoteProtocolError, match="50 53") as info:
        framer.receive_data(b"PS\x00\x00\x00\x01aXX\x00\x00\x00\x01b")
    assert not isinstance(info.value, (FrameTooLarge, IncompleteFrame))
    assert info.value.frames == [b"a"]


def test_length_prefix_bad_magic_detected_from_its_first_wrong_byte():
    framer = LengthPrefixFramer(4, magic=b"MAGIC")
    assert framer.receive_data(b"MA") == []  # a correct prefix: wait for more
    with pytest.raises(RemoteProtocolError):
        framer.receive_data(b"X")  # "MAX" can no longer be "MAGIC"
    framer = LengthPrefixFramer(4, magic=b"MAGIC")
    with pytest.raises(RemoteProtocolError):
        framer.receive_data(b"G")


def test_length_prefix_eof_in_the_middle_of_a_frame():
    for partial in (b"\x00", b"\x00\x00\x00\x05", b"\x00\x00\x00\x05hel"):
        framer = LengthPrefixFramer(4)
        assert framer.receive_data(b"\x00\x00\x00\x01a" + partial) == [b"a"]
        with pytest.raises(IncompleteFrame) as info:
            framer.receive_data(b"")
        assert info.value.buffered == len(partial)
        assert info.value.frames == []


# ---------------------------------------------------------------- EOF and after EOF


@pytest.mark.parametrize("make", ALL_FRAMERS)
def test_data_after_eof_is_a_local_error(make):
    framer = make()
    assert framer.receive_data(b"") == []
    assert framer.receive_data(b"") == []  # a second EOF is harmless
    with pytest.raises(LocalProtocolError, match="end of stream"):
        framer.receive_data(b"more")


@pytest.mark.parametrize(
    "make", [lambda: DelimiterFramer(b"\n"), lambda: LengthPrefixFramer(2)]
)
def test_data_after_an_eof_error_is_still_a_local_error(make):
    framer = make()
    framer.receive_data(b"\x00")
    with pytest.raises(IncompleteFrame):
        framer.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        framer.receive_data(b"x")


# ---------------------------------------------------------------- errors


def test_error_hierarchy():
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(FrameTooLarge, RemoteProtocolError)
    assert issubclass(IncompleteFrame, RemoteProtocolError)
    assert not issubclass(FrameTooLarge, LocalProtocolError)
    assert issubclass(ProtocolError, polysock.PolysockError)
    error = FrameTooLarge(10, 20)
    assert (error.limit, error.size, error.frames) == (10, 20, [])
    assert LocalProtocolError("x").frames == []


def test_errors_pickle():
    for error in (FrameTooLarge(10, 20), IncompleteFrame(3), RemoteProtocolError("bad")):
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error)
        assert str(clone) == str(error)
    assert pickle.loads(pickle.dumps(FrameTooLarge(10, 20))).size == 20
    assert pickle.loads(pickle.dumps(IncompleteFrame(3))).buffered == 3


# ---------------------------------------------------------------- large frames

LARGE_CASES = [
    pytest.param(lambda n: LengthPrefixFramer(4, max_frame_size=n), id="length-prefix"),
    pytest.param(lambda n: LengthPrefixFramer(8, magic=b"PS", max_frame_size=n), id="lp-magic"),
    pytest.param(lambda n: DelimiterFramer(b"\0", max_frame_size=n), id="delimiter"),
    pytest.param(lambda n: DelimiterFramer(b"\r\n", max_frame_size=n), id="delimiter-crlf"),
]


@pytest.mark.parametrize("make", LARGE_CASES)
def test_20_mib_frame_in_64_kib_chunks(make):
    size = 20 * MiB
    payload = bytes(range(1, 256)) * (size // 255) + b"z" * (size % 255)  # no \0 or \r\n
    assert len(payload) == size
    framer = make(32 * MiB)
    wire = framer.frame(b"first") + framer.frame(payload) + framer.frame(b"last")
    frames, error = feed(framer, chunked(wire, 64 * KiB))
    assert error is None
    assert len(frames) == 3
    assert frames[0] == b"first"
    assert frames[1] == payload
    assert frames[2] == b"last"


@pytest.mark.slow
@pytest.mark.parametrize("make", LARGE_CASES)
def test_64_mib_frame_in_64_kib_chunks_is_not_quadratic(make):
    # Behaviour check, not a benchmark: a buffer that is copied on every chunk would move
    # ~32 GiB here and take minutes; linear growth takes a fraction of a second.
    size = 64 * MiB
    framer = make(size)
    wire = framer.frame(b"x" * size)
    chunks = list(chunked(wire, 64 * KiB))
    start = time.perf_counter()
    frames: list[bytes] = []
    for chunk in chunks:
        frames += framer.receive_data(chunk)
    elapsed = time.perf_counter() - start
    assert [len(f) for f in frames] == [size]
    assert elapsed < 5.0, f"{elapsed:.1f} s to decode 64 MiB: quadratic buffering?"


def test_raw_64_mib_in_64_kib_chunks():
    framer = RawFramer()
    chunk = b"r" * (64 * KiB)
    start = time.perf_counter()
    total = 0
    for _ in range(1024):
        frames = framer.receive_data(chunk)
        assert frames == [chunk]
        total += len(frames[0])
    assert total == 64 * MiB
    assert time.perf_counter() - start < 5.0
