"""The polysock benchmark: the core's async API against a raw blocking-socket baseline.

Run ``polysock bench`` (or ``python -m polysock.bench``). Every measurement starts a server
process and a client process on loopback; the raw baseline and polysock run in the same
invocation, several times each, and the table shows medians and the ratio polysock / raw, so
that a noisy machine moves both sides alike.

Workloads (both sides frame with a 4-byte big-endian length prefix):

W1  32-byte messages one way: the client sends N, the server acknowledges the last; msgs/s.
    Raw: one ``sendall`` per message, the server ``recv_into`` header then body.
W2  32-byte ping-pong, both processes pinned to one CPU; round trips/s, p50 and p99 latency.
W3  64 messages of 1 MiB one way; MB/s.
W4  200 connections x 200 round trips against one server; round trips/s and the server's
    peak RSS. Raw: a thread per connection on both sides (the classic blocking design).

When pyzmq is installed, W1-W3 also run over a ZeroMQ PAIR socket (same message sizes and
counts) and the table adds its figure and polysock's ratio to it. Installed flavours add
their own scenarios through the ``polysock_add_bench_scenarios`` hook (:class:`BenchScenario`):
each is compared with the raw baseline of the same shape, run with the scenario's parameters.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

HEADER = struct.Struct(">I")
ACK = b"!"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    unit: str
    target: float  # minimum ratio polysock / raw
    params: dict[str, int] = field(default_factory=dict)
    pin_one_cpu: bool = False


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", "32 B one way", "msg/s", 15.0, {"n": 400_000, "size": 32}),
    "W2": Workload("W2", "32 B ping-pong, 1 CPU", "rt/s", 0.9, {"n": 20_000, "size": 32}, True),
    "W3": Workload("W3", "64 x 1 MiB one way", "MB/s", 0.9, {"n": 64, "size": 1 << 20}),
    "W4": Workload("W4", "200 conns x 200 rt", "rt/s", 1.2, {"conns": 200, "n": 200, "size": 32}),
}
QUICK_SCALE = {"W1": 0.25, "W2": 0.25, "W3": 0.5, "W4": 0.25}


@dataclass(frozen=True)
class BenchScenario:
    """A flavour's own benchmark (what ``polysock_add_bench_scenarios`` returns).

    ``server`` and ``client`` name module-level functions (``"module:function"``) run in
    separate processes: ``server(params) -> (port, finish)`` starts an echo/sink server on
    127.0.0.1 and returns its port and a ``finish()`` that blocks until the client is done
    and the server stopped; ``client(params, port) -> {"elapsed": s, "count": n}`` (or
    ``"bytes"`` for a MB/s baseline) runs the workload with the flavour's public API.
    ``baseline`` is the raw workload of the same shape (W1 one way, W2 ping-pong, W3 bulk,
    W4 many connections), run with ``params`` (``n``, ``size``, ``conns``) for the ratio.
    """

    name: str
    flavour: str
    baseline: str
    server: str
    client: str
    params: Mapping[str, int] = field(default_factory=dict)
    target: float | None = None


def _load(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def collect_scenarios() -> list[BenchScenario]:
    from . import plugins

    found: list[BenchScenario] = []
    for result in plugins.get_plugin_manager().hook.polysock_add_bench_scenarios():
        found.extend(result or ())
    return found


def _zmq_available() -> bool:
    return importlib.util.find_spec("zmq") is not None


def _peak_rss_kib() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform != "darwin" else rss // 1024)


def _pin(enabled: bool) -> None:
    if enabled and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})


# ==================================================================== raw baseline


def _recv_exact(sock: socket.socket, view: memoryview, n: int) -> None:
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n], n - got)
        if not k:
            raise ConnectionError("peer closed")
        got += k


def _raw_recv_msg(sock: socket.socket, hdr: memoryview, body: memoryview) -> int:
    _recv_exact(sock, hdr, 4)
    (n,) = HEADER.unpack(hdr)
    _recv_exact(sock, body, n)
    return int(n)


def _raw_listener() -> socket.socket:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    return lsock


def _raw_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _raw_echo(sock: socket.socket, size: int) -> None:
    hdr = memoryview(bytearray(4))
    body = memoryview(bytearray(max(size, 1)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        while True:
            try:
                n = _raw_recv_msg(sock, hdr, body)
            except ConnectionError:
                return
            sock.sendall(HEADER.pack(n) + body[:n])


def raw_server(wl: Workload, p: dict[str, int], pipe: Pipe) -> None:
    lsock = _raw_listener()
    pipe.send(lsock.getsockname()[1])
    size = p["size"]
    if wl.key in ("W1", "W3"):
        sock, _ = lsock.accept()
        hdr = memoryview(bytearray(4))
        body = memoryview(bytearray(size))
        for _ in range(p["n"]):
            _raw_recv_msg(sock, hdr, body)
        sock.sendall(HEADER.pack(1) + ACK)
        sock.recv(1)
        sock.close()
    elif wl.key == "W2":
        sock, _ = lsock.accept()
        _raw_echo(sock, size)
    else:
        threads = []
        for _ in range(p["conns"]):
            sock, _ = lsock.accept()
            t = threading.Thread(target=_raw_echo, args=(sock, size))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    lsock.close()
    pipe.send({"server_rss_kib": _peak_rss_kib()})


def raw_client(wl: Workload, p: dict[str, int], port: int) -> dict[str, Any]:
    size = p["size"]
    payload = b"x" * size
    framed = HEADER.pack(size) + payload
    hdr = memoryview(bytearray(4))
    body = memoryview(bytearray(max(size, 1)))
    if wl.key in ("W1", "W3"):
        sock = _raw_connect(port)
        n = p["n"]
        t0 = time.perf_counter()
        if wl.key == "W1":
            for _ in range(n):
                sock.sendall(framed)
        else:
            for _ in range(n):
                sock.sendall(HEADER.pack(size))
                sock.sendall(payload)
        _raw_recv_msg(sock, hdr, body)
        elapsed = time.perf_counter() - t0
        sock.close()
        return {"elapsed": elapsed, "count": n, "bytes": n * size}
    if wl.key == "W2":
        sock = _raw_connect(port)
        n = p["n"]
        lat = []
        clock = time.perf_counter
        t0 = clock()
        for _ in range(n):
            t = clock()
            sock.sendall(framed)
            _raw_recv_msg(sock, hdr, body)
            lat.append(clock() - t)
        elapsed = clock() - t0
        sock.close()
        return {"elapsed": elapsed, "count": n, "latencies": lat}
    # W4: a thread per connection
    n = p["n"]
    conns = p["conns"]
    socks = [_raw_connect(port) for _ in range(conns)]
    start = threading.Barrier(conns + 1)

    def worker(sock: socket.socket) -> None:
        h = memoryview(bytearray(4))
        b = memoryview(bytearray(max(size, 1)))
        start.wait()
        for _ in range(n):
            sock.sendall(framed)
            _raw_recv_msg(sock, h, b)
        sock.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in socks]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    start.wait()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "count": n * conns}


# ==================================================================== polysock


async def core_server(wl: Workload, p: dict[str, int], pipe: Pipe) -> None:
    import polysock

    done = asyncio.get_running_loop().create_future()
    finished = 0
    expected = p.get("conns", 1)

    async def one_way(conn: polysock.Connection) -> None:
        remaining = p["n"]
        while remaining > 0:
            remaining -= len(await conn.recv_batch())
        await conn.send(ACK)
        await _until_closed(conn)

    async def echo(conn: polysock.Connection) -> None:
        try:
            while True:
                batch = await conn.recv_batch()
                await conn.send_many(batch)
        except polysock.ConnectionClosed:
            pass

    async def session(conn: polysock.Connection) -> None:
        nonlocal finished
        try:
            await (one_way(conn) if wl.key in ("W1", "W3") else echo(conn))
        finally:
            finished += 1
            if finished == expected and not done.done():
                done.set_result(None)

    server = await polysock.serve(session, "127.0.0.1", 0, backlog=512)
    pipe.send(server.port)
    await done
    await server.aclose()
    pipe.send({"server_rss_kib": _peak_rss_kib()})


async def _until_closed(conn: Any) -> None:
    import polysock

    try:
        while True:
            await conn.recv_batch()
    except polysock.ConnectionClosed:
        pass


async def core_client(wl: Workload, p: dict[str, int], port: int) -> dict[str, Any]:
    import polysock

    size = p["size"]
    payload = b"x" * size
    if wl.key in ("W1", "W3"):
        conn = await polysock.connect("127.0.0.1", port)
        n = p["n"]
        t0 = time.perf_counter()
        send = conn.send
        for _ in range(n):
            await send(payload)
        await conn.recv()
        elapsed = time.perf_counter() - t0
        await conn.close()
        return {"elapsed": elapsed, "count": n, "bytes": n * size}
    if wl.key == "W2":
        conn = await polysock.connect("127.0.0.1", port)
        n = p["n"]
        lat = []
        clock = time.perf_counter
        send, recv = conn.send, conn.recv
        t0 = clock()
        for _ in range(n):
            t = clock()
            await send(payload)
            await recv()
            lat.append(clock() - t)
        elapsed = clock() - t0
        await conn.close()
        return {"elapsed": elapsed, "count": n, "latencies": lat}
    n = p["n"]
    conns = await asyncio.gather(
        *(polysock.connect("127.0.0.1", port) for _ in range(p["conns"]))
    )

    async def worker(conn: polysock.Connection) -> None:
        for _ in range(n):
            await conn.send(payload)
            await conn.recv()
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "count": n * p["conns"]}


# ==================================================================== pyzmq (optional)


def zmq_server(wl: Workload, p: dict[str, int], pipe: Pipe) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    pipe.send(port)
    if wl.key == "W2":
        for _ in range(p["n"]):
            sock.send(sock.recv(copy=False), copy=False)
    else:
        for _ in range(p["n"]):
            sock.recv(copy=False)
        sock.send(ACK)
    sock.close(linger=1000)
    ctx.term()
    pipe.send({"server_rss_kib": _peak_rss_kib()})


def zmq_client(wl: Workload, p: dict[str, int], port: int) -> dict[str, Any]:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.connect(f"tcp://127.0.0.1:{port}")
    size, n = p["size"], p["n"]
    payload = b"x" * size
    result: dict[str, Any]
    if wl.key == "W2":
        lat = []
        clock = time.perf_counter
        t0 = clock()
        for _ in range(n):
            t = clock()
            sock.send(payload)
            sock.recv()
            lat.append(clock() - t)
        result = {"elapsed": clock() - t0, "count": n, "latencies": lat}
    else:
        t0 = time.perf_counter()
        if size < 65536:
            for _ in range(n):
                sock.send(payload)
        else:
            for _ in range(n):
                sock.send(payload, copy=False)
        sock.recv()
        result = {"elapsed": time.perf_counter() - t0, "count": n, "bytes": n * size}
    sock.close(linger=1000)
    ctx.term()
    return result


# ==================================================================== flavour scenarios


def scenario_server(spec: tuple[str, str], p: dict[str, int], pipe: Pipe) -> None:
    port, finish = _load(spec[0])(p)
    pipe.send(port)
    finish()
    pipe.send({"server_rss_kib": _peak_rss_kib()})


def scenario_client(spec: tuple[str, str], p: dict[str, int], port: int) -> dict[str, Any]:
    result: dict[str, Any] = _load(spec[1])(p, port)
    return result


# ==================================================================== process plumbing


def _run_async(coro: Any) -> Any:
    from .runtime import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


Impl = str | tuple[str, str]  # "raw" | "core" | "zmq" | a scenario's (server, client) paths


def _server_main(impl: Impl, key: str, p: dict[str, int], pipe: Pipe) -> None:
    wl = WORKLOADS[key]
    _pin(wl.pin_one_cpu)
    if isinstance(impl, tuple):
        scenario_server(impl, p, pipe)
    elif impl == "raw":
        raw_server(wl, p, pipe)
    elif impl == "zmq":
        zmq_server(wl, p, pipe)
    else:
        _run_async(core_server(wl, p, pipe))


def _client_main(impl: Impl, key: str, p: dict[str, int], port: int, pipe: Pipe) -> None:
    wl = WORKLOADS[key]
    _pin(wl.pin_one_cpu)
    result: dict[str, Any]
    if isinstance(impl, tuple):
        result = scenario_client(impl, p, port)
    elif impl == "raw":
        result = raw_client(wl, p, port)
    elif impl == "zmq":
        result = zmq_client(wl, p, port)
    else:
        result = _run_async(core_client(wl, p, port))
    pipe.send(result)


def _recv(pipe: Pipe, timeout: float, what: str) -> Any:
    if not pipe.poll(timeout):
        raise TimeoutError(f"benchmark {what} did not answer within {timeout} s")
    return pipe.recv()


def run_once(impl: Impl, key: str, p: dict[str, int], timeout: float = 120.0) -> dict[str, Any]:
    """One measurement: a server process and a client process; returns the figures."""
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    c_parent, c_child = ctx.Pipe()
    server = ctx.Process(target=_server_main, args=(impl, key, p, s_child), daemon=True)
    server.start()
    client = None
    try:
        port = _recv(s_parent, 30, f"{impl} server")
        client = ctx.Process(target=_client_main, args=(impl, key, p, port, c_child), daemon=True)
        client.start()
        result: dict[str, Any] = _recv(c_parent, timeout, f"{impl} client")
        result.update(_recv(s_parent, 30, f"{impl} server"))
        return result
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)


def _figure(key: str, result: dict[str, Any]) -> float:
    if key == "W3":
        return float(result["bytes"] / result["elapsed"] / 1e6)
    return float(result["count"] / result["elapsed"])


@dataclass
class Row:
    key: str
    title: str
    unit: str
    target: float | None  # None: measured, no target set
    raw: float
    core: float
    extra: dict[str, Any]
    zmq: float | None = None

    @property
    def ratio(self) -> float:
        return self.core / self.raw if self.raw else float("inf")

    @property
    def zmq_ratio(self) -> float | None:
        return self.core / self.zmq if self.zmq else None

    @property
    def ok(self) -> bool:
        return self.target is None or self.ratio >= self.target


def run(
    keys: list[str],
    runs: int = 3,
    *,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    zmq: bool | None = None,
    scenarios: list[BenchScenario] | None = None,
) -> list[Row]:
    """Measure ``keys`` (and ``scenarios``), ``runs`` times each side, interleaved."""
    if zmq is None:
        zmq = _zmq_available()
    jobs: list[tuple[str, str, Workload, dict[str, int], dict[str, Impl], float | None]] = []
    for key in keys:
        wl = WORKLOADS[key]
        p = dict(wl.params)
        if quick:
            p["n"] = max(1, int(p["n"] * QUICK_SCALE[key]))
        impls: dict[str, Impl] = {"raw": "raw", "core": "core"}
        if zmq and key != "W4":
            impls["zmq"] = "zmq"
        jobs.append((key, wl.title, wl, p, impls, wl.target))
    for sc in scenarios or ():
        wl = WORKLOADS[sc.baseline]
        p = {**wl.params, **sc.params}
        if quick:
            p["n"] = max(1, int(p["n"] * QUICK_SCALE[sc.baseline]))
        impls = {"raw": "raw", "core": (sc.server, sc.client)}
        target = sc.target  # a flavour's own goal; the core's targets are not the flavour's
        jobs.append((f"{sc.flavour}:", sc.name, wl, p, impls, target))
    return [_measure(job, runs, progress) for job in jobs]


def _measure(
    job: tuple[str, str, Workload, dict[str, int], dict[str, Impl], float | None],
    runs: int,
    progress: Callable[[str], None] | None,
) -> Row:
    label, title, wl, p, impls, target = job
    key = wl.key
    figures: dict[str, list[float]] = {name: [] for name in impls}
    extra: dict[str, list[float]] = {}
    for i in range(runs):
        for impl, spec in impls.items():  # interleaved: drift hits every side alike
            if progress:
                progress(f"{label} {title}: run {i + 1}/{runs}, {impl}")
            result = run_once(spec, key, p)
            figures[impl].append(_figure(key, result))
            if "latencies" in result:
                lat = sorted(result["latencies"])
                extra.setdefault(f"{impl}_p50_us", []).append(lat[len(lat) // 2] * 1e6)
                extra.setdefault(f"{impl}_p99_us", []).append(lat[int(len(lat) * 0.99)] * 1e6)
            if key == "W4":
                extra.setdefault(f"{impl}_server_rss_mib", []).append(
                    result["server_rss_kib"] / 1024
                )
    return Row(
        label, title, wl.unit, target,
        statistics.median(figures["raw"]), statistics.median(figures["core"]),
        {k: round(statistics.median(v), 1) for k, v in extra.items()},
        statistics.median(figures["zmq"]) if figures.get("zmq") else None,
    )


def loop_name() -> str:
    from .runtime import new_event_loop

    loop = new_event_loop()
    try:
        return type(loop).__module__.split(".")[0]
    finally:
        loop.close()


def format_table(rows: list[Row], runs: int) -> str:
    with_zmq = any(r.zmq is not None for r in rows)
    zmq_head = " pyzmq | vs pyzmq |" if with_zmq else ""
    zmq_rule = "---:|---:|" if with_zmq else ""
    lines = [
        f"polysock bench: medians of {runs} runs, server and client in separate processes, "
        f"loop={loop_name()}, python {sys.version.split()[0]}",
        "",
        f"| workload | unit | raw socket | polysock | ratio | target | ok |{zmq_head} notes |",
        f"|---|---|---:|---:|---:|---:|---|{zmq_rule}---|",
    ]
    for r in rows:
        notes = ", ".join(f"{k}={v}" for k, v in r.extra.items())
        target = "-" if r.target is None else f">= {r.target}x"
        ok = "-" if r.target is None else ("yes" if r.ok else "NO")
        zmq = ""
        if with_zmq:
            zr = r.zmq_ratio
            zmq = (f" {r.zmq:,.0f} | {zr:.2f}x |" if r.zmq is not None and zr is not None
                   else " - | - |")
        lines.append(
            f"| {r.key} {r.title} | {r.unit} | {r.raw:,.0f} | {r.core:,.0f} | "
            f"{r.ratio:.2f}x | {target} | {ok} |{zmq} {notes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polysock bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--workloads", default="W1,W2,W3,W4",
                        help="comma-separated subset of W1,W2,W3,W4 (default: all)")
    parser.add_argument("-r", "--runs", type=int, default=3, help="runs per side (median)")
    parser.add_argument("--quick", action="store_true", help="smaller message counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a ratio misses its target")
    parser.add_argument("--no-flavours", action="store_true",
                        help="skip the scenarios installed flavours contribute")
    parser.add_argument("--no-zmq", action="store_true", help="skip pyzmq even if installed")


def run_from_args(args: argparse.Namespace) -> int:
    keys = [k.strip().upper() for k in args.workloads.split(",") if k.strip()]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        print(f"polysock bench: unknown workload(s) {', '.join(unknown)}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        if sys.stderr.isatty():
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    scenarios = [] if args.no_flavours else collect_scenarios()
    rows = run(keys, runs=args.runs, quick=args.quick, progress=progress,
               zmq=False if args.no_zmq else None, scenarios=scenarios)
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(
            {"loop": loop_name(), "python": sys.version.split()[0], "runs": args.runs,
             "results": [{"workload": r.key, "title": r.title, "unit": r.unit, "raw": r.raw,
                          "polysock": r.core, "ratio": r.ratio, "target": r.target,
                          "ok": r.ok, "pyzmq": r.zmq, "ratio_to_pyzmq": r.zmq_ratio,
                          **r.extra} for r in rows]},
            indent=2,
        ))
    else:
        print(format_table(rows, args.runs))
    return 1 if args.check and not all(r.ok for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
