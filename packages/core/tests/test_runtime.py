"""The shared loop thread, the thread-safe send path and the callback dispatcher.

Tests that need a loop thread of their own get one per event-loop kind (``lt`` fixture); the
tests of ``get_runtime``/``connect_sync``/``serve_sync`` use the process's shared runtime
(uvloop unless ``POLYSOCK_NO_UVLOOP=1``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import polysock
import pytest
from polysock import ConnectionClosed, Handler, LengthPrefixFramer, Limits
from polysock.runtime import (
    CallbackDispatcher,
    LoopThread,
    connect_sync,
    get_runtime,
    serve_sync,
)

HOST = "127.0.0.1"


# ------------------------------------------------------------------ helpers


@pytest.fixture
def lt(loop_kind: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopThread]:
    """A loop thread of its own, on asyncio's loop or on uvloop."""
    if loop_kind == "asyncio":
        monkeypatch.setenv("POLYSOCK_NO_UVLOOP", "1")
    else:
        monkeypatch.delenv("POLYSOCK_NO_UVLOOP", raising=False)
    thread = LoopThread(name=f"test-loop-{loop_kind}")
    assert ("uvloop" in type(thread.loop).__module__) == (loop_kind == "uvloop")
    yield thread
    thread.stop()


class Collect(Handler):
    """A loop-thread sink: keeps every message, signals threads when ``expected`` arrived."""

    def __init__(self, expected: int | None = None) -> None:
        self.messages: list[bytes] = []
        self.expected = expected
        self.done = threading.Event()
        self.lost = threading.Event()
        self.reason: BaseException | None = None

    def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
        self.messages.extend(messages)
        if self.expected is not None and len(self.messages) >= self.expected:
            self.done.set()

    def connection_lost(self, conn: polysock.Connection, exc: BaseException | None) -> None:
        self.reason = exc
        self.lost.set()


class Echo(Handler):
    def messages_received(self, conn: polysock.Connection, messages: list[bytes]) -> None:
        conn.write_many(messages)


def serve_on(lt: LoopThread, **kwargs: Any) -> polysock.Server:
    return lt.run(polysock.serve(host=HOST, **kwargs), 10)


def connect_on(lt: LoopThread, port: int, **kwargs: Any) -> polysock.Connection:
    return lt.run(polysock.connect(HOST, port, timeout=10, **kwargs), 15)


def close_on(lt: LoopThread, conn: polysock.Connection) -> None:
    async def close() -> None:
        await asyncio.wait_for(conn.close(timeout=2), 5)

    lt.run(close(), 10)


def run_in_thread(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``fn`` in a helper thread and return its result; fail (not hang) if it does not
    finish within ``timeout``."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn!r} did not finish within {timeout} s"
    if error:
        raise error[0]
    return result[0]


class RawPeer:
    """A plain listening socket whose accepted connection the test reads by hand (or not)."""

    def __init__(self, rcvbuf: int = 32 * 1024) -> None:
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(1)
        self.lsock.settimeout(10)
        self.port = self.lsock.getsockname()[1]
        self.sock: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.sock, _ = self.lsock.accept()
        self.sock.settimeout(10)
        self.lsock.close()
        return self.sock

    def read_exactly(self, n: int) -> bytes:
        assert self.sock is not None
        buf = bytearray()
        while len(buf) < n:
            data = self.sock.recv(min(1 << 20, n - len(buf)))
            if not data:
                raise EOFError(f"EOF after {len(buf)} of {n} bytes")
            buf += data
        return bytes(buf)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.lsock.close()


def connect_to_raw(lt: LoopThread, peer: RawPeer, **kwargs: Any) -> polysock.Connection:
    conn = connect_on(lt, peer.port, **kwargs)
    peer.accept()
    lt.call(conn.socket.setsockopt, socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    return conn


def fill_until_blocked(
    conn: polysock.Connection, chunk: bytes, timeout: float = 0.3
) -> tuple[int, float]:
    """send_threadsafe until it times out; returns (messages queued, duration of the call
    that timed out)."""
    sent = 0
    while True:
        t0 = time.monotonic()
        try:
            conn.send_threadsafe(chunk, timeout=timeout)
        except TimeoutError:
            return sent, time.monotonic() - t0
        sent += 1
        assert sent * len(chunk) < 64 * 1024 * 1024, "send_threadsafe never blocked"


# ------------------------------------------------------------------ LoopThread


def test_get_runtime_is_one_shared_daemon_loop_thread() -> None:
    rt = get_runtime()
    assert get_runtime() is rt
    assert rt.running and rt.thread.is_alive() and rt.thread.daemon
    assert rt.thread.name == "polysock-loop"
    assert not rt.in_loop_thread()
    assert rt.call(rt.in_loop_thread) is True
    no_uvloop = os.environ.get("POLYSOCK_NO_UVLOOP", "") in ("1", "true", "yes")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        no_uvloop = True
    assert ("uvloop" in type(rt.loop).__module__) == (not no_uvloop)


def test_loop_thread_run_call_submit(lt: LoopThread) -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        assert lt.in_loop_thread()
        return a + b

    assert lt.run(add(2, 3), 5) == 5
    future = lt.submit(add(4, 5))
    assert future.result(5) == 9

    async def fail() -> None:
        raise KeyError("from the loop")

    with pytest.raises(KeyError, match="from the loop"):
        lt.run(fail(), 5)

    assert lt.call(lambda a, b: (a * b, threading.current_thread()), 6, 7, timeout=5) == (
        42,
        lt.thread,
    )
    ran = threading.Event()
    lt.call_soon(ran.set)
    assert ran.wait(5)

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        lt.run(asyncio.sleep(30), timeout=0.2)
    assert time.monotonic() - t0 < 5
    assert lt.running


def test_run_on_the_loop_thread_raises_instead_of_deadlocking(lt: LoopThread) -> None:
    def nested_run() -> None:
        coro = asyncio.sleep(0)
        try:
            lt.run(coro, 1)
        finally:
            assert coro.cr_frame is None  # closed: no "never awaited" warning later

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="deadlock"):
        lt.call(nested_run, timeout=5)
    assert time.monotonic() - t0 < 2
    # call() on the loop thread runs inline.
    assert lt.call(lambda: lt.call(lambda: "inline"), timeout=5) == "inline"


def test_at_exit_callbacks_run_on_stop(lt: LoopThread, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def sync_cb() -> None:
        assert lt.in_loop_thread()
        ran.append("sync")

    async def async_cb() -> None:
        await asyncio.sleep(0.01)
        ran.append("async")

    def broken() -> None:
        raise ValueError("exit callback bug")

    async def too_slow() -> None:
        await asyncio.sleep(60)
        ran.append("never")

    lt.at_exit(sync_cb)
    lt.at_exit(broken)
    lt.at_exit(async_cb)
    lt.at_exit(too_slow)
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="polysock.runtime"):
        lt.stop(timeout=0.5)
    assert time.monotonic() - t0 < 5  # the slow one was cut off at the timeout
    assert sorted(ran) == ["async", "sync"]
    assert "exit callback bug" in caplog.text
    assert not lt.thread.is_alive() and not lt.running
    assert lt.loop.is_closed()
    lt.stop()  # idempotent


# ------------------------------------------------------------------ connect_sync / serve_sync


def test_connect_sync_serve_sync_share_one_thread() -> None:
    rt = get_runtime()
    server = serve_sync(handler_factory=Echo, host=HOST)
    try:
        before = threading.active_count()
        handlers = [Collect(expected=1) for _ in range(50)]
        conns = [connect_sync(HOST, server.port, handler=h, timeout=10) for h in handlers]
        assert threading.active_count() - before < 5  # not one thread per connection
        assert all(c.loop is rt.loop for c in conns)
        for i, conn in enumerate(conns):
            conn.send_threadsafe(b"ping %d" % i)
        for i, h in enumerate(handlers):
            assert h.done.wait(10)
            assert h.messages == [b"ping %d" % i]
        assert threading.active_count() - before < 5
        for conn in conns:
            close_on(rt, conn)
        assert all(c.state == "closed" for c in conns)
    finally:
        rt.run(server.aclose(), 15)


def test_connect_sync_errors() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))  # not listening
        with pytest.raises(ConnectionRefusedError):
            connect_sync(HOST, s.getsockname()[1], timeout=5)


# ------------------------------------------------------------------ thread-safe sends


def test_send_threadsafe_from_many_threads_keeps_order_and_coalesces(lt: LoopThread) -> None:
    threads, per_thread = 4, 10_000
    total = threads * per_thread
    pack = struct.Struct(">HI").pack
    sink = Collect(expected=total)
    server = serve_on(lt, handler_factory=lambda: sink)
    conn = connect_on(lt, server.port)
    wakeups = 0
    original = conn._run_xq

    def counting_run_xq() -> None:  # counts loop wake-ups; the real work is unchanged
        nonlocal wakeups
        wakeups += 1
        original()

    conn._run_xq = counting_run_xq  # type: ignore[method-assign]
    start = threading.Barrier(threads)

    def sender(t: int) -> None:
        start.wait(10)
        for i in range(per_thread):
            conn.send_threadsafe(pack(t, i))

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert not w.is_alive()
    assert sink.done.wait(30), f"only {len(sink.messages)} of {total} arrived"
    assert len(sink.messages) == total
    by_thread: dict[int, list[int]] = {t: [] for t in range(threads)}
    for msg in sink.messages:
        t, i = struct.unpack(">HI", msg)
        by_thread[t].append(i)
    for t in range(threads):
        assert by_thread[t] == list(range(per_thread))  # per-thread order, nothing lost
    assert wakeups < total // 10, f"{wakeups} loop wake-ups for {total} sends"
    close_on(lt, conn)
    lt.run(server.aclose(), 10)


def test_send_threadsafe_burst_from_one_thread_costs_few_wakeups(lt: LoopThread) -> None:
    sink = Collect(expected=10_000)
    server = serve_on(lt, handler_factory=lambda: sink)
    conn = connect_on(lt, server.port)
    wakeups = 0
    original = conn._run_xq

    def counting_run_xq() -> None:
        nonlocal wakeups
        wakeups += 1
        original()

    conn._run_xq = counting_run_xq  # type: ignore[method-assign]
    conn.send_many_threadsafe(b"%d" % i for i in range(5_000))
    for i in range(5_000, 10_000):
        conn.send_threadsafe(b"%d" % i)
    assert sink.done.wait(20)
    assert sink.messages == [b"%d" % i for i in range(10_000)]
    assert wakeups <= 1_000, f"{wakeups} loop wake-ups for 10,000 sends"
    close_on(lt, conn)
    lt.run(server.aclose(), 10)


def test_call_threadsafe_runs_after_the_sends_queued_before_it(lt: LoopThread) -> None:
    sink = Collect(expected=101)
    server = serve_on(lt, handler_factory=lambda: sink)
    conn = connect_on(lt, server.port)
    where: list[bool] = []

    def on_loop() -> None:
        where.append(lt.in_loop_thread())
        conn.write(b"from call_threadsafe")

    def worker() -> None:
        for i in range(50):
            conn.send_threadsafe(b"%d" % i)
        conn.call_threadsafe(on_loop)
        for i in range(50, 100):
            conn.send_threadsafe(b"%d" % i)

    run_in_thread(worker)
    assert sink.done.wait(10)
    expected = [b"%d" % i for i in range(50)] + [b"from call_threadsafe"]
    expected += [b"%d" % i for i in range(50, 100)]
    assert sink.messages == expected
    assert where == [True]
    close_on(lt, conn)
    lt.run(server.aclose(), 10)


def test_send_threadsafe_blocks_with_timeout_when_the_peer_does_not_read(lt: LoopThread) -> None:
    limits = Limits(
        write_high_water=64 * 1024, write_low_water=16 * 1024, flush_threshold=16 * 1024
    )
    chunk = b"b" * 8192
    framed = len(chunk) + 4
    peer = RawPeer()
    try:
        conn = connect_to_raw(lt, peer, limits=limits)
        sent, blocked_for = run_in_thread(lambda: fill_until_blocked(conn, chunk, timeout=0.5))
        assert 0.4 <= blocked_for < 3.0  # the timeout is honoured (and not much longer)
        held = lt.call(lambda: conn.write_buffer_size)
        assert held <= limits.write_high_water + limits.flush_threshold + 2 * framed
        # The peer reads everything: sends go through again.
        reader = threading.Thread(
            target=lambda: received.append(peer.read_exactly((sent + 5) * framed)), daemon=True
        )
        received: list[bytes] = []
        reader.start()
        for _ in range(5):
            conn.send_threadsafe(chunk, timeout=10)
        reader.join(20)
        assert received, "the peer did not get everything"
        framer = LengthPrefixFramer()
        assert framer.receive_data(received[0]) == [chunk] * (sent + 5)
        lt.call(conn.abort)
    finally:
        peer.close()


def test_blocked_send_threadsafe_fails_when_the_connection_closes(lt: LoopThread) -> None:
    limits = Limits(write_high_water=32 * 1024, write_low_water=8 * 1024, flush_threshold=8 * 1024)
    chunk = b"c" * 8192
    peer = RawPeer()
    try:
        conn = connect_to_raw(lt, peer, limits=limits)
        run_in_thread(lambda: fill_until_blocked(conn, chunk))
        outcome: list[BaseException] = []
        started = threading.Event()

        def blocked_sender() -> None:
            started.set()
            try:
                conn.send_threadsafe(chunk, timeout=30)
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=blocked_sender, daemon=True)
        t.start()
        assert started.wait(5)
        t.join(0.3)
        assert t.is_alive(), "send_threadsafe did not wait for room"
        t0 = time.monotonic()
        lt.call(conn.abort)
        t.join(5)
        assert not t.is_alive() and time.monotonic() - t0 < 5
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosed)
        with pytest.raises(ConnectionClosed):
            conn.send_threadsafe(b"after abort")
    finally:
        peer.close()


def test_send_threadsafe_on_the_loop_thread_never_blocks(lt: LoopThread) -> None:
    """Called from a loop callback while the peer does not read: it must queue, not wait for
    room that only the loop itself could make."""
    limits = Limits(write_high_water=32 * 1024, write_low_water=8 * 1024, flush_threshold=8 * 1024)
    chunk = b"l" * 8192
    peer = RawPeer()
    try:
        conn = connect_to_raw(lt, peer, limits=limits)
        run_in_thread(lambda: fill_until_blocked(conn, chunk))
        t0 = time.monotonic()
        lt.call(lambda: conn.send_threadsafe(chunk, timeout=3), timeout=10)
        assert time.monotonic() - t0 < 1.5
        lt.call(conn.abort)
    finally:
        peer.close()


def test_send_threadsafe_after_close_raises(lt: LoopThread) -> None:
    server = serve_on(lt, handler_factory=Echo)
    conn = connect_on(lt, server.port)
    close_on(lt, conn)
    with pytest.raises(ConnectionClosed):
        conn.send_threadsafe(b"late")
    with pytest.raises(ConnectionClosed):
        conn.send_many_threadsafe([b"late"])
    lt.run(server.aclose(), 10)


def test_send_threadsafe_after_the_loop_stopped_raises(loop_kind: str, monkeypatch: Any) -> None:
    if loop_kind == "asyncio":
        monkeypatch.setenv("POLYSOCK_NO_UVLOOP", "1")
    else:
        monkeypatch.delenv("POLYSOCK_NO_UVLOOP", raising=False)
    own = LoopThread(name="short-lived")
    peer = RawPeer()
    try:
        conn = connect_to_raw(own, peer)

        def release_socket_behind_the_connections_back() -> None:
            # The connection stays "open": only the loop being gone can stop the send.
            conn.transport.set_protocol(asyncio.Protocol())
            conn.transport.close()

        own.call(release_socket_behind_the_connections_back, timeout=5)
        own.stop()
        assert conn.state == "open"
        with pytest.raises(ConnectionClosed, match="event loop is closed"):
            conn.send_threadsafe(b"nobody runs the loop")
    finally:
        own.stop()
        peer.close()


# ------------------------------------------------------------------ CallbackDispatcher


def test_dispatcher_runs_callbacks_in_order_one_at_a_time_off_the_loop(lt: LoopThread) -> None:
    d = CallbackDispatcher("ordered")
    results: list[int] = []
    threads: set[int] = set()
    active = 0
    max_active = 0
    lock = threading.Lock()

    def callback(i: int) -> None:
        nonlocal active, max_active
        with lock:
            active += 1
            max_active = max(max_active, active)
        assert d.in_callback()
        threads.add(threading.get_ident())
        if i % 100 == 0:
            time.sleep(0.001)  # invite overlap, if the dispatcher allowed any
        results.append(i)
        with lock:
            active -= 1

    # Submitted from the loop thread, as the transport's handlers would.
    lt.call(lambda: [d.submit(callback, i) for i in range(1000)], timeout=10)
    assert d.join(10)
    assert results == list(range(1000))
    assert max_active == 1
    assert lt.thread.ident not in threads
    assert threading.get_ident() not in threads
    assert not d.in_callback()
    assert d.pending == 0


def test_dispatcher_reports_exceptions_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []
    d = CallbackDispatcher("with-on-error", on_error=errors.append)
    ran: list[str] = []
    d.submit(lambda: ran.append("first"))
    d.submit(lambda: 1 / 0)
    d.submit(lambda: ran.append("after"))
    assert d.join(10)
    assert ran == ["first", "after"]
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)

    def failing_callback() -> None:
        raise ValueError("callback bug")

    logged = CallbackDispatcher("logged")
    with caplog.at_level(logging.ERROR, logger="polysock.callbacks"):
        logged.submit(failing_callback)
        logged.submit(lambda: ran.append("still runs"))
        assert logged.join(10)
    assert ran[-1] == "still runs"
    records = [r for r in caplog.records if r.name == "polysock.callbacks"]
    assert len(records) == 1
    assert records[0].exc_info is not None and isinstance(records[0].exc_info[1], ValueError)
    assert "failing_callback" in records[0].getMessage() and "logged" in records[0].getMessage()

    def broken_on_error(exc: BaseException) -> None:
        raise RuntimeError("on_error bug")

    caplog.clear()
    worse = CallbackDispatcher("broken-on-error", on_error=broken_on_error)
    with caplog.at_level(logging.ERROR, logger="polysock.callbacks"):
        worse.submit(failing_callback)
        worse.submit(lambda: ran.append("and still"))
        assert worse.join(10)
    assert ran[-1] == "and still"
    assert "on_error bug" in caplog.text and "callback bug" in caplog.text


def test_a_blocked_callback_does_not_delay_another_dispatcher() -> None:
    a, b = CallbackDispatcher("A"), CallbackDispatcher("B")
    release = threading.Event()
    a_started = threading.Event()
    a_after = threading.Event()
    b_ran = threading.Event()
    try:
        a.submit(lambda: (a_started.set(), release.wait(20)))
        a.submit(a_after.set)
        assert a_started.wait(5)
        b.submit(b_ran.set)
        assert b_ran.wait(5), "B's callback waited for A's blocked one"
        assert not release.is_set() and a_started.is_set()
        assert not a_after.is_set()  # A's own next callback waits its turn
        assert a.pending == 1
        assert a.join(0.2) is False
        assert b.join(5) is True
    finally:
        release.set()
    assert a.join(10) is True
    assert a_after.is_set()


def test_many_blocked_callbacks_each_get_a_worker_quickly() -> None:
    """Eight objects whose callbacks all block: the ninth object's callback still runs,
    after at most a few watchdog intervals per blocked worker, not never."""
    release = threading.Event()
    started = [threading.Event() for _ in range(8)]
    blockers = [CallbackDispatcher(f"blocked{i}") for i in range(8)]
    free = CallbackDispatcher("free")
    ran = threading.Event()
    try:
        for d, ev in zip(blockers, started, strict=True):
            d.submit(lambda ev=ev: (ev.set(), release.wait(30)))
        from polysock import runtime
        for ev in started:
            pool = runtime._pool
            assert ev.wait(10), ("a blocked callback kept another object's first one waiting",
                                 pool._count, pool._idle, len(pool._tasks), pool._taken,
                                 pool._watchdog)
        free.submit(ran.set)
        assert ran.wait(5)
    finally:
        release.set()
    for d in blockers:
        assert d.join(10)


def test_a_burst_of_quick_callbacks_does_not_start_a_thread_per_object() -> None:
    from polysock import runtime

    dispatchers = [CallbackDispatcher(f"d{i}") for i in range(300)]
    done = threading.Semaphore(0)
    before = runtime._pool.size
    for d in dispatchers:
        d.submit(done.release)
    for _ in dispatchers:
        assert done.acquire(timeout=10)
    # the loop-side burst is served by the workers already awake, plus a few the watchdog
    # may add on a loaded machine: nowhere near one per object
    assert runtime._pool.size - before < 20


def test_join_from_inside_a_callback_returns_at_once() -> None:
    d = CallbackDispatcher("self-join")
    answers: list[tuple[bool, float]] = []

    def callback() -> None:
        t0 = time.monotonic()
        answers.append((d.join(5), time.monotonic() - t0))

    d.submit(callback)
    assert d.join(10)
    assert answers and answers[0][0] is False and answers[0][1] < 1


# ------------------------------------------------------------------ interpreter exit


SCRIPT = textwrap.dedent(
    """
    import threading
    import polysock.runtime as r
    from polysock import Handler

    assert not any(t.name == "polysock-loop" for t in threading.enumerate()), "eager start"

    class Echo(Handler):
        def messages_received(self, conn, messages):
            conn.write_many(messages)

    got = threading.Event()

    class Client(Handler):
        def messages_received(self, conn, messages):
            got.set()

    server = r.serve_sync(handler_factory=Echo, host="127.0.0.1")
    conn = r.connect_sync("127.0.0.1", server.port, handler=Client())
    assert [t.name for t in threading.enumerate()].count("polysock-loop") == 1
    conn.send_threadsafe(b"hi")
    assert got.wait(10)
    rt = r.get_runtime()
    print("LOOP", type(rt.loop).__module__, flush=True)
    rt.at_exit(lambda: print("AT_EXIT sync", flush=True))

    async def close_everything():
        await conn.close(timeout=2)
        await server.aclose()
        print("AT_EXIT async", conn.state, flush=True)

    rt.at_exit(close_everything)
    print("END OF SCRIPT", flush=True)
    # no stop(): the runtime must neither keep the process alive nor skip the callbacks
    """
)


def test_the_runtime_lets_the_interpreter_exit_and_runs_at_exit_callbacks(loop_kind: str) -> None:
    env = dict(os.environ)
    if loop_kind == "asyncio":
        env["POLYSOCK_NO_UVLOOP"] = "1"
    else:
        env.pop("POLYSOCK_NO_UVLOOP", None)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("LOOP ") and (("uvloop" in lines[0]) == (loop_kind == "uvloop"))
    assert lines[1:] == ["END OF SCRIPT", "AT_EXIT sync", "AT_EXIT async closed"], proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 20

