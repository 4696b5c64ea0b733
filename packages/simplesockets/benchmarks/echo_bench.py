"""Echo round trips per second: polysock-simplesockets against the original 0.4.0.

Usage::

    python benchmarks/echo_bench.py [--clients 200] [--rounds 200] [--size 64]
        [--original-python /path/to/python]

Each server runs ``echo_server.py`` (the same script for both) in its own process, under the
interpreter that has that implementation installed: this interpreter for polysock, the one
given by ``--original-python`` (or ``POLYSOCK_ORIGINAL_SIMPLESOCKETS_PYTHON``) for the
original, which needs ``simplesockets==0.4.0`` and ``pycryptodome``. The load generator is
this process (on uvloop when installed): ``--clients`` raw asyncio connections, each doing
``--rounds`` sequential round trips of ``--size`` bytes (send, read until the whole echo is
back). All clients connect and do one warm-up round trip before the clock starts. Reported
per server: round trips/s, the server process's CPU seconds during the timed part, and its
thread count under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENV_ORIGINAL = "POLYSOCK_ORIGINAL_SIMPLESOCKETS_PYTHON"


@dataclass
class Result:
    name: str
    round_trips: int
    seconds: float
    cpu_seconds: float
    threads: int

    @property
    def rate(self) -> float:
        return self.round_trips / self.seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _EchoClient(asyncio.Protocol):
    """One load connection: sends, counts the echo back, sends again (no stream layer, so
    the load generator stays cheaper than the servers it measures)."""

    def __init__(self, payload: bytes, rounds: int, ready: asyncio.Future[None],
                 go: asyncio.Event, done: asyncio.Future[None]) -> None:
        self.payload = payload
        self.left = rounds + 1  # one warm-up round trip first
        self.ready = ready
        self.go = go
        self.done = done
        self.got = 0
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.payload)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got < len(self.payload):
            return
        self.got -= len(self.payload)
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)
            self.transport.close()  # type: ignore[union-attr]
        elif not self.ready.done():
            self.ready.set_result(None)
            self.waiter = asyncio.ensure_future(self._after_go())
        else:
            self.transport.write(self.payload)  # type: ignore[union-attr]

    async def _after_go(self) -> None:
        await self.go.wait()
        self.transport.write(self.payload)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed by the server"))


async def _load(  # noqa: PLR0917
    port: int, clients: int, rounds: int, size: int, proc: subprocess.Popen[str], name: str
) -> Result:
    loop = asyncio.get_running_loop()
    payload = os.urandom(size)
    go = asyncio.Event()
    readies = [loop.create_future() for _ in range(clients)]
    dones = [loop.create_future() for _ in range(clients)]
    for ready, done in zip(readies, dones, strict=True):
        await loop.create_connection(
            lambda r=ready, d=done: _EchoClient(payload, rounds, r, go, d), "127.0.0.1", port
        )
    await asyncio.wait_for(asyncio.gather(*readies), 120)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("threads\n")
    proc.stdin.flush()
    threads = int(await asyncio.to_thread(proc.stdout.readline))
    cpu0 = _cpu_seconds(proc.pid)
    start = time.perf_counter()
    go.set()
    await asyncio.wait_for(asyncio.gather(*dones), 600)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds(proc.pid) - cpu0
    return Result(name, clients * rounds, seconds, cpu, threads)


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_one(  # noqa: PLR0917
    name: str, python: str, clients: int, rounds: int, size: int, style: str
) -> Result:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(
        [python, str(HERE / "echo_server.py"), style],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        return _run(_load(port, clients, rounds, size, proc, name))
    finally:
        proc.kill()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--original-python", default=os.environ.get(ENV_ORIGINAL))
    parser.add_argument("--only", choices=["polysock", "original"])
    parser.add_argument("--style", choices=["callback", "poll", "both"], default="both",
                        help="how the echo server answers (see echo_server.py)")
    args = parser.parse_args(argv)
    styles = ["callback", "poll"] if args.style == "both" else [args.style]
    print(f"{args.clients} clients x {args.rounds} round trips of {args.size} bytes")
    for style in styles:
        results = []
        if args.only != "original":
            results.append(run_one("polysock-simplesockets", sys.executable, args.clients,
                                   args.rounds, args.size, style))
        if args.only != "polysock":
            if not args.original_python:
                print(f"original skipped: give --original-python or set {ENV_ORIGINAL}")
            else:
                results.append(run_one("simplesockets 0.4.0", args.original_python,
                                       args.clients, args.rounds, args.size, style))
        for r in results:
            print(f"{style:8s} {r.name:24s} {r.rate:8.0f} round trips/s {r.seconds:6.2f} s  "
                  f"server CPU {r.cpu_seconds:6.2f} s  server threads {r.threads}")
        if len(results) == 2:
            print(f"{style:8s} ratio polysock/original: {results[0].rate / results[1].rate:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
