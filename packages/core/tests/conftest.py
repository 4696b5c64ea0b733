"""Shared fixtures of the core's tests."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

#: event loops the socket tests run on: asyncio's always, uvloop's when it is installed
LOOPS = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


def run_on(kind: str, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    """``asyncio.run`` on a fresh loop of ``kind``, bounded by ``timeout`` seconds."""
    loop = _new_loop(kind)

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    try:
        return loop.run_until_complete(bounded())
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The name of the event loop a test runs on ("asyncio" or "uvloop")."""
    return str(request.param)


@pytest.fixture
def run(loop_kind: str) -> Callable[..., Any]:
    """``run(coro, timeout=30)``: run a coroutine to completion on a fresh event loop of
    each kind in :data:`LOOPS` (the test is parametrized over them); every run is bounded."""

    def _run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return run_on(loop_kind, coro, timeout)

    return _run
