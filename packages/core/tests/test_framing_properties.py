"""Property-based tests of the built-in framers (hypothesis).

For every framer configuration:

* round trip: any list of valid payloads survives frame_many -> split at every position, at
  random positions, byte by byte -> receive_data, and frame_many == join(frame);
* garbage: any byte stream only ever raises a RemoteProtocolError, and the outcome (the
  frames delivered, including ``exc.frames``, and the error type) is the same for every
  split of the stream: nothing that arrived intact is lost, and nothing depends on how TCP
  cut the stream.

The number of examples run per framer is printed at the end of the module (and stored as
the ``hypothesis_examples`` property of each test for junit reports).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polysock import (
    DelimiterFramer,
    LengthPrefixFramer,
    ProtocolError,
    RawFramer,
    RemoteProtocolError,
)
from polysock.framing import Framer

ROUNDTRIP_EXAMPLES = 150
GARBAGE_EXAMPLES = 150
RANDOM_EXAMPLES = 300
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}

EXAMPLES: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_example_counts(request):
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    lines = ["", "hypothesis examples run per framer configuration:"]
    lines += [f"  {key:<55} {n:>6}" for key, n in sorted(EXAMPLES.items())]
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n".join(lines))
    else:  # pragma: no cover - capture plugin disabled
        print("\n".join(lines))


@dataclass(frozen=True)
class Config:
    id: str
    make: Callable[[], Framer]
    tokens: tuple[bytes, ...] = ()  # interesting byte strings for the generators

    def __str__(self) -> str:
        return self.id


CONFIGS = [
    Config("raw", RawFramer),
    Config("raw max=7", lambda: RawFramer(max_frame_size=7)),
    Config("delimiter \\0", lambda: DelimiterFramer(b"\0"), (b"\0",)),
    Config(
        "delimiter \\x1f deliver",
        lambda: DelimiterFramer(b"\x1f", at_eof="deliver"),
        (b"\x1f",),
    ),
    Config(
        "delimiter \\r\\n strip=False",
        lambda: DelimiterFramer(b"\r\n", strip=False),
        (b"\r\n", b"\r", b"\n"),
    ),
    Config(
        "delimiter \\r\\n max=8",
        lambda: DelimiterFramer(b"\r\n", max_frame_size=8),
        (b"\r\n", b"\r", b"\n", b"x" * 8),
    ),
    Config(
        "delimiter \\r\\n deliver max=8",
        lambda: DelimiterFramer(b"\r\n", at_eof="deliver", max_frame_size=8),
        (b"\r\n", b"\r", b"\n", b"x" * 8),
    ),
    Config(
        "delimiter END discard max=12",
        lambda: DelimiterFramer(b"END", at_eof="discard", max_frame_size=12),
        (b"END", b"EN", b"E", b"ND"),
    ),
    Config(
        "delimiter aba (self-overlapping) max=6",
        lambda: DelimiterFramer(b"aba", strip=False, max_frame_size=6),
        (b"aba", b"ab", b"a", b"b", b"ba"),
    ),
    Config("length-prefix 4 big", LengthPrefixFramer, (b"\x00\x00\x00", b"\x00")),
    Config(
        "length-prefix 2 little max=20",
        lambda: LengthPrefixFramer(2, "little", max_frame_size=20),
        (b"\x00", b"\x14\x00", b"\x15\x00"),
    ),
    Config("length-prefix 1", lambda: LengthPrefixFramer(1), (b"\x00", b"\x01", b"\xff")),
    Config(
        "length-prefix 8 little max=30",
        lambda: LengthPrefixFramer(8, "little", max_frame_size=30),
        (b"\x00" * 7, b"\x1e", b"\x1f"),
    ),
    Config(
        "length-prefix 4 big magic=PS",
        lambda: LengthPrefixFramer(4, magic=b"PS"),
        (b"PS", b"P", b"S", b"PS\x00\x00\x00", b"\x00"),
    ),
    Config(
        "length-prefix 2 big magic=\\xca\\xfe max=16",
        lambda: LengthPrefixFramer(2, "big", magic=b"\xca\xfe", max_frame_size=16),
        (b"\xca\xfe", b"\xca", b"\xfe", b"\xca\xfe\x00", b"\x00\x10", b"\x00\x11"),
    ),
]


def feed(framer: Framer, chunks: Iterable[bytes]) -> tuple[list[bytes], ProtocolError | None]:
    """Feed the chunks then EOF; every frame delivered (incl. ``exc.frames``) and the error."""
    frames: list[bytes] = []
    try:
        for chunk in chunks:
            assert chunk, "an empty chunk would mean EOF"
            frames += framer.receive_data(chunk)
        frames += framer.receive_data(b"")
    except ProtocolError as exc:
        frames += exc.frames
        return frames, exc
    return frames, None


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points``, without empty chunks."""
    bounds = [0, *sorted({p for p in points if 0 < p < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def every_split(data: bytes) -> Iterable[list[bytes]]:
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def outcome(config: Config, chunks: list[bytes]) -> tuple[object, type | None]:
    framer = config.make()
    frames, error = feed(framer, chunks)
    assert error is None or isinstance(error, RemoteProtocolError), repr(error)
    assert all(type(f) is bytes for f in frames)
    limit = framer.max_frame_size
    if isinstance(framer, RawFramer):
        # No boundaries: the stream comes out unchanged, in pieces no larger than the limit.
        assert all(0 < len(f) <= limit for f in frames)
        return b"".join(frames), None
    if isinstance(framer, DelimiterFramer) and not framer.strip:
        assert all(len(f) - len(framer.delimiter) <= limit for f in frames)
    else:
        assert all(len(f) <= limit for f in frames)
    return frames, type(error) if error is not None else None


def byte_strings(config: Config, max_size: int) -> st.SearchStrategy[bytes]:
    """Bytes biased towards the configuration's delimiter/magic/header bytes."""
    alphabet = sorted({b for token in config.tokens for b in token} | {0x00, 0x61, 0x62, 0xFF})
    pieces = st.one_of(
        st.binary(max_size=8),
        st.sampled_from(config.tokens or (b"a",)),
        st.lists(st.sampled_from(alphabet), max_size=8).map(bytes),
    )
    return st.one_of(
        st.binary(max_size=max_size),
        st.lists(pieces, max_size=max_size // 4).map(b"".join),
    )


def valid_payloads(config: Config) -> st.SearchStrategy[list[bytes]]:
    """Lists of payloads the framer can carry; some lists are runs of equally sized
    payloads (the batch encoders and run decoders have fast paths for those)."""
    framer = config.make()
    limit = min(framer.max_frame_size, 60)

    def valid(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        if not isinstance(framer, DelimiterFramer):
            return strategy
        d = framer.delimiter
        # The first delimiter in payload + delimiter must be the one appended.
        return strategy.map(lambda b: b.replace(d, b"")).filter(
            lambda b: (b + d).find(d) == len(b)
        )

    mixed = st.lists(valid(byte_strings(config, limit).map(lambda b: b[:limit])), max_size=8)
    equal = st.integers(0, min(limit, 8)).flatmap(
        lambda n: st.lists(valid(st.binary(min_size=n, max_size=n)), min_size=8, max_size=12)
    )
    return st.one_of(mixed, equal)


def expected_frames(framer: Framer, payloads: list[bytes]) -> list[bytes]:
    if isinstance(framer, DelimiterFramer) and not framer.strip:
        return [p + framer.delimiter for p in payloads]
    return payloads


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_roundtrip_every_split(config, record_property):
    key = f"roundtrip   {config.id}"

    @settings(max_examples=ROUNDTRIP_EXAMPLES, **SETTINGS)
    @given(payloads=valid_payloads(config), data=st.data())
    def run(payloads, data):
        EXAMPLES[key] += 1
        encoder = config.make()
        wire = encoder.frame_many(payloads)
        assert wire == b"".join(encoder.frame(p) for p in payloads)
        assert wire == b"".join(b"".join(encoder.frame_pieces(p)) for p in payloads)
        splits = list(every_split(wire)) if wire else [[]]
        points = data.draw(st.lists(st.integers(0, len(wire)), max_size=12), label="cuts")
        splits.append(cut(wire, points))
        splits.append([wire] if wire else [])
        for chunks in splits:
            decoder = config.make()
            frames, error = feed(decoder, chunks)
            assert error is None, f"{error!r} for chunks {chunks!r}"
            if decoder.message_boundaries:
                assert frames == expected_frames(decoder, payloads), chunks
            else:
                assert b"".join(frames) == wire
                assert all(0 < len(f) <= decoder.max_frame_size for f in frames)

    run()
    record_property("hypothesis_examples", EXAMPLES[key])
    assert EXAMPLES[key] >= ROUNDTRIP_EXAMPLES // 2


# ---------------------------------------------------------------- garbage


def damage(data: bytes, position: int, value: int) -> bytes:
    if not data:
        return data
    i = position % len(data)
    return data[:i] + bytes([value]) + data[i + 1 :]


def garbage(config: Config) -> st.SearchStrategy[bytes]:
    """Streams mixing valid frames (some over the limit), tokens and random bytes."""
    framer = config.make()
    limit = framer.max_frame_size
    big = max(limit + 3, 0) if limit <= 64 else 0
    unlimited: Framer
    if isinstance(framer, LengthPrefixFramer):
        unlimited = LengthPrefixFramer(
            framer.length_size, framer.byteorder, magic=framer.magic
        )
    elif isinstance(framer, DelimiterFramer):
        unlimited = DelimiterFramer(framer.delimiter)
    else:
        unlimited = RawFramer()
    frame_piece = st.binary(max_size=max(big, 12)).map(unlimited.frame)
    # runs of equally sized frames, sometimes with one byte changed somewhere: a header, a
    # magic, a length, a payload byte
    run = st.integers(0, 8).flatmap(
        lambda n: st.lists(st.binary(min_size=n, max_size=n), min_size=8, max_size=12)
    ).map(unlimited.frame_many)
    damaged_run = st.builds(damage, run, st.integers(0, 1 << 16), st.integers(0, 255))
    piece = st.one_of(frame_piece, byte_strings(config, 16), run, damaged_run)
    return st.lists(piece, max_size=6).map(b"".join)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_garbage_outcome_never_depends_on_the_split(config, record_property):
    key = f"garbage     {config.id}"

    @settings(max_examples=GARBAGE_EXAMPLES, **SETTINGS)
    @given(stream=garbage(config), data=st.data())
    def run(stream, data):
        EXAMPLES[key] += 1
        reference = outcome(config, [stream] if stream else [])
        points = data.draw(st.lists(st.integers(0, len(stream)), max_size=16), label="cuts")
        assert outcome(config, cut(stream, points)) == reference
        for chunks in every_split(stream):
            assert outcome(config, chunks) == reference, chunks

    run()
    record_property("hypothesis_examples", EXAMPLES[key])
    assert EXAMPLES[key] >= GARBAGE_EXAMPLES // 2


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_random_bytes_raise_only_remote_protocol_errors(config, record_property):
    key = f"random      {config.id}"

    @settings(max_examples=RANDOM_EXAMPLES, **SETTINGS)
    @given(chunks=st.lists(st.binary(min_size=1, max_size=64), max_size=8))
    def run(chunks):
        EXAMPLES[key] += 1
        framer = config.make()
        try:
            for chunk in chunks:
                framer.receive_data(chunk)
            framer.receive_data(b"")
        except RemoteProtocolError:
            pass  # declared: anything else (incl. LocalProtocolError) fails the test

    run()
    record_property("hypothesis_examples", EXAMPLES[key])
    assert EXAMPLES[key] >= RANDOM_EXAMPLES // 2
