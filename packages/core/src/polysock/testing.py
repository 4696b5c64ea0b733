"""The plugin author's kit: check any framer against the framer contract, and run real
connections over loopback.

* :class:`FramerContract` checks a framer factory against the contract stated in
  :mod:`polysock.framing`: round trip (one by one and in a batch), every split point of a
  multi-frame stream, byte-at-a-time feeding, garbage input (hypothesis), ``max_frame_size`` on
  send and on receive (checked before the body arrives), and end of stream. A broken rule is a
  :class:`ContractViolation` that names the rule and shows the bytes that break it.
* :class:`FramerContractTests` is the same as a pytest test class: subclass it in a test module
  (the subclass name must start with ``Test``), set ``framer_factory``, done.
* :func:`loopback_pair` (async) and :func:`loopback_pair_sync` (threads, on the shared
  :mod:`polysock.runtime` loop) give two real :class:`~polysock.Connection` ends over
  127.0.0.1 for end-to-end tests, every wait bounded.

Only the checks that use hypothesis import it, on first use, so the loopback helpers and the
deterministic checks work without it (``pip install polysock[test]`` brings it). The module is
also a pytest plugin (``-p polysock.testing``): it adds ``--polysock-examples N`` and prints how
many hypothesis examples each contract test ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from .errors import (
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from .framing import Buffer, Framer
from .transport import Connection, Limits, connect, serve

if TYPE_CHECKING:
    import hypothesis
    import pytest
    from hypothesis.strategies import DataObject, SearchStrategy

    from .runtime import LoopThread

__all__ = [
    "CHECKS",
    "ContractViolation",
    "FramerContract",
    "FramerContractTests",
    "LoopbackPair",
    "SyncConnection",
    "SyncLoopbackPair",
    "check_framer",
    "delimiter_safe",
    "feed",
    "loopback_pair",
    "loopback_pair_sync",
]

#: the checks of :class:`FramerContract`, in the order :meth:`FramerContract.check_all` runs
#: them (each is a method ``check_<name>`` and a test ``test_<name>`` of the test class)
CHECKS = (
    "shape",
    "roundtrip",
    "batch",
    "every_split",
    "byte_at_a_time",
    "garbage",
    "max_size_send",
    "max_size_receive",
    "eof",
)

EofPolicy = Literal["error", "deliver", "discard"]
#: environment override of every contract's hypothesis example count (like --polysock-examples)
EXAMPLES_ENV = "POLYSOCK_CONTRACT_EXAMPLES"

DEFAULT_PAYLOADS: tuple[bytes, ...] = (
    b"",
    b"a",
    b"hello world",
    b"\x00\x01\x02\xfe\xff",
    "gr\u00fc\u00df dich, \u4e16\u754c".encode(),
    b"0:,",
    b"\r\n\n\x00",
    bytes(range(256)),
    b"x" * 1000,
)

# Streams that have broken real parsers: signs, exponents, spaces, huge numbers, NULs.
_GARBAGE_CORPUS: tuple[bytes, ...] = (
    b"\x00",
    b"\xff" * 16,
    b"\x00" * 64,
    b":",
    b",",
    b"-1:a,",
    b"+5:hello,",
    b" 3:abc,",
    b"1e3:",
    b"0x10:",
    b"99999999999999999999999999999999:",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"garbage\r\n\x00:,\n",
    b"\x80\x81\xfe\xff\xc3(",
    bytes(range(256)),
)


class ContractViolation(AssertionError):
    """A framer breaks a rule of the framer contract.

    An ``AssertionError``, so pytest shows it as a test failure and hypothesis shrinks the
    input that caused it. ``rule`` is the check that failed, ``evidence`` the bytes involved.
    """

    def __init__(self, framer: str, rule: str, problem: str, **evidence: object) -> None:
        self.framer = framer
        self.rule = rule
        self.problem = problem
        self.evidence = evidence
        lines = [f"{framer} breaks the framer contract [{rule}]: {problem}"]
        lines += [f"    {key.replace('_', ' ')}: {_short(value)}"
                  for key, value in evidence.items()]
        super().__init__("\n".join(lines))


def _short(value: object, limit: int = 240) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f", {len(value)} bytes" if isinstance(value, (bytes, bytearray)) else ""
    return f"{text[: limit - 40]} ... {text[-24:]} ({len(text)} chars{size})"


def delimiter_safe(delimiter: bytes) -> Callable[[bytes], bool]:
    """The payloads a delimiter framing can carry: ``payload + delimiter`` must not contain the
    delimiter before its end (for ``b"aba"`` that also rules out a payload ending in ``b"ab"``).
    """
    if not delimiter:
        raise ValueError("the delimiter must be at least one byte")
    d = bytes(delimiter)

    def valid(payload: bytes) -> bool:
        return (payload + d).find(d) == len(payload)

    return valid


def feed(
    framer: Framer, chunks: Iterable[bytes], *, eof: bool = True
) -> tuple[list[bytes], Exception | None]:
    """Feed ``chunks`` (then end of stream) to ``framer``.

    Returns every frame delivered, including the ``frames`` of a protocol error, and the error
    raised (or ``None``): the way the transport sees the stream, for a plugin's own tests.
    """
    outcome = _Run(framer, "feed").run(chunks, eof=eof)
    return outcome.frames, outcome.error


# -------------------------------------------------------------------- running a framer


@dataclass
class _Outcome:
    frames: list[bytes]
    error: Exception | None
    #: bytes fed up to and including the call that raised (the whole stream otherwise)
    error_at: int
    error_at_eof: bool

    def key(self, boundaries: bool) -> tuple[object, ...]:
        """What must not depend on the split: the frames (the byte stream for a framing
        without message boundaries) and the type of error."""
        got: object = tuple(self.frames) if boundaries else b"".join(self.frames)
        return got, type(self.error) if self.error is not None else None

    def describe(self) -> str:
        if self.error is None:
            return f"frames {_short(self.frames, 160)}"
        return f"frames {_short(self.frames, 160)} then {type(self.error).__name__}"


class _Run:
    """Feeds one framer and checks the type of everything it returns."""

    def __init__(self, framer: Framer, name: str, rule: str = "shape") -> None:
        self.framer = framer
        self.name = name
        self.rule = rule

    def receive(self, data: bytes) -> list[bytes]:
        """One ``receive_data`` call; its exceptions propagate, its result is checked."""
        return self._checked(self.framer.receive_data(data), data)

    def run(self, chunks: Iterable[bytes], *, eof: bool = True) -> _Outcome:
        frames: list[bytes] = []
        fed = 0
        for chunk in chunks:
            if not chunk:
                raise ValueError("an empty chunk means end of stream; pass eof=True instead")
            fed += len(chunk)
            try:
                out = self.framer.receive_data(chunk)
            except Exception as exc:
                return self._failed(frames, exc, fed, at_eof=False)
            frames += self._checked(out, chunk)
        if eof:
            try:
                out = self.framer.receive_data(b"")
            except Exception as exc:
                return self._failed(frames, exc, fed, at_eof=True)
            frames += self._checked(out, b"")
        return _Outcome(frames, None, fed, False)

    def _checked(self, out: object, data: bytes) -> list[bytes]:
        if not isinstance(out, list):
            raise ContractViolation(
                self.name,
                self.rule,
                f"receive_data() must return a list of frames, not {type(out).__name__}",
                data=data,
            )
        for frame in out:
            if type(frame) is not bytes:
                raise ContractViolation(
                    self.name,
                    self.rule,
                    f"receive_data() returned a frame of type {type(frame).__name__}; frames "
                    "must be bytes (immutable: a bytearray or memoryview into the framer's "
                    "buffer would change under the application's feet)",
                    data=data,
                    frame=frame,
                )
        return out

    def _failed(self, frames: list[bytes], exc: Exception, fed: int, *, at_eof: bool) -> _Outcome:
        if isinstance(exc, ProtocolError):
            frames = frames + self._checked(list(exc.frames), b"")
        return _Outcome(frames, exc, fed, at_eof)


def _cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points``, without empty chunks (an empty chunk would mean EOF)."""
    bounds = [0, *sorted({p for p in points if 0 < p < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def _damage(data: bytes, position: int, value: int) -> bytes:
    if not data:
        return bytes([value])
    i = position % len(data)
    return data[:i] + bytes([value]) + data[i + 1 :]


def _describe_factory(factory: Callable[..., object]) -> str | None:
    if isinstance(factory, functools.partial):
        inner = _describe_factory(factory.func) or "partial"
        args = [repr(a) for a in factory.args]
        args += [f"{k}={v!r}" for k, v in factory.keywords.items()]
        return f"{inner}({', '.join(args)})"
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    if not name or "<lambda>" in name or "<locals>" in name:
        return None
    return str(name)


# -------------------------------------------------------------------- the contract


class FramerContract:
    """The framer contract, applied to one framer factory.

    ``factory`` is called with no argument for a framer with its default options, and with
    ``max_frame_size=limit`` for the size checks (``functools.partial(MyFramer, opt=...)`` or
    a class works as is; a lambda must accept ``**options``). Every call must return a fresh
    framer.

    What the framing can carry:

    ``payloads``       sample payloads the checks use besides generated ones (default: a mix
                       of empty, ASCII, binary, UTF-8 and a 1000-byte payload, keeping those
                       the framing can carry); each must be valid
    ``allow_empty``    whether ``b""`` is a valid payload
    ``valid_payload``  a predicate for framings that cannot carry every byte string, e.g.
                       :func:`delimiter_safe` for a delimiter framing
    ``expect``         how a sent payload arrives, when not unchanged (a delimiter framing
                       that keeps the delimiter: ``lambda p: p + b"\\n"``)
    ``at_eof``         what the end of the stream in the middle of a frame does: ``"error"``
                       (:class:`~polysock.errors.IncompleteFrame`, the default), ``"deliver"``
                       (the partial frame's bytes arrive as a last frame), ``"discard"``, or a
                       function from the partial frame's bytes to the frames expected at EOF

    How to check:

    ``limit``          the ``max_frame_size`` given to the framers of the size checks
    ``receive_slack``  how many bytes beyond ``limit`` plus the framing's own overhead an
                       oversized frame may have delivered before the framer refuses it
                       (0: as soon as the size is known)
    ``tokens``         byte strings worth mixing into garbage (the checks already use pieces
                       of real frames: headers, delimiters, magic)
    ``examples``       hypothesis examples per property check (``--polysock-examples`` or
                       ``POLYSOCK_CONTRACT_EXAMPLES`` override it in the test class)
    ``settings``       extra ``hypothesis.settings`` keywords (``derandomize=True``...)
    ``name``           how reports name the framer (default: from the factory)

    After a check, ``examples_run[check]`` holds how many hypothesis examples it ran.
    """

    def __init__(
        self,
        factory: Callable[..., Framer],
        *,
        payloads: Iterable[bytes] | None = None,
        allow_empty: bool = True,
        valid_payload: Callable[[bytes], bool] | None = None,
        expect: Callable[[bytes], bytes] | None = None,
        at_eof: EofPolicy | Callable[[bytes], list[bytes]] = "error",
        limit: int = 40,
        receive_slack: int = 0,
        tokens: Iterable[bytes] = (),
        examples: int = 100,
        settings: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if examples < 1:
            raise ValueError(f"examples must be at least 1, not {examples}")
        if receive_slack < 0:
            raise ValueError(f"receive_slack must be >= 0, not {receive_slack}")
        if not callable(at_eof) and at_eof not in ("error", "deliver", "discard"):
            raise ValueError(
                f"at_eof must be 'error', 'deliver', 'discard' or a function, not {at_eof!r}"
            )
        self.factory = factory
        self.allow_empty = allow_empty
        self.valid_payload = valid_payload
        self.expect = expect
        self.at_eof = at_eof
        self.limit = limit
        self.receive_slack = receive_slack
        self.tokens = tuple(bytes(t) for t in tokens if t)
        self.examples = examples
        self.settings = dict(settings or {})
        self._name = name
        self._given_payloads = None if payloads is None else tuple(bytes(p) for p in payloads)
        if self._given_payloads is not None:
            for p in self._given_payloads:
                if not self.is_valid(p):
                    raise ValueError(
                        f"sample payload {_short(p)} is not valid for this framing "
                        "(see allow_empty and valid_payload)"
                    )
            if not any(self._given_payloads):
                raise ValueError("the contract needs at least one non-empty sample payload")
        self._payloads: tuple[bytes, ...] | None = self._given_payloads
        self.examples_run: Counter[str] = Counter()
        self._boundaries: bool | None = None

    def __repr__(self) -> str:
        return f"<FramerContract {self.name}>"

    def replace(self, **changes: Any) -> FramerContract:
        """A copy with some options changed (e.g. ``examples``)."""
        options: dict[str, Any] = {
            "payloads": self._given_payloads,
            "allow_empty": self.allow_empty,
            "valid_payload": self.valid_payload,
            "expect": self.expect,
            "at_eof": self.at_eof,
            "limit": self.limit,
            "receive_slack": self.receive_slack,
            "tokens": self.tokens,
            "examples": self.examples,
            "settings": self.settings,
            "name": self._name,
        }
        factory = changes.pop("factory", self.factory)
        options.update(changes)
        return FramerContract(factory, **options)

    # ---------------------------------------------------------------- helpers

    @property
    def name(self) -> str:
        if self._name is None:
            described = _describe_factory(self.factory)
            if described is None:
                try:
                    described = type(self.factory()).__name__
                except Exception:
                    described = repr(self.factory)
            self._name = described
        return self._name

    def is_valid(self, payload: bytes) -> bool:
        """Whether the framing can carry ``payload`` (``allow_empty`` and ``valid_payload``)."""
        if not payload and not self.allow_empty:
            return False
        return self.valid_payload is None or bool(self.valid_payload(payload))

    def expected(self, payload: bytes) -> bytes:
        return payload if self.expect is None else self.expect(payload)

    def _fail(self, rule: str, problem: str, **evidence: object) -> ContractViolation:
        return ContractViolation(self.name, rule, problem, **evidence)

    def make(self, rule: str = "shape", max_frame_size: int | None = None) -> Framer:
        """A fresh framer (with ``max_frame_size`` when given)."""
        try:
            framer = (
                self.factory() if max_frame_size is None
                else self.factory(max_frame_size=max_frame_size)
            )
        except Exception as exc:
            call = "factory()" if max_frame_size is None else (
                f"factory(max_frame_size={max_frame_size})"
            )
            raise self._fail(
                rule,
                f"{call} raised {exc!r}; the factory must build a framer for default options "
                "and accept max_frame_size as a keyword (the user's framing_options)",
            ) from exc
        return framer

    @property
    def payloads(self) -> tuple[bytes, ...]:
        """The sample payloads: the ones given, or the defaults the framing can carry (valid,
        and within the default framer's max_frame_size)."""
        if self._payloads is None:
            largest = self.make().max_frame_size
            chosen = tuple(
                p for p in DEFAULT_PAYLOADS if self.is_valid(p) and len(p) <= largest
            )
            if not any(chosen):
                raise ValueError(
                    "none of the default sample payloads suits this framing: give the "
                    "contract payloads="
                )
            self._payloads = chosen
        return self._payloads

    @property
    def boundaries(self) -> bool:
        """The framing's ``message_boundaries``."""
        if self._boundaries is None:
            self._boundaries = bool(getattr(self.make(), "message_boundaries", True))
        return self._boundaries

    def _run(
        self, framer: Framer, rule: str, chunks: Iterable[bytes], *, eof: bool = True
    ) -> _Outcome:
        return _Run(framer, self.name, rule).run(chunks, eof=eof)

    def _frame(self, framer: Framer, payload: Buffer, rule: str) -> bytes:
        try:
            wire = framer.frame(payload)
        except Exception as exc:
            raise self._fail(
                rule, f"frame() raised {exc!r} for a payload the framing can carry",
                payload=bytes(payload),
            ) from exc
        if not isinstance(wire, bytes):
            raise self._fail(
                rule, f"frame() must return bytes, not {type(wire).__name__}",
                payload=bytes(payload),
            )
        return wire

    def _frame_many(self, framer: Framer, payloads: Iterable[Buffer], rule: str) -> bytes:
        items = list(payloads)
        try:
            wire = framer.frame_many(items)
        except Exception as exc:
            raise self._fail(
                rule, f"frame_many() raised {exc!r} for payloads the framing can carry",
                payloads=[bytes(p) for p in items],
            ) from exc
        if not isinstance(wire, bytes):
            raise self._fail(rule, f"frame_many() must return bytes, not {type(wire).__name__}")
        return wire

    def _decode_clean(
        self, rule: str, chunks: list[bytes], want: list[bytes], why: str,
        *, limit: int | None = None,
    ) -> _Outcome:
        """A fresh framer (``max_frame_size=limit`` when given) must decode ``chunks``, a
        stream of valid frames, to ``want`` without an error (a stream framing: to the same
        bytes)."""
        outcome = self._run(self.make(rule, limit), rule, chunks)
        stream = b"".join(chunks)
        if outcome.error is not None:
            raise self._fail(
                rule,
                f"a stream of valid frames raised {outcome.error!r} ({why})",
                stream=stream, chunks=chunks, payloads_expected=want,
            ) from outcome.error
        if self.boundaries:
            if outcome.frames != want:
                raise self._fail(
                    rule,
                    f"the frames received differ from the frames sent ({why})",
                    stream=stream, chunks=chunks, expected=want, received=outcome.frames,
                )
        elif b"".join(outcome.frames) != stream:
            raise self._fail(
                rule,
                f"the bytes received differ from the bytes sent ({why})",
                stream=stream, chunks=chunks, received=b"".join(outcome.frames),
            )
        return outcome

    def _filler(self, sizes: Iterable[int]) -> bytes:
        """One byte whose repetition is a valid payload of every size in ``sizes``."""
        wanted = list(sizes)
        candidates = [ord("x"), *(b for p in self.payloads for b in p), *range(256)]
        for value in dict.fromkeys(candidates):
            byte = bytes([value])
            if all(self.is_valid(byte * n) for n in wanted):
                return byte
        raise ValueError(
            "the size checks need a byte whose repetition is a valid payload; give the "
            "contract a valid_payload that accepts one"
        )

    def _settings(self) -> hypothesis.settings:
        """hypothesis settings of the property checks (hypothesis is imported here, on first
        use: the deterministic checks and the loopback helpers do not need it)."""
        from hypothesis import HealthCheck, settings

        options: dict[str, Any] = {
            "max_examples": self.examples,
            "deadline": None,
            # one violation, the simplest: a plugin author fixes one bug at a time
            "report_multiple_bugs": False,
            "suppress_health_check": [
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        }
        options.update(self.settings)
        return settings(**options)

    def _alphabet(self) -> list[int]:
        values = {0x00, 0x30, 0x3A, 0x61, 0xFF}
        for p in (*self.payloads, *self.tokens):
            values.update(p)
        return sorted(values)

    def _payload_strategy(self, max_size: int) -> SearchStrategy[bytes]:
        from hypothesis import strategies as st

        samples = [p for p in self.payloads if len(p) <= max_size] or [self.payloads[0]]
        alphabet = self._alphabet()
        strategy = st.one_of(
            st.binary(max_size=max_size),
            st.lists(st.sampled_from(alphabet), max_size=max_size).map(bytes),
            st.sampled_from(samples),
        )
        return strategy.filter(self.is_valid)

    def _payload_lists(self, max_size: int) -> SearchStrategy[list[bytes]]:
        """Lists of valid payloads; some are runs of equally sized ones (batch encoders and
        run decoders often have a fast path for those)."""
        from hypothesis import strategies as st

        alphabet = self._alphabet()

        def run_of(n: int) -> SearchStrategy[list[bytes]]:
            one = st.one_of(
                st.binary(min_size=n, max_size=n),
                st.lists(st.sampled_from(alphabet), min_size=n, max_size=n).map(bytes),
            ).filter(self.is_valid)
            return st.lists(one, min_size=8, max_size=12)

        mixed = st.lists(self._payload_strategy(max_size), max_size=8)
        equal = st.integers(0 if self.allow_empty else 1, min(max_size, 8)).flatmap(run_of)
        return st.one_of(mixed, equal)

    def _count(self, check: str) -> None:
        self.examples_run[check] += 1

    # ---------------------------------------------------------------- the checks

    def check_all(self) -> dict[str, int]:
        """Run every check (first broken rule raises); returns the examples run per check."""
        for check in CHECKS:
            getattr(self, f"check_{check}")()
        return dict(self.examples_run)

    def check_shape(self) -> None:
        """The factory builds fresh objects with the Framer attributes and honours
        ``max_frame_size``."""
        rule = "shape"
        first, second = self.make(rule), self.make(rule)
        missing = [
            attr
            for attr in ("receive_data", "frame", "frame_many", "max_frame_size",
                         "message_boundaries")
            if not hasattr(first, attr)
        ]
        if missing:
            raise self._fail(
                rule,
                f"the framer has no {', '.join(missing)} (see polysock.framing.Framer; "
                "subclassing polysock.framing.BaseFramer provides frame_many and "
                "message_boundaries)",
            )
        if first is second:
            raise self._fail(
                rule,
                "factory() returned the same object twice: every connection needs a fresh "
                "framer, its buffer belongs to one stream",
            )
        size = first.max_frame_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self._fail(rule, f"max_frame_size must be an int >= 0, not {size!r}")
        if not isinstance(first.message_boundaries, bool):
            raise self._fail(
                rule, f"message_boundaries must be a bool, not {first.message_boundaries!r}"
            )
        limited = self.make(rule, self.limit)
        if limited.max_frame_size != self.limit:
            raise self._fail(
                rule,
                f"factory(max_frame_size={self.limit}) built a framer whose max_frame_size is "
                f"{limited.max_frame_size!r}",
            )

    def check_roundtrip(self) -> None:
        """Each sample payload, framed alone, comes back from the call that completes it;
        frame() takes bytes, bytearray and memoryview alike. Then lists of generated
        payloads, in one piece and cut at random points."""
        rule = "roundtrip"
        for payload in self.payloads:
            encoder = self.make(rule)
            wire = self._frame(encoder, payload, rule)
            for other in (bytearray(payload), memoryview(payload)):
                again = self._frame(encoder, other, rule)
                if again != wire:
                    raise self._fail(
                        rule,
                        f"frame({type(other).__name__}) differs from frame(bytes) for the "
                        "same payload",
                        payload=payload, from_bytes=wire, from_other=again,
                    )
            if not wire:
                if self.boundaries:
                    raise self._fail(
                        rule, "frame() returned no bytes: the peer could never see this frame",
                        payload=payload,
                    )
                continue
            run = _Run(self.make(rule), self.name, rule)
            try:
                out = run.receive(wire)
            except ContractViolation:
                raise
            except Exception as exc:
                raise self._fail(
                    rule, f"receive_data(frame(payload)) raised {exc!r}", payload=payload,
                    wire=wire,
                ) from exc
            if self.boundaries and out != [self.expected(payload)]:
                raise self._fail(
                    rule,
                    "receive_data(frame(payload)) must return the frame at once (the call "
                    "that completes a frame returns it: request/response traffic waits for it)",
                    payload=payload, wire=wire, expected=[self.expected(payload)], received=out,
                )
            if not self.boundaries and b"".join(out) != wire:
                raise self._fail(
                    rule, "the bytes received differ from the bytes sent", wire=wire,
                    received=out,
                )
            end = self._run(run.framer, rule, [], eof=True)
            if end.error is not None or end.frames:
                raise self._fail(
                    rule,
                    f"end of stream after a complete frame gave {end.describe()}; it must give "
                    "nothing",
                    payload=payload, wire=wire,
                ) from end.error

        from hypothesis import given
        from hypothesis import strategies as st

        @self._settings()
        @given(payloads=self._payload_lists(64), data=st.data())
        def roundtrip(payloads: list[bytes], data: DataObject) -> None:
            self._count("roundtrip")
            encoder = self.make(rule)
            stream = b"".join(self._frame(encoder, p, rule) for p in payloads)
            want = [self.expected(p) for p in payloads]
            whole = [stream] if stream else []
            self._decode_clean(rule, whole, want, "in one piece")
            points = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
            chunks = _cut(stream, points)
            self._decode_clean(rule, chunks, want, "cut at random points")

        roundtrip()

    def check_batch(self) -> None:
        """``frame_many`` equals the concatenation of ``frame`` (lists, iterators, runs of
        equal sizes, nothing) and decodes to the same payloads; ``frame_pieces`` of a
        deferrable framer joins to ``frame``."""
        rule = "batch"
        encoder = self.make(rule)
        samples = list(self.payloads)
        if self._frame_many(encoder, [], rule) != b"":
            raise self._fail(rule, "frame_many([]) must return b''")
        batches: list[list[bytes]] = [samples, [samples[-1]] * 10, list(reversed(samples))]
        for payload in samples:
            batches.append([payload] * 9)
        for sent in batches:
            joined = b"".join(self._frame(encoder, p, rule) for p in sent)
            for label, items in (("a list", sent), ("an iterator", iter(sent))):
                many = self._frame_many(encoder, items, rule)
                if many != joined:
                    raise self._fail(
                        rule,
                        f"frame_many() of {label} differs from the frames one by one",
                        payloads=sent, frame_many=many, joined_frames=joined,
                    )
            want = [self.expected(p) for p in sent]
            self._decode_clean(rule, [joined] if joined else [], want, "a batch from frame_many()")
        self._check_pieces(rule, encoder, samples)

        from hypothesis import given

        @self._settings()
        @given(payloads=self._payload_lists(64))
        def random_batches(payloads: list[bytes]) -> None:
            self._count("batch")
            framer = self.make(rule)
            joined = b"".join(self._frame(framer, p, rule) for p in payloads)
            many = self._frame_many(framer, payloads, rule)
            if many != joined:
                raise self._fail(
                    rule, "frame_many() differs from the frames one by one",
                    payloads=payloads, frame_many=many, joined_frames=joined,
                )
            self._check_pieces(rule, framer, payloads)
            self._decode_clean(rule, [many] if many else [],
                               [self.expected(p) for p in payloads], "a batch from frame_many()")

        random_batches()

    def _check_pieces(self, rule: str, framer: Framer, payloads: Iterable[bytes]) -> None:
        if not getattr(framer, "deferrable", False):
            return
        pieces_of = getattr(framer, "frame_pieces", None)
        max_send = getattr(framer, "max_send_size", None)
        if not callable(pieces_of) or not callable(max_send):
            raise self._fail(
                rule,
                "deferrable is true but frame_pieces() or max_send_size() is missing (the "
                "transport calls them; see polysock.framing.DeferrableFramer)",
            )
        for payload in payloads:
            joined = b"".join(bytes(piece) for piece in pieces_of(payload))
            if joined != self._frame(framer, payload, rule):
                raise self._fail(
                    rule,
                    "the pieces of frame_pieces() do not join to frame(): the transport sends "
                    "large payloads as pieces",
                    payload=payload, pieces=joined,
                )

    def check_every_split(self) -> None:
        """A stream of several frames gives the same frames however it is cut in two (every
        split point), then for generated streams cut at random points."""
        rule = "every split"
        encoder = self.make(rule)
        samples = [p for p in self.payloads if len(p) <= 256]
        stream = b"".join(self._frame(encoder, p, rule) for p in samples)
        want = [self.expected(p) for p in samples]
        self._every_split(rule, stream, want)

        from hypothesis import given
        from hypothesis import strategies as st

        @self._settings()
        @given(payloads=self._payload_lists(24), data=st.data())
        def every_split(payloads: list[bytes], data: DataObject) -> None:
            self._count("every_split")
            framer = self.make(rule)
            wire = b"".join(self._frame(framer, p, rule) for p in payloads)
            expected = [self.expected(p) for p in payloads]
            if len(wire) <= 400:
                self._every_split(rule, wire, expected)
            points = data.draw(st.lists(st.integers(0, len(wire)), max_size=16), label="cuts")
            chunks = _cut(wire, points)
            self._decode_clean(rule, chunks, expected, "cut at random points")

        every_split()

    def _every_split(self, rule: str, stream: bytes, want: list[bytes]) -> None:
        for i in range(1, len(stream)):
            chunks = [stream[:i], stream[i:]]
            self._decode_clean(
                rule, chunks, want,
                f"the stream cut in two at byte {i} of {len(stream)}: the frames must not "
                "depend on how TCP split the stream",
            )

    def check_byte_at_a_time(self) -> None:
        """The sample stream fed one byte per call: every frame is returned by the call that
        brings its last byte, not later."""
        rule = "byte at a time"
        encoder = self.make(rule)
        wires = [self._frame(encoder, p, rule) for p in self.payloads]
        stream = b"".join(wires)
        ends = list(itertools.accumulate(len(w) for w in wires))
        want = [self.expected(p) for p in self.payloads]
        run = _Run(self.make(rule), self.name, rule)
        got: list[bytes] = []
        for i in range(len(stream)):
            try:
                got += run.receive(stream[i : i + 1])
            except ContractViolation:
                raise
            except Exception as exc:
                raise self._fail(
                    rule, f"feeding valid frames one byte at a time raised {exc!r} at byte {i}",
                    stream=stream, received_so_far=got,
                ) from exc
            fed = i + 1
            if not self.boundaries:
                if b"".join(got) != stream[:fed]:
                    raise self._fail(
                        rule, f"after {fed} bytes fed one at a time, the bytes received differ",
                        sent=stream[:fed], received=b"".join(got),
                    )
                continue
            complete = sum(1 for end in ends if end <= fed)
            if got != want[:complete]:
                problem = (
                    f"after byte {fed} of {len(stream)} (fed one byte per call), "
                    f"{complete} frames are complete"
                )
                if want[: len(got)] == got:
                    problem += (
                        f" but only {len(got)} were returned: a frame must be returned by the "
                        "call that brings its last byte"
                    )
                else:
                    problem += " but the frames returned differ"
                raise self._fail(rule, problem, stream=stream, expected=want[:complete],
                                 received=got)
        end = self._run(run.framer, rule, [], eof=True)
        if end.error is not None or end.frames:
            raise self._fail(
                rule, f"end of stream after complete frames gave {end.describe()}",
                stream=stream,
            ) from end.error

    # ---------------------------------------------------------------- garbage

    def _tokens(self) -> list[bytes]:
        """Pieces of real frames (headers, delimiters, magic), and the user's tokens."""
        encoder = self.make("garbage")
        tokens: set[bytes] = set(self.tokens)
        for payload in self.payloads[:4]:
            wire = self._frame(encoder, payload, "garbage")
            tokens.update({wire, wire[:1], wire[:-1], wire[-1:], wire[:2], wire[-2:]})
            tokens.update(bytes([b]) for b in wire[:8])
        tokens.discard(b"")
        return sorted(tokens)

    def _garbage_outcome(self, rule: str, limited: bool, chunks: list[bytes],
                         stream: bytes) -> _Outcome:
        framer = self.make(rule, self.limit if limited else None)
        outcome = self._run(framer, rule, chunks)
        error = outcome.error
        if error is not None and not isinstance(error, RemoteProtocolError):
            where = "at end of stream" if outcome.error_at_eof else (
                f"after {outcome.error_at} bytes"
            )
            raise self._fail(
                rule,
                f"receive_data() raised {type(error).__name__}({error}) {where} on bytes from "
                "the peer; only polysock.RemoteProtocolError (FrameTooLarge, IncompleteFrame "
                "or RemoteProtocolError itself) may come out of receive_data(): anything else "
                "is a bug the transport cannot report as the peer's fault",
                stream=stream, chunks=chunks,
                max_frame_size=framer.max_frame_size,
            ) from error
        if self.boundaries:
            bound = framer.max_frame_size + len(self.expected(b""))
            for frame in outcome.frames:
                if len(frame) > bound:
                    raise self._fail(
                        rule,
                        f"a frame of {len(frame)} bytes was delivered with max_frame_size="
                        f"{framer.max_frame_size}",
                        stream=stream, chunks=chunks, frame=frame,
                    )
        return outcome

    def _same_for_every_cut(self, rule: str, stream: bytes, limited: bool,
                            cuts: Iterable[list[bytes]]) -> None:
        reference = self._garbage_outcome(rule, limited, [stream] if stream else [], stream)
        key = reference.key(self.boundaries)
        for chunks in cuts:
            outcome = self._garbage_outcome(rule, limited, chunks, stream)
            if outcome.key(self.boundaries) != key:
                raise self._fail(
                    rule,
                    "the outcome depends on how TCP split the stream: in one piece it gave "
                    f"{reference.describe()}, cut as shown it gave {outcome.describe()}",
                    stream=stream, chunks=chunks,
                    max_frame_size=self.limit if limited else "default",
                )

    def _cuts(self, stream: bytes, extra: Iterable[list[bytes]] = ()) -> Iterator[list[bytes]]:
        yield _bytewise(stream)
        if len(stream) <= 200:
            for i in range(1, len(stream)):
                yield [stream[:i], stream[i:]]
        yield from extra

    def check_garbage(self) -> None:
        """Any bytes from the peer raise nothing but RemoteProtocolError, deliver no frame
        over the limit, and give the same outcome (frames, including those carried by the
        error, and the error type) however the stream is cut."""
        rule = "garbage"
        encoder = self.make(rule)
        corpus = list(_GARBAGE_CORPUS) + list(self.tokens)
        # Sample frames with one byte changed anywhere in their first 40 bytes (header,
        # magic, length digits, delimiter), then cut short.
        for payload in self.payloads[:3]:
            wire = self._frame(encoder, payload, rule)[:40]
            for position in range(len(wire)):
                for value in (0x00, 0xFF, ord(":")):
                    corpus.append(_damage(wire, position, value))
            corpus += [wire[:i] for i in range(1, len(wire))]
        for stream in corpus:
            for limited in (False, True):
                self._same_for_every_cut(rule, stream, limited, self._cuts(stream))

        from hypothesis import given
        from hypothesis import strategies as st

        tokens = self._tokens()
        filler = self._filler([self.limit + k for k in range(-2, 7) if self.limit + k >= 0])
        payloads = self._payload_strategy(24)

        def framed(payload: bytes) -> bytes:
            return self._frame(encoder, payload, rule)

        def batch(items: list[bytes]) -> bytes:
            return b"".join(map(framed, items))

        near_limit = st.integers(max(self.limit - 2, 0), self.limit + 6).map(
            lambda n: framed(filler * n)
        )
        damaged = st.builds(
            _damage, self._payload_lists(12).map(batch), st.integers(0, 1 << 16),
            st.integers(0, 255),
        )
        piece = st.one_of(
            st.binary(max_size=24),
            st.sampled_from(tokens),
            payloads.map(framed),
            near_limit,
            damaged,
        )

        @self._settings()
        @given(stream=st.lists(piece, max_size=6).map(b"".join), limited=st.booleans(),
               data=st.data())
        def garbage(stream: bytes, limited: bool, data: DataObject) -> None:
            self._count("garbage")
            points = data.draw(st.lists(st.integers(0, len(stream)), max_size=16), label="cuts")
            self._same_for_every_cut(rule, stream, limited,
                                     self._cuts(stream, [_cut(stream, points)]))

        garbage()

    # ---------------------------------------------------------------- sizes

    def check_max_size_send(self) -> None:
        """``frame()`` and ``frame_many()`` refuse a payload over ``max_frame_size`` with
        LocalProtocolError and accept one of exactly that size (framings with message
        boundaries); a deferrable framer's ``max_send_size()`` says where refusal starts."""
        rule = "max size on send"
        limit = self.limit
        framer = self.make(rule, limit)
        filler = self._filler([limit, limit + 1])
        at_limit, over = filler * limit, filler * (limit + 1)
        max_send = getattr(framer, "max_send_size", None)
        if getattr(framer, "deferrable", False) and callable(max_send):
            size = max_send()
            if self.boundaries and size != limit:
                raise self._fail(
                    rule,
                    f"max_send_size() is {size} with max_frame_size={limit}: the transport "
                    "checks payload sizes against max_send_size() and skips frame() below it",
                )
        if not self.boundaries:
            # A stream framing has no frames to be too large: it must send anything.
            wire = self._frame(framer, over, rule)
            self._decode_clean(rule, [wire], [], "a payload over max_frame_size, stream framing")
            return
        wire = self._frame(framer, at_limit, rule)
        self._decode_clean(rule, [wire], [self.expected(at_limit)],
                           f"a payload of exactly max_frame_size={limit} bytes", limit=limit)
        calls: list[tuple[str, Callable[[], bytes]]] = [
            ("frame()", lambda: framer.frame(over)),
            ("frame_many()", lambda: framer.frame_many([at_limit, over])),
        ]
        for label, call in calls:
            try:
                result = call()
            except LocalProtocolError:
                continue
            except Exception as exc:
                raise self._fail(
                    rule,
                    f"{label} raised {type(exc).__name__} for a payload of {limit + 1} bytes with "
                    f"max_frame_size={limit}; refusing to send must raise "
                    "polysock.LocalProtocolError (the caller's mistake, not the peer's)",
                ) from exc
            raise self._fail(
                rule,
                f"{label} accepted a payload of {limit + 1} bytes with max_frame_size={limit}; "
                "it must raise polysock.LocalProtocolError (the peer would refuse the frame)",
                wire=result,
            )

    def check_max_size_receive(self) -> None:
        """A frame over ``max_frame_size`` raises FrameTooLarge as soon as its size is known
        (on the declared length, before the body arrives; for a delimiter, once more bytes
        than the limit came without one), after the frames before it were delivered, with
        the same outcome for every split. A stream framing cuts reads to the limit instead.
        """
        rule = "max size on receive"
        limit = self.limit
        encoder = self.make(rule)
        big_size = min(4 * limit + 64, encoder.max_frame_size)
        filler = self._filler([limit, big_size])
        big = filler * big_size
        big_wire = self._frame(encoder, big, rule)
        if not self.boundaries:
            outcome = self._decode_clean(rule, [big_wire], [],
                                         "a read larger than max_frame_size on a stream framing",
                                         limit=limit)
            sizes = [len(f) for f in outcome.frames]
            if any(size > limit for size in sizes):
                raise self._fail(
                    rule,
                    f"a read of {len(big_wire)} bytes was delivered in pieces of {sizes} bytes "
                    f"with max_frame_size={limit}: a stream framing cuts reads to the limit",
                )
            return
        overhead = len(big_wire) - len(big)
        allowed = limit + max(overhead, 0) + self.receive_slack
        if len(big_wire) <= allowed:
            raise ValueError(
                f"limit={limit} is too large for this framer: its default max_frame_size "
                f"({encoder.max_frame_size}) leaves no room for an oversized frame"
            )
        good = [*[p for p in self.payloads if len(p) <= limit][:4], filler * limit]
        good_wire = b"".join(self._frame(encoder, p, rule) for p in good)
        want = [self.expected(p) for p in good]
        stream = good_wire + big_wire

        whole = self._run(self.make(rule, limit), rule, [stream])
        self._expect_too_large(rule, whole, want, "in one piece", chunks=[stream])

        # One byte at a time: where does the framer notice?
        run = _Run(self.make(rule, limit), self.name, rule)
        got: list[bytes] = []
        noticed: int | None = None
        for i in range(len(stream)):
            try:
                got += run.receive(stream[i : i + 1])
            except ContractViolation:
                raise
            except FrameTooLarge as exc:
                got += list(exc.frames)
                noticed = i + 1 - len(good_wire)
                if noticed <= 0:
                    raise self._fail(
                        rule,
                        f"FrameTooLarge raised at byte {i + 1} of {len(good_wire)} bytes of "
                        f"frames no larger than max_frame_size={limit}",
                        stream=good_wire, error=exc,
                    ) from exc
                break
            except Exception as exc:
                raise self._fail(
                    rule, f"feeding an oversized frame byte by byte raised {exc!r}; expected "
                    "FrameTooLarge", stream=stream,
                ) from exc
        if noticed is None:
            outcome = self._run(run.framer, rule, [], eof=True)
            raise self._fail(
                rule,
                f"a frame of {len(big)} bytes fed one byte per call was never refused with "
                f"max_frame_size={limit} (the end of stream gave {outcome.describe()})",
                frame_header=big_wire[: max(overhead, 8)],
            )
        if noticed > allowed:
            raise self._fail(
                rule,
                f"FrameTooLarge came only after {noticed} bytes of an oversized frame "
                f"({len(big_wire)} bytes on the wire); with max_frame_size={limit} and "
                f"{overhead} bytes of framing it must come within {allowed}: check the "
                "declared length when the header arrives, or a delimiter search once more "
                "than max_frame_size bytes are buffered, never after buffering the body "
                "(a peer could make the receiver buffer any amount)",
                frame_header=big_wire[: max(overhead, 8)],
            )
        if got != want:
            raise self._fail(
                rule,
                "the frames before the oversized one were lost (fed one byte per call)",
                expected=want, received=got,
            )
        for i in range(1, len(stream)):
            chunks = [stream[:i], stream[i:]]
            outcome = self._run(self.make(rule, limit), rule, chunks)
            self._expect_too_large(rule, outcome, want, f"cut in two at byte {i} of {len(stream)}",
                                   chunks=chunks)

    def _expect_too_large(
        self, rule: str, outcome: _Outcome, want: list[bytes], how: str, *, chunks: list[bytes]
    ) -> None:
        stream = b"".join(chunks)
        error = outcome.error
        if error is None:
            raise self._fail(
                rule,
                f"a frame over max_frame_size={self.limit} was accepted ({how}); it must raise "
                "polysock.FrameTooLarge",
                stream=stream, chunks=chunks, received=outcome.frames,
            )
        if not isinstance(error, FrameTooLarge):
            raise self._fail(
                rule,
                f"a frame over max_frame_size={self.limit} raised {error!r} ({how}); it must "
                "raise polysock.FrameTooLarge",
                stream=stream, chunks=chunks,
            ) from error
        if error.limit != self.limit:
            raise self._fail(
                rule,
                f"FrameTooLarge.limit is {error.limit}, the framer's max_frame_size is "
                f"{self.limit}",
            )
        if outcome.frames != want:
            raise self._fail(
                rule,
                f"the frames before the oversized one were not all delivered ({how}); a "
                "ProtocolError carries the frames completed in the same call in .frames",
                stream=stream, chunks=chunks, expected=want, received=outcome.frames,
            )

    # ---------------------------------------------------------------- end of stream

    def check_eof(self) -> None:
        """End of stream: clean (nothing, after whole frames) gives nothing; in the middle of
        a frame, after every possible prefix of it, does what ``at_eof`` declares and never
        loses the frames before it."""
        rule = "end of stream"
        empty = self._run(self.make(rule), rule, [], eof=True)
        if empty.error is not None or empty.frames:
            raise self._fail(
                rule, f"end of stream on a fresh framer gave {empty.describe()}; expected "
                "nothing",
            ) from empty.error
        encoder = self.make(rule)
        if not self.boundaries:
            for payload in self.payloads:
                if payload:
                    wire = self._frame(encoder, payload, rule)
                    self._decode_clean(rule, [wire], [], "end of stream on a stream framing")
            return
        first = next(p for p in self.payloads if p)
        first_wire = self._frame(encoder, first, rule)
        candidates = sorted(
            (p for p in self.payloads if len(p) <= 64),
            key=lambda p: (-len(self._frame(encoder, p, rule)), p),
        )
        partials = [p for p in candidates if len(self._frame(encoder, p, rule)) >= 2][:2]
        for payload in partials:
            wire = self._frame(encoder, payload, rule)
            for cut in range(1, len(wire)):
                partial = wire[:cut]
                for chunks in ([first_wire + partial], [first_wire, *_bytewise(partial)]):
                    self._eof_after(rule, first, partial, payload, chunks)

    def _eof_after(self, rule: str, first: bytes, partial: bytes, payload: bytes,
                   chunks: list[bytes]) -> None:
        run = _Run(self.make(rule), self.name, rule)
        got: list[bytes] = []
        for chunk in chunks:
            try:
                got += run.receive(chunk)
            except ContractViolation:
                raise
            except Exception as exc:
                raise self._fail(
                    rule, f"a valid frame followed by part of another raised {exc!r} before "
                    "the end of stream", chunks=chunks,
                ) from exc
        if got != [self.expected(first)]:
            raise self._fail(
                rule,
                "the complete frame before a partial one was not returned as soon as it was "
                "complete",
                chunks=chunks, expected=[self.expected(first)], received=got,
            )
        end = run.run([], eof=True)
        evidence: dict[str, object] = {
            "partial_frame": partial, "of_frame_for": payload, "chunks": chunks,
        }
        policy = self.at_eof
        what = f"end of stream after {len(partial)} bytes of a frame"
        if policy == "error":
            if isinstance(end.error, IncompleteFrame):
                if end.frames:
                    raise self._fail(rule, f"{what} raised IncompleteFrame but also delivered "
                                     f"{end.frames!r}", **evidence)
                return
            if end.error is None and end.frames:
                raise self._fail(
                    rule,
                    f"{what} delivered {_short(end.frames)} as a message without an error; the "
                    "contract declares at_eof='error' (raise polysock.IncompleteFrame), declare "
                    "at_eof='deliver' if the framing means it",
                    **evidence,
                )
            if end.error is None:
                raise self._fail(
                    rule,
                    f"{what} gave nothing and no error: the partial frame was lost silently; "
                    "raise polysock.IncompleteFrame (or declare at_eof='discard' if the "
                    "framing means it)",
                    **evidence,
                )
            raise self._fail(
                rule, f"{what} raised {end.error!r}; expected polysock.IncompleteFrame",
                **evidence,
            ) from end.error
        if end.error is not None:
            raise self._fail(
                rule, f"{what} raised {end.error!r} but the contract declares at_eof="
                f"{policy if isinstance(policy, str) else 'a function'}", **evidence,
            ) from end.error
        if policy == "discard":
            expected: list[bytes] = []
        elif policy == "deliver":
            expected = [partial]
        else:
            expected = list(policy(partial))
        if end.frames != expected:
            lost = " (the partial frame was lost)" if not end.frames else ""
            raise self._fail(
                rule,
                f"{what} gave {_short(end.frames)}{lost}; at_eof="
                f"{policy if isinstance(policy, str) else 'function'} expects {_short(expected)}",
                **evidence,
            )


def check_framer(factory: Callable[..., Framer], **options: Any) -> dict[str, int]:
    """Check ``factory`` against the whole contract (options as :class:`FramerContract`);
    raises :class:`ContractViolation` on the first broken rule, returns the hypothesis
    examples run per check."""
    return FramerContract(factory, **options).check_all()


# -------------------------------------------------------------------- pytest integration


def _examples_override(config: Any) -> int | None:
    value = None
    if config is not None:
        try:
            value = config.getoption("polysock_examples")
        except (ValueError, AttributeError):
            value = None
    if value is None:
        env = os.environ.get(EXAMPLES_ENV, "").strip()
        if env:
            try:
                value = int(env)
            except ValueError:
                raise ValueError(f"{EXAMPLES_ENV} must be an integer, not {env!r}") from None
    return value


class FramerContractTests:
    """The framer contract as a pytest test class.

    Subclass it in a test module with a name starting with ``Test`` and say what framer to
    check; one test per check in :data:`CHECKS`, parametrized over the contracts::

        class TestNetstring(FramerContractTests):
            framer_factory = NetstringFramer

        class TestMyDelimiter(FramerContractTests):
            contracts = [
                FramerContract(functools.partial(MyFramer, b"\\n"),
                               valid_payload=delimiter_safe(b"\\n")),
                FramerContract(functools.partial(MyFramer, b"\\r\\n"),
                               valid_payload=delimiter_safe(b"\\r\\n"), at_eof="deliver"),
            ]

    With ``framer_factory``, the other class attributes below are the contract's options.
    Each test records ``polysock_examples`` (hypothesis examples run) as a user property
    (shown by the plugin's summary and in junit XML with ``junit_family=xunit1``).
    """

    framer_factory: ClassVar[Callable[..., Framer] | None] = None
    contracts: ClassVar[Sequence[FramerContract]] = ()
    payloads: ClassVar[Iterable[bytes] | None] = None
    allow_empty: ClassVar[bool] = True
    valid_payload: ClassVar[Callable[[bytes], bool] | None] = None
    expect: ClassVar[Callable[[bytes], bytes] | None] = None
    at_eof: ClassVar[EofPolicy | Callable[[bytes], list[bytes]]] = "error"
    limit: ClassVar[int] = 40
    receive_slack: ClassVar[int] = 0
    tokens: ClassVar[Iterable[bytes]] = ()
    examples: ClassVar[int] = 100

    @classmethod
    def framer_contracts(cls) -> list[FramerContract]:
        """The contracts this class checks (override for contracts built another way)."""
        found = list(cls.contracts)
        factory = _plain(cls, "framer_factory")
        if factory is not None:
            found.append(
                FramerContract(
                    factory,
                    payloads=cls.payloads,
                    allow_empty=cls.allow_empty,
                    valid_payload=_plain(cls, "valid_payload"),
                    expect=_plain(cls, "expect"),
                    at_eof=_plain(cls, "at_eof"),
                    limit=cls.limit,
                    receive_slack=cls.receive_slack,
                    tokens=cls.tokens,
                    examples=cls.examples,
                )
            )
        if not found:
            raise TypeError(
                f"{cls.__name__} checks no framer: set framer_factory or contracts"
            )
        return found

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize every test of the class over :meth:`framer_contracts`."""
        if "framer_contract" not in metafunc.fixturenames:
            return
        contracts = type(self).framer_contracts()
        examples = _examples_override(metafunc.config)
        if examples is not None:
            contracts = [c.replace(examples=examples) for c in contracts]
        ids = [c.name for c in contracts]
        if len(set(ids)) != len(ids):
            ids = [f"{i}-{name}" for i, name in enumerate(ids)]
        metafunc.parametrize("framer_contract", contracts, ids=ids)

    @staticmethod
    def _check(contract: FramerContract, name: str, request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        before = sum(contract.examples_run.values())
        try:
            getattr(contract, f"check_{name}")()
        except ContractViolation as exc:
            # The message names the rule and the bytes; the kit's own frames add nothing
            # (the cause, when the framer raised, still shows the framer's code).
            raise exc.with_traceback(None)  # noqa: B904
        finally:
            # A user property (not record_property, which junit's default xunit2 rejects):
            # the plugin's summary and junit (xunit1) reports show it.
            request.node.user_properties.append(
                ("polysock_examples", sum(contract.examples_run.values()) - before)
            )

    def test_shape(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "shape", request)

    def test_roundtrip(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "roundtrip", request)

    def test_batch(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "batch", request)

    def test_every_split(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "every_split", request)

    def test_byte_at_a_time(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "byte_at_a_time", request)

    def test_garbage(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "garbage", request)

    def test_max_size_send(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "max_size_send", request)

    def test_max_size_receive(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "max_size_receive", request)

    def test_eof(
        self, framer_contract: FramerContract, request: pytest.FixtureRequest
    ) -> None:
        __tracebackhide__ = True
        self._check(framer_contract, "eof", request)


def _plain(cls: type, attr: str) -> Any:
    """A class attribute as written (a function stays a function, not a method)."""
    for klass in cls.__mro__:
        if attr in vars(klass):
            value = vars(klass)[attr]
            return value.__func__ if isinstance(value, staticmethod) else value
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("polysock", "polysock framer contract (polysock.testing)")
    group.addoption(
        "--polysock-examples",
        type=int,
        default=None,
        metavar="N",
        dest="polysock_examples",
        help=f"hypothesis examples per framer contract check (overrides each contract's "
        f"own; also {EXAMPLES_ENV}=N)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    examples = _examples_override(config)
    if examples is None:
        return None
    return f"polysock framer contract: {examples} hypothesis examples per check"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many hypothesis examples each contract test ran: a contract that ran few checked
    little, and the count is the evidence."""
    rows: list[tuple[str, int]] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for key, value in getattr(report, "user_properties", ()):
                if key == "polysock_examples" and value:
                    rows.append((report.nodeid, int(value)))
    if not rows:
        return
    terminalreporter.write_sep("-", "polysock framer contract: hypothesis examples run")
    for nodeid, count in sorted(rows):
        terminalreporter.write_line(f"{count:>7}  {nodeid}")


# -------------------------------------------------------------------- loopback pairs


class LoopbackPair(NamedTuple):
    """Two connected ends: ``client`` from :func:`polysock.connect`, ``server`` accepted by
    :func:`polysock.serve`."""

    client: Connection
    server: Connection


Framing = str | Callable[[], Framer]


@dataclass
class _Opened:
    pair: LoopbackPair
    server: Any  # polysock.Server
    release: asyncio.Event


async def _open_pair(
    framing: Framing,
    *,
    framing_options: Mapping[str, Any] | None,
    handshake: str | None,
    handshake_options: Mapping[str, Any] | None,
    limits: Limits | None,
    server_options: Mapping[str, Any] | None,
    client_options: Mapping[str, Any] | None,
    timeout: float,
) -> _Opened:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Connection] = loop.create_future()
    release = asyncio.Event()

    async def session(conn: Connection) -> None:
        if accepted.done():  # someone else connected to our port: not part of the pair
            conn.abort()
            return
        accepted.set_result(conn)
        await release.wait()

    common: dict[str, Any] = {
        "framing": framing,
        "framing_options": framing_options,
        "handshake": handshake,
        "handshake_options": handshake_options,
    }
    if limits is not None:
        common["limits"] = limits
    server = await asyncio.wait_for(
        serve(session, "127.0.0.1", 0, **common, **dict(server_options or {})), timeout
    )
    try:
        client = await connect(
            "127.0.0.1", server.port, timeout=timeout, **common, **dict(client_options or {})
        )
        try:
            server_end = await asyncio.wait_for(asyncio.shield(accepted), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            client.abort()
            raise TimeoutError(
                f"the server end of the loopback pair was not ready within {timeout} s "
                "(a handshake that does not complete?)"
            ) from None
        except BaseException:
            client.abort()
            raise
    except BaseException:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.close_connections(abort=True), timeout)
        raise
    return _Opened(LoopbackPair(client, server_end), server, release)


async def _close_pair(opened: _Opened, timeout: float) -> None:
    """Graceful close of both ends (each delivers what was queued), then the server; an
    end that does not close within ``timeout`` is aborted."""
    opened.release.set()
    client, server_end = opened.pair
    client.close(timeout)
    server_end.close(timeout)
    ends = asyncio.gather(client.wait_closed(), server_end.wait_closed())
    try:
        await asyncio.wait_for(ends, timeout)
    except (asyncio.TimeoutError, TimeoutError):
        client.abort()
        server_end.abort()
    try:
        await asyncio.wait_for(opened.server.aclose(timeout), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        await opened.server.close_connections(abort=True)


@contextlib.asynccontextmanager
async def loopback_pair(
    framing: Framing = "length-prefix",
    framing_options: Mapping[str, Any] | None = None,
    *,
    handshake: str | None = None,
    handshake_options: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    server_options: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[LoopbackPair]:
    """Two :class:`~polysock.Connection` ends talking over 127.0.0.1 (an ephemeral port)::

        async with loopback_pair("netstring") as (client, server):
            await client.send(b"ping")
            assert await server.recv() == b"ping"

    ``framing`` is a registered name or a framer factory (a framer not registered anywhere
    can be tested end to end). ``server_options``/``client_options`` go to
    :func:`polysock.serve`/:func:`polysock.connect` only (``ssl=``...). Opening and each step
    of closing are bounded by ``timeout`` seconds; on exit both ends close gracefully (or
    are aborted after ``timeout``) and the server stops listening.
    """
    opened = await _open_pair(
        framing, framing_options=framing_options, handshake=handshake,
        handshake_options=handshake_options, limits=limits, server_options=server_options,
        client_options=client_options, timeout=timeout,
    )
    try:
        yield opened.pair
    finally:
        await _close_pair(opened, timeout)


class SyncConnection:
    """One end of :func:`loopback_pair_sync`: blocking calls for thread-based tests.

    Every blocking call is bounded (``timeout``, default the pair's). ``connection`` is the
    :class:`~polysock.Connection` itself (it lives on the runtime's loop thread: call only
    its ``*_threadsafe`` methods directly).
    """

    def __init__(self, connection: Connection, runtime: LoopThread, timeout: float) -> None:
        self.connection = connection
        self._rt = runtime
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<SyncConnection {self.connection!r}>"

    def send(self, payload: Buffer) -> None:
        self.connection.send_threadsafe(payload, timeout=self._timeout)

    def send_many(self, payloads: Iterable[Buffer]) -> None:
        self.connection.send_many_threadsafe(payloads, timeout=self._timeout)

    def recv(self, timeout: float | None = None) -> bytes:
        """The next message; raises like :meth:`Connection.recv`, TimeoutError when none
        arrives in time."""
        return self._rt.run(self.connection.recv(), self._timeout if timeout is None else timeout)

    def recv_batch(self, timeout: float | None = None) -> list[bytes]:
        return self._rt.run(
            self.connection.recv_batch(), self._timeout if timeout is None else timeout
        )

    def recv_exactly(self, count: int, timeout: float | None = None) -> list[bytes]:
        """``count`` messages (a raw stream: chunks until that many bytes, see
        :meth:`recv_bytes`)."""
        return [self.recv(timeout) for _ in range(count)]

    def recv_bytes(self, size: int, timeout: float | None = None) -> bytes:
        """Messages joined until ``size`` bytes arrived (for framings without boundaries)."""
        data = b""
        while len(data) < size:
            data += self.recv(timeout)
        return data

    def write_eof(self) -> None:
        self._rt.call(self.connection.write_eof, timeout=self._timeout)

    def close(self, timeout: float | None = None) -> None:
        """Graceful close: returns once the connection is closed (aborted after timeout)."""
        limit = self._timeout if timeout is None else timeout

        async def _close() -> None:
            await self.connection.close(limit)

        self._rt.run(_close(), limit + 1.0)

    def abort(self) -> None:
        self._rt.call(self.connection.abort, timeout=self._timeout)


class SyncLoopbackPair(NamedTuple):
    client: SyncConnection
    server: SyncConnection


@contextlib.contextmanager
def loopback_pair_sync(
    framing: Framing = "length-prefix",
    framing_options: Mapping[str, Any] | None = None,
    *,
    handshake: str | None = None,
    handshake_options: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    server_options: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> Iterator[SyncLoopbackPair]:
    """:func:`loopback_pair` on the shared :mod:`polysock.runtime` loop, for threaded code::

        with loopback_pair_sync("netstring") as (client, server):
            client.send(b"ping")
            assert server.recv() == b"ping"
    """
    from .runtime import get_runtime

    rt = get_runtime()
    opened = rt.run(
        _open_pair(
            framing, framing_options=framing_options, handshake=handshake,
            handshake_options=handshake_options, limits=limits, server_options=server_options,
            client_options=client_options, timeout=timeout,
        ),
        3 * timeout + 1.0,
    )
    try:
        yield SyncLoopbackPair(
            SyncConnection(opened.pair.client, rt, timeout),
            SyncConnection(opened.pair.server, rt, timeout),
        )
    finally:
        rt.run(_close_pair(opened, timeout), 3 * timeout + 1.0)
