"""The shared background event loop and the ordered callback dispatcher.

Legacy APIs are blocking and callback-driven; polysock runs their sockets on *one* event-loop
thread per process (started on first use, stopped cleanly at interpreter exit) instead of a
thread per connection. User callbacks never run on that thread: a
:class:`CallbackDispatcher` runs each object's callbacks in order, one at a time, on worker
threads drawn from an elastic pool, so a callback that is slow, blocks or raises holds up only
its own object.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .transport import Connection, Server, connect, serve

__all__ = [
    "CallbackDispatcher",
    "LoopThread",
    "connect_sync",
    "get_runtime",
    "new_event_loop",
    "serve_sync",
]

log = logging.getLogger("polysock.runtime")
callback_log = logging.getLogger("polysock.callbacks")
T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (``polysock[fast]``), asyncio's otherwise.

    ``POLYSOCK_NO_UVLOOP=1`` forces asyncio's loop.
    """
    if os.environ.get("POLYSOCK_NO_UVLOOP", "").strip() not in ("1", "true", "yes"):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()  # type: ignore[no-any-return, unused-ignore]
    return asyncio.new_event_loop()


class LoopThread:
    """An event loop running forever in a daemon thread, with blocking entry points."""

    def __init__(self, name: str = "polysock-loop") -> None:
        self.loop = new_event_loop()
        self._exit_callbacks: list[Callable[[], Awaitable[None] | None]] = []
        self._started = threading.Event()
        self._stopped = False
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in tasks:
                    task.cancel()
                if tasks:
                    self.loop.run_until_complete(
                        asyncio.wait(tasks, timeout=1.0)
                    )
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self._stopped

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread soon (from any thread, never blocks)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and block until its result (or ``TimeoutError``)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("LoopThread.run() would deadlock: called on the loop thread")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"operation did not finish within {timeout} s") from None

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run a plain function on the loop thread and return its result (blocking)."""
        if self.in_loop_thread():
            return fn(*args)

        async def _call() -> T:
            return fn(*args)

        return self.run(_call(), timeout)

    def at_exit(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``callback`` on the loop when the runtime stops (flush queues and the like).

        A coroutine result is awaited; all exit callbacks together get at most the ``timeout``
        given to :meth:`stop` (2 s at interpreter exit).
        """
        self._exit_callbacks.append(callback)

    def stop(self, timeout: float = 2.0) -> None:
        """Run the exit callbacks, stop the loop and join the thread (idempotent)."""
        if self._stopped or not self.thread.is_alive():
            self._stopped = True
            return
        self._stopped = True
        callbacks, self._exit_callbacks = self._exit_callbacks, []

        async def _finish() -> None:
            pending = []
            for cb in callbacks:
                try:
                    result = cb()
                except Exception:
                    log.exception("polysock: exit callback %r failed", cb)
                    continue
                if result is not None:
                    pending.append(asyncio.ensure_future(result))
            if pending:
                done, not_done = await asyncio.wait(pending, timeout=timeout)
                for task in not_done:
                    task.cancel()
                for task in done:
                    if task.exception() is not None:
                        log.error("polysock: exit callback failed: %r", task.exception())

        if not self.in_loop_thread():
            try:
                asyncio.run_coroutine_threadsafe(_finish(), self.loop).result(timeout + 1.0)
            except Exception:
                log.exception("polysock: runtime shutdown did not finish cleanly")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout + 1.0)
        else:  # pragma: no cover - stop() from a loop callback: no join possible
            self.loop.stop()


_runtime: LoopThread | None = None
_runtime_lock = threading.Lock()
_atexit_registered = False


def get_runtime() -> LoopThread:
    """The process's shared loop thread, started on first use."""
    global _runtime, _atexit_registered
    rt = _runtime
    if rt is not None and rt.running:
        return rt
    with _runtime_lock:
        rt = _runtime
        if rt is None or not rt.running:
            rt = _runtime = LoopThread()
            if not _atexit_registered:
                atexit.register(_stop_at_exit)
                _atexit_registered = True
    return rt


def _stop_at_exit() -> None:
    rt = _runtime
    if rt is not None:
        rt.stop(timeout=2.0)


def connect_sync(
    host: str, port: int, *, timeout: float | None = 30.0, **options: Any
) -> Connection:
    """:func:`polysock.connect` on the shared loop, for threaded code (blocks until ready)."""
    rt = get_runtime()
    # The coroutine's own timeout fires first; the extra second only guards the hand-off.
    return rt.run(
        connect(host, port, timeout=timeout, **options),
        None if timeout is None else timeout + 1.0,
    )


def serve_sync(*args: Any, **options: Any) -> Server:
    """:func:`polysock.serve` on the shared loop, for threaded code."""
    return get_runtime().run(serve(*args, **options), 30.0)


# -------------------------------------------------------------------- callbacks


class _WorkerPool:
    """Threads that run dispatcher drains, woken as few times as possible.

    A task submitted while a worker is awake is left to that worker (it takes the next task
    before it sleeps): a burst from the loop costs one wake-up, not one per connection.
    So that a callback that blocks never holds up other objects' callbacks, a watchdog
    wakes (or starts) another worker when queued tasks made no progress for ``stall``
    seconds. Idle workers retire after ``idle_timeout``.
    """

    def __init__(self, idle_timeout: float = 30.0, stall: float = 0.05) -> None:
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # workers wait here
        self._watch = threading.Condition(lock)  # the watchdog waits here
        self._idle = 0  # workers waiting for tasks
        self._count = 0  # workers alive
        self._taken = 0  # tasks started so far: the watchdog's progress counter
        self._idle_timeout = idle_timeout
        self._stall = stall
        self._watchdog: threading.Thread | None = None
        self._watchdog_sleeping = False

    @property
    def size(self) -> int:
        return self._count

    def submit(self, fn: Callable[[], None]) -> None:
        with self._cond:
            self._tasks.append(fn)
            self._arm_watchdog()
            if self._count - self._idle > 0:
                return  # an awake worker takes it before it sleeps
            if self._idle:
                self._cond.notify()
                return
            self._count += 1
        self._spawn()

    def _arm_watchdog(self) -> None:
        # lock held: make sure someone notices if the workers get stuck in callbacks
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watchdog_main, name="polysock-callbacks-watchdog", daemon=True
            )
            self._watchdog.start()
        elif self._watchdog_sleeping:
            self._watchdog_sleeping = False
            self._watch.notify()

    def _spawn(self) -> None:
        threading.Thread(target=self._worker, name="polysock-callbacks", daemon=True).start()

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._tasks:
                    self._idle += 1
                    notified = self._cond.wait(self._idle_timeout)
                    self._idle -= 1
                    if not notified and not self._tasks:
                        self._count -= 1
                        return
                fn = self._tasks.popleft()
                self._taken += 1
            fn()

    def _watchdog_main(self) -> None:
        with self._cond:
            while True:
                while not self._tasks:
                    self._watchdog_sleeping = True
                    self._watch.wait()
                self._watchdog_sleeping = False
                seen = self._taken
                self._watch.wait(self._stall)
                if self._tasks and self._taken == seen:
                    # Every awake worker is stuck in a callback: add one.
                    if self._idle:
                        self._cond.notify()
                    else:
                        self._count += 1
                        self._spawn()


_pool = _WorkerPool()


class CallbackDispatcher:
    """Runs one object's callbacks in submission order, one at a time, off the loop thread.

    An exception from a callback goes to ``on_error(exc)`` when given, otherwise it is logged
    with its traceback on the ``polysock.callbacks`` logger; it never stops later callbacks.
    """

    def __init__(
        self,
        name: str = "",
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        self.name = name
        self.on_error = on_error
        self._queue: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._lock = threading.Lock()
        self._running = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue ``fn(*args)`` (from any thread, never blocks)."""
        with self._lock:
            self._queue.append((fn, args))
            if self._running:
                return
            self._running = True
            self._idle.clear()
        _pool.submit(self._drain)

    def _drain(self) -> None:
        self._thread = threading.current_thread()
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._running = False
                        self._idle.set()
                        return
                    fn, args = self._queue.popleft()
                try:
                    fn(*args)
                except BaseException as exc:  # a callback's SystemExit must not kill a worker
                    self._report(exc, fn)
        finally:
            self._thread = None

    def _report(self, exc: BaseException, fn: Callable[..., object]) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc)
                return
            except Exception:
                callback_log.exception("polysock: on_error handler of %s failed", self.name)
        callback_log.error(
            "polysock: callback %s of %s raised", getattr(fn, "__qualname__", fn), self.name,
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    @property
    def pending(self) -> int:
        """Callbacks queued and not yet started."""
        return len(self._queue)

    def in_callback(self) -> bool:
        """True when called from inside one of this dispatcher's callbacks."""
        return self._thread is threading.current_thread()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued callback has run; False on timeout. From inside a
        callback it returns at once (it could never finish)."""
        if self.in_callback():
            return False
        return self._idle.wait(timeout)
