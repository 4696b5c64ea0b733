"""The ``polysock`` command.

``polysock demo``     a server and a client on loopback exchange messages through every
                      installed framing, and say what went over the wire
``polysock plugins``  what is installed: plugins, their distributions, what they register
``polysock serve``    a server that prints or echoes each decoded message (any framing)
``polysock send``     a client: send messages or stdin lines, print what comes back
``polysock matrix``   every installed flavour's server against every client of its wire
``polysock bench``    the benchmark against a raw-socket baseline (see polysock.bench)

Errors are one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__, bench, matrix, netcat, plugins
from .errors import ConnectionClosed, PolysockError
from .framing import Framer
from .runtime import new_event_loop
from .transport import Connection, connect, serve


def _fail(message: str) -> int:
    print(f"polysock: error: {message}", file=sys.stderr)
    return 1


# -------------------------------------------------------------------- plugins


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = plugins.list()
    loaded = [i for i in infos if i.loaded]
    failed = [i for i in infos if not i.loaded]
    rows = [
        (
            i.name,
            i.distribution or "-",
            i.version or "-",
            ", ".join(i.framers) or "-",
            ", ".join(i.handshakes) or "-",
            ", ".join(i.flavours) or "-",
        )
        for i in loaded
    ]
    print(_table(("plugin", "distribution", "version", "framers", "handshakes", "flavours"), rows))
    if failed:
        print("\nfailed to load:")
        for i in failed:
            print(f"  {i.name}: {i.error}")
    return 0


# -------------------------------------------------------------------- demo


@dataclass
class _DemoCase:
    framing: str
    options: dict[str, Any]
    note: str


def _demo_cases() -> list[_DemoCase]:
    pm = plugins.get_plugin_manager()
    cases = [
        _DemoCase("length-prefix", {}, "4-byte big-endian length, then the payload"),
        _DemoCase("length-prefix", {"length_size": 2, "byteorder": "little", "magic": b"PS"},
                  "magic 'PS', 2-byte little-endian length"),
        _DemoCase("delimiter", {"delimiter": b"\n"}, "payload, then a newline"),
        _DemoCase("delimiter", {"delimiter": b"\0"}, "payload, then a NUL byte (tcpcom's wire)"),
        _DemoCase("raw", {}, "no framing: a byte stream"),
    ]
    builtin = {"length-prefix", "delimiter", "raw"}
    seen = set(builtin)
    for name, (flavour, _plugin) in sorted(pm.registry.flavours.items()):
        cases.append(_DemoCase(flavour.framing, dict(flavour.framing_options),
                               f"the {name} flavour's wire format"))
        seen.add(flavour.framing)
    for name in sorted(set(pm.registry.framers) - seen):
        cases.append(_DemoCase(name, {}, f"framing {name!r} from a plugin, default options"))
    return cases


_DEMO_MESSAGES: list[bytes] = [
    b"hello",
    "gr\u00fc\u00df dich, \u4e16\u754c".encode(),
    b"",
    bytes(range(1, 32)),
    b"x" * 1_000_000,
]


def _preview(data: bytes, limit: int = 24) -> str:
    shown = data[:limit].hex(" ")
    return shown + (f" ... ({len(data):,} bytes)" if len(data) > limit else "")


def _text(data: bytes) -> str:
    if len(data) > 40:
        return f"<{len(data):,} bytes>"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or not text.isprintable():
        return f"<{len(data)} bytes, binary>"
    return repr(text)


async def _demo_one(case: _DemoCase, verbose: bool) -> tuple[bool, str]:
    pm = plugins.get_plugin_manager()
    probe: Framer = pm.make_framer(case.framing, **case.options)
    delimiter = getattr(probe, "delimiter", None)
    messages = [
        m for m in _DEMO_MESSAGES
        if not (delimiter and delimiter in m) and len(m) <= probe.max_frame_size
        and not (m == b"" and not probe.message_boundaries)
    ]
    received: list[bytes] = []

    async def echo(conn: Connection) -> None:
        async for msg in conn:
            await conn.send(msg)

    t0 = time.perf_counter()
    server = await serve(echo, "127.0.0.1", 0, framing=case.framing, framing_options=case.options)
    try:
        conn = await connect("127.0.0.1", server.port, framing=case.framing,
                             framing_options=case.options, timeout=10)
        for msg in messages:
            await conn.send(msg)
        want = b"".join(messages)
        if probe.message_boundaries:
            for _ in messages:
                received.append(await asyncio.wait_for(conn.recv(), 10))
        else:
            got = 0
            while got < len(want):
                chunk = await asyncio.wait_for(conn.recv(), 10)
                received.append(chunk)
                got += len(chunk)
        await conn.close()
    finally:
        await server.aclose()
    elapsed = (time.perf_counter() - t0) * 1000
    ok = received == messages if probe.message_boundaries else b"".join(received) == want
    opts = ", ".join(f"{k}={v!r}" for k, v in case.options.items())
    print(f"\n== framing {case.framing!r}{f' ({opts})' if opts else ''}: {case.note}")
    for msg in messages:
        print(f"   send {_text(msg):<34} wire: {_preview(probe.frame(msg))}")
    if probe.message_boundaries:
        print(f"   echoed back {len(received)} of {len(messages)} messages, "
              f"{'identical' if ok else 'DIFFERENT'}")
    else:
        print(f"   echoed back {sum(map(len, received)):,} bytes in {len(received)} reads "
              f"(a raw stream keeps the bytes, not the boundaries), "
              f"{'identical' if ok else 'DIFFERENT'}")
    return ok, f"{case.framing}: {'ok' if ok else 'FAILED'} in {elapsed:.0f} ms"


def cmd_demo(args: argparse.Namespace) -> int:
    print(f"polysock {__version__}: a server and a client on 127.0.0.1, one event loop, "
          "each message echoed back")

    async def main() -> bool:
        results = []
        for case in _demo_cases():
            results.append(await _demo_one(case, args.verbose))
        print("\nsummary:")
        for ok, line in results:
            print(f"   {'PASS' if ok else 'FAIL'}  {line}")
        return all(ok for ok, _ in results)

    loop = new_event_loop()
    try:
        ok = loop.run_until_complete(main())
    finally:
        loop.close()
    return 0 if ok else 1


# -------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polysock", description="polysock: pluggable TCP messaging on one event loop"
    )
    parser.add_argument("--version", action="version", version=f"polysock {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("demo", help="exchange messages through every installed framing")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.set_defaults(func=cmd_plugins)
    p = sub.add_parser("serve", help="a server that prints (or echoes) decoded messages")
    netcat.add_serve_arguments(p)
    p.set_defaults(func=netcat.cmd_serve)
    p = sub.add_parser("send", help="send messages (or stdin lines) and print the replies")
    netcat.add_send_arguments(p)
    p.set_defaults(func=netcat.cmd_send)
    p = sub.add_parser("matrix", help="every flavour's server against every compatible client")
    matrix.add_arguments(p)
    p.set_defaults(func=matrix.cmd_matrix)
    p = sub.add_parser("bench", help="benchmark against a raw-socket baseline")
    bench.add_arguments(p)
    p.set_defaults(func=bench.run_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (PolysockError, ConnectionClosed, OSError, TimeoutError) as exc:
        if args.debug:
            raise
        return _fail(str(exc) or type(exc).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
