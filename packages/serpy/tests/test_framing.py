"""The sans-IO framers and codecs: every split of a stream gives the same result (hypothesis),
garbage and oversize are reported without losing the frames around them."""

from __future__ import annotations

import base64
import itertools
import os
import warnings
from typing import Any

import polysock
import pytest
import serpy
import serpy2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polysock.framing import DelimiterFramer
from polysock_serpy import base
from polysock_serpy.codec import b85decode, b85encode, byte_sum
from polysock_serpy.framing import (
    OversizedBlock,
    Serpy2Framer,
    Serpy2Payload,
    SerpyBlockFramer,
    TypedFrame,
)

MAGIC = b"\xde\xca\xfe\xca\xfe"
F1 = bytes.fromhex("decafecafe2114020000050000006865" "6c6c6f")
F6 = bytes.fromhex("decafecafe114a04000014000000") + b"0x1.8000000000000p+0"


def feed(framer: Any, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        if chunk:  # b"" would mean end of stream
            out.extend(framer.receive_data(chunk))
    return out


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# ------------------------------------------------------------------ codec


@settings(deadline=None)
@given(st.binary(max_size=3000))
def test_b85_matches_the_standard_library(data: bytes) -> None:
    text = base64.b85encode(data)
    assert b85encode(data) == text
    assert b85encode(memoryview(bytearray(data))) == text
    assert b85decode(text) == data
    assert b85encode(data, b"\x04") == text + b"\x04"


@settings(deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_b85decode_errors_match_the_standard_library(text: bytes) -> None:
    try:
        expected: Any = base64.b85decode(text)
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            b85decode(text)
    else:
        assert b85decode(text) == expected


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 65535, 65536, 300_001, 1 << 20])
def test_byte_sum(size: int) -> None:
    data = os.urandom(size)
    expected = sum(data) & 0xFFFFFFFF
    assert byte_sum(data) == expected
    assert byte_sum(data, use_numpy=False) == expected
    assert byte_sum(memoryview(bytearray(data))) == expected


def test_byte_sum_wraps_at_2_32() -> None:
    data = b"\xff" * (17 * 1024 * 1024 + 3)
    assert byte_sum(data, use_numpy=False) == byte_sum(data) == sum(data) & 0xFFFFFFFF


# ------------------------------------------------------------------ protocol-1 block framer


def test_block_framer_is_the_core_delimiter_framer() -> None:
    framer = polysock.framer("serpy")
    assert isinstance(framer, SerpyBlockFramer)
    assert isinstance(framer, DelimiterFramer)
    assert framer.delimiter == b"\x1f"
    assert framer.frame(b"hello") == b"hello\x1f"
    assert framer.frame_many([b"a", b"", b"b"]) == b"a\x1f\x1fb\x1f"


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\x1f", b"")), max_size=12),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_block_framer_any_split(blocks: list[bytes], cuts: list[int]) -> None:
    limit = 25
    stream = b"".join(b + b"\x1f" for b in blocks)
    expected = [b if len(b) <= limit else ("over", len(b), b[-1]) for b in blocks]
    got = feed(SerpyBlockFramer(limit, oversize="skip"), splits(stream, cuts))
    norm = [("over", b.size, b.last) if type(b) is OversizedBlock else b for b in got]
    assert norm == expected


def test_block_framer_skips_oversize_without_buffering() -> None:
    framer = SerpyBlockFramer(10, oversize="skip")
    assert framer.receive_data(b"ok\x1f" + b"x" * 11) == [b"ok"]
    for _ in range(100):
        assert framer.receive_data(b"y" * 1000) == []
        assert framer.buffered == 0
    out = framer.receive_data(b"z\x04\x1fnext\x1f")
    assert type(out[0]) is OversizedBlock and out[0].size == 11 + 100_000 + 2
    assert out[0].last == 4
    assert out[1:] == [b"next"]


def test_block_framer_reports_an_oversized_block_cut_by_eof() -> None:
    framer = SerpyBlockFramer(4, oversize="skip")
    assert framer.receive_data(b"123456") == []
    out = framer.receive_data(b"")
    assert type(out[0]) is OversizedBlock and out[0].size == 6


# ------------------------------------------------------------------ protocol-2 framer


def test_serpy2_framer_is_registered_and_frames_raw_bytes() -> None:
    framer = polysock.framer("serpy2")
    assert isinstance(framer, Serpy2Framer)
    assert framer.frame(b"\x00\x01\x1f\xff") == bytes.fromhex(
        "decafecafe811f0100000400000000011fff"
    )
    assert framer.frame(TypedFrame(b"hello", 0x21)) == F1
    assert framer.frame(Serpy2Payload(b"hello", 0x21)) == F1
    assert b"".join(framer.frame_pieces(Serpy2Payload(b"hello", 0x21))) == F1
    assert framer.frame_many([b"", TypedFrame(b"hello", 0x21)]) == framer.frame(b"") + F1
    with pytest.raises(polysock.LocalProtocolError):
        Serpy2Framer(4).frame(b"hello")


def frames_of(values: list[tuple[int, bytes]]) -> bytes:
    framer = Serpy2Framer()
    return b"".join(framer.frame(TypedFrame(p, t) if t != 0x81 else p) for t, p in values)


payloads = st.lists(
    st.tuples(st.sampled_from([0x01, 0x11, 0x21, 0x81]), st.binary(max_size=300)), max_size=8
)
# Garbage that holds no magic (a magic inside garbage would be a frame header).
garbage = st.binary(min_size=1, max_size=40).filter(lambda g: MAGIC[:2] not in g)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(payloads, st.lists(st.integers(min_value=0, max_value=100_000), max_size=10))
def test_serpy2_framer_any_split(values: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = frames_of(values)
    framer = Serpy2Framer()
    got = feed(framer, splits(stream, cuts))
    assert [(getattr(f, "type_code", 0x81), bytes(f)) for f in got] == values
    assert all(type(f) is bytes for f in got if getattr(f, "type_code", 0x81) == 0x81)
    assert framer.errors == 0 and framer.buffered == 0


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), garbage), payloads), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=100_000), max_size=10),
)
def test_serpy2_framer_resynchronises_after_garbage(
    runs: list[tuple[bytes | None, list[tuple[int, bytes]]]], cuts: list[int]
) -> None:
    stream = b""
    expected: list[tuple[int, bytes]] = []
    runs_of_garbage = 0
    for junk, values in runs:
        if junk is not None:
            stream += junk
            runs_of_garbage += 1
        stream += frames_of(values)
        if values or junk is None:
            pass
        expected.extend(values)
    errors: list[str] = []
    framer = Serpy2Framer(on_error=errors.append)
    got = feed(framer, splits(stream, cuts))
    assert [(getattr(f, "type_code", 0x81), bytes(f)) for f in got] == expected
    # one error per run of garbage, however TCP split it (adjacent runs merge)
    assert 1 <= len(errors) <= runs_of_garbage if runs_of_garbage else not errors
    assert framer.errors == len(errors)


def test_serpy2_framer_checksum_type_and_size_errors_keep_the_stream() -> None:
    errors: list[str] = []
    framer = Serpy2Framer(100, on_error=errors.append, oversize="skip")
    bad_sum = F1[:6] + bytes.fromhex("15020000") + F1[10:]
    bad_type = F1[:5] + b"\x99" + F1[6:]
    big = MAGIC + b"\x81" + bytes(4) + (101).to_bytes(4, "little") + bytes(101)
    out = feed(framer, [bad_sum + F1 + bad_type + F1 + big[:50], big[50:] + F1])
    assert out == [b"hello"] * 3
    assert len(errors) == 3
    assert "checksum" in errors[0] and "unknown type" in errors[1] and "exceeds" in errors[2]


def test_serpy2_framer_zero_copy_path_and_deferred_frames() -> None:
    blob = os.urandom(300_000)
    stream = Serpy2Framer().frame(blob) + F1
    for defer in (False, True):
        framer = Serpy2Framer(defer_large=defer)
        out = framer.receive_data(stream[:1000])
        assert out == []
        while True:
            view = framer.get_buffer(-1)
            if view is None:
                break
            n = min(len(view), 50_000)
            pos = 14 + framer._have
            view[:n] = stream[pos : pos + n]  # as the transport's recv_into does
            out.extend(framer.buffer_updated(n))
        out.extend(framer.receive_data(stream[14 + len(blob) :]))
        payloads = [o.resolve() if hasattr(o, "resolve") else o for o in out]
        assert payloads == [blob, b"hello"]


def test_f6_split_at_every_position() -> None:
    for i in range(len(F6) + 1):
        framer = Serpy2Framer()
        got = feed(framer, [F6[:i], F6[i:]])
        assert [(f.type_code, bytes(f)) for f in got] == [(0x11, b"0x1.8000000000000p+0")]


# ------------------------------------------------------------------ protocol level, every split


class _Recorder:
    """Runs a connection's receive path on a byte stream without a socket (sans-IO)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.replies: list[bytes] = []
        self.link = base.Link(conn)
        self.link.proto = conn._new_proto()
        self.framer = conn._make_framer()
        conn._bind_framer(self.framer)
        conn._write_control = lambda link, block: self.replies.append(block)

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in filter(None, chunks):
            self.conn._on_frames(self.link, self.framer.receive_data(chunk))


def test_p6_stream_split_at_every_position() -> None:
    stream = b"\x01SETMODE1\x1fack me\x04\x1f"
    for i in range(len(stream) + 1):
        rec = _Recorder(serpy.Connection())
        rec.feed([stream[:i], stream[i:]])
        assert rec.replies == [b"\x01ACKMODCG", b"\x01ACKEOT!!"]
        assert rec.conn.getData(timeout=0) == b"ack me"
        assert rec.link.proto.in_mode == 1


def test_f6_through_a_serpy2_connection_split_at_every_position() -> None:
    for i in range(len(F6) + 1):
        rec = _Recorder(serpy2.Connection())
        rec.feed([F6[:i], F6[i:]])
        assert rec.conn.getData(timeout=0) == 1.5


def test_mode_1_message_larger_than_the_limit_is_dropped_and_acknowledged() -> None:
    rec = _Recorder(serpy.Connection(max_message_size=10))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec.feed([b"\x01SETMODE1\x1f" + b"a" * 6 + b"\x1f" + b"b" * 6 + b"\x04\x1fok\x04\x1f"])
    assert rec.replies == [b"\x01ACKMODCG", b"\x01ACKEOT!!", b"\x01ACKEOT!!"]
    assert rec.conn.getData(timeout=0) == b"ok"
    assert rec.conn.rx_errors == 1
    assert [w.category for w in caught] == [serpy.ProtocolWarning]
