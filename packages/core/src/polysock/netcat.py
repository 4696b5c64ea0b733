"""``polysock serve`` and ``polysock send``: a netcat that speaks every installed framing.

Meant for a person at a terminal poking a device or a classroom program, so the output is for
reading (one line per message, text when it is text) and every failure is one line on stderr
with a non-zero exit. Both commands stop by themselves when asked to (``--max-messages``,
``--idle-timeout``, ``--once``; ``--expect``, ``--timeout``, ``--linger``), so scripts and
tests can drive them without killing anything.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import errno
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import plugins
from .errors import ConnectionClosed, PluginError, PolysockError, ProtocolError
from .handshake import make_ssl_context
from .runtime import new_event_loop
from .transport import Connection, Server, connect, serve

# ------------------------------------------------------------------ framing names and options


@dataclass(frozen=True)
class FramingChoice:
    """A framing resolved from the command line: a framer name and its options."""

    name: str
    options: Mapping[str, Any]
    label: str


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE a Python literal when it parses as one (``4``, ``b'\\x00'``,
    ``True``, ``'little'``), else the plain string: ``-o delimiter=b'\\r\\n'``."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise PolysockError(f"bad framing option {text!r}: expected KEY=VALUE, e.g. length_size=2")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def resolve_framing(name: str, option_texts: list[str] | None = None) -> FramingChoice:
    """A framing by framer name or by flavour name (``--framing tcpcom`` means the tcpcom
    flavour's wire format), with ``-o`` options on top. Unknown names list what exists."""
    pm = plugins.get_plugin_manager()
    user = dict(parse_option(t) for t in option_texts or [])
    registry = pm.registry
    if name in registry.framers:
        choice = FramingChoice(name, user, name)
    elif name in registry.flavours:
        flavour = registry.flavours[name][0]
        merged = {**flavour.framing_options, **user}
        choice = FramingChoice(flavour.framing, merged, f"{name} ({flavour.framing})")
    else:
        known = sorted(set(registry.framers) | set(registry.flavours))
        raise PluginError(f"unknown framing {name!r}; installed: {', '.join(known)}")
    try:
        pm.make_framer(choice.name, **choice.options)  # fail now, not per connection
    except TypeError as exc:
        raise PolysockError(f"bad options for framing {choice.name!r}: {exc}") from None
    return choice


# ------------------------------------------------------------------ showing messages


def show(data: bytes) -> str:
    """Text when the message is printable UTF-8, an escaped string when it is UTF-8 with
    control characters, else hex: a message always fits on one line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes> {data.hex(' ')}"
    if text and all(c.isprintable() or c == "\t" for c in text):
        return text
    if not text:
        return "<empty>"
    return repr(text)


def _print(line: str) -> None:
    print(line, flush=True)


def _peer(conn: Connection) -> str:
    peer = conn.peername
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


def _end_reason(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    if isinstance(exc, ConnectionClosed) and exc.reason is None:
        return "closed"
    return f"closed: {exc}"


def _describe_os_error(exc: OSError, action: str) -> str:
    reason = {
        errno.EADDRINUSE: "address already in use",
        errno.ECONNREFUSED: "connection refused",
        errno.EACCES: "permission denied",
        errno.EADDRNOTAVAIL: "address not available",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{action}: {reason}"


# ------------------------------------------------------------------ serve


async def _serve(args: argparse.Namespace, choice: FramingChoice) -> int:
    done = asyncio.Event()
    count = 0
    last_activity = asyncio.get_running_loop().time()

    async def session(conn: Connection) -> None:
        nonlocal count, last_activity
        peer = _peer(conn)
        _print(f"[{peer}] connected")
        error: BaseException | None = None
        try:
            async for msg in conn:
                last_activity = asyncio.get_running_loop().time()
                count += 1
                if args.echo:
                    await conn.send(msg)
                if not args.quiet:
                    _print(f"[{peer}] {show(msg)}")
                if args.max_messages and count >= args.max_messages:
                    done.set()
                    break
        except (ConnectionClosed, ProtocolError) as exc:
            error = exc
        _print(f"[{peer}] {_end_reason(error)}")
        last_activity = asyncio.get_running_loop().time()
        if args.once:
            done.set()

    ssl_ctx = None
    if args.tls_cert:
        ssl_ctx = make_ssl_context("server", certfile=args.tls_cert, keyfile=args.tls_key)
    try:
        server: Server = await serve(
            session,
            args.host,
            args.port,
            framing=choice.name,
            framing_options=choice.options,
            ssl=ssl_ctx,
        )
    except OSError as exc:
        raise PolysockError(
            _describe_os_error(exc, f"cannot listen on {args.host}:{args.port}")
        ) from None
    host = args.host if ":" not in args.host else f"[{args.host}]"
    mode = "echoing" if args.echo else "printing"
    tls = ", TLS" if ssl_ctx else ""
    _print(f"polysock: serving {choice.label} on {host}:{server.port}{tls} ({mode} messages)")

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows/not main
        loop.add_signal_handler(signal.SIGTERM, done.set)
    try:
        while not done.is_set():
            wait = 0.5
            if args.idle_timeout:
                idle = loop.time() - last_activity
                if not server.connections and idle >= args.idle_timeout:
                    _print(f"polysock: idle for {args.idle_timeout:g} s, stopping")
                    break
                wait = min(wait, max(args.idle_timeout - idle, 0.05))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), wait)
    finally:
        server.close()
        await server.close_connections(timeout=5)
        await server.aclose(timeout=5)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise PolysockError("--tls-cert and --tls-key go together")
    choice = resolve_framing(args.framing, args.option)
    return _run(_serve(args, choice))


# ------------------------------------------------------------------ send


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Feed stdin lines to the loop from a daemon thread (portable, unlike add_reader on a
    console), ``None`` at end of input."""

    def reader() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        finally:
            with contextlib.suppress(RuntimeError):  # loop already closed: we are exiting
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="polysock-stdin", daemon=True).start()


def _encode(text: str, as_hex: bool) -> bytes:
    if not as_hex:
        return text.encode("utf-8")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise PolysockError(f"not hex: {text!r}") from None


async def _send(args: argparse.Namespace, choice: FramingChoice) -> int:
    ssl_ctx = None
    if args.tls or args.tls_ca:
        ssl_ctx = make_ssl_context("client", cafile=args.tls_ca, verify=not args.insecure)
    try:
        conn = await connect(
            args.host,
            args.port,
            framing=choice.name,
            framing_options=choice.options,
            ssl=ssl_ctx,
            handshake_options=(
                {"server_hostname": args.server_hostname}
                if ssl_ctx is not None and args.server_hostname
                else None
            ),
            timeout=args.timeout,
        )
    except OSError as exc:
        raise PolysockError(
            _describe_os_error(exc, f"cannot connect to {args.host}:{args.port}")
        ) from None
    except TimeoutError:
        raise PolysockError(
            f"cannot connect to {args.host}:{args.port}: no answer within {args.timeout:g} s"
        ) from None

    received = 0
    enough = asyncio.Event()
    ended: list[BaseException | None] = []

    async def reader() -> None:
        nonlocal received
        try:
            async for msg in conn:
                received += 1
                _print(show(msg) if args.quiet_prefix else f"< {show(msg)}")
                if args.expect and received >= args.expect:
                    enough.set()
            ended.append(None)
        except (ConnectionClosed, ProtocolError) as exc:
            ended.append(exc)
        finally:
            enough.set()

    read_task = asyncio.ensure_future(reader())
    try:
        if args.message:
            for text in args.message:
                await conn.send(_encode(text, args.hex))
        else:
            lines: asyncio.Queue[str | None] = asyncio.Queue()
            _stdin_lines(asyncio.get_running_loop(), lines)
            while (line := await lines.get()) is not None:
                if read_task.done():
                    break
                await conn.send(_encode(line, args.hex))
        if args.expect:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(enough.wait(), args.timeout)
            if received < args.expect:
                raise PolysockError(
                    f"expected {args.expect} message(s), got {received} "
                    f"within {args.timeout:g} s"
                )
        else:
            # Done sending: half-close so a server that answers until EOF can finish, then
            # print what still arrives until it closes or --linger passes.
            if not conn.is_tls and not read_task.done():
                with contextlib.suppress(ConnectionClosed, OSError, RuntimeError):
                    conn.write_eof()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(read_task), args.linger)
    finally:
        await conn.close(timeout=5)
        read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read_task
    if ended and ended[0] is not None and isinstance(ended[0], ProtocolError):
        raise PolysockError(f"the peer broke the framing: {ended[0]}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    choice = resolve_framing(args.framing, args.option)
    return _run(_send(args, choice))


# ------------------------------------------------------------------ shared


def _run(coro: Any) -> int:
    loop = new_event_loop()
    try:
        return int(loop.run_until_complete(coro))
    except KeyboardInterrupt:
        return 130
    finally:
        loop.close()


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framing", required=True, help="framer or flavour name (polysock plugins)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="framing option, e.g. -o delimiter=b'\\x00' -o max_frame_size=1024")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 to open it up)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one, printed)")
    p.add_argument("--echo", action="store_true", help="send every message back")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print messages")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    p.add_argument("--max-messages", type=int, default=0, metavar="N",
                   help="stop after N messages in all")
    p.add_argument("--once", action="store_true", help="stop when the first client leaves")
    p.add_argument("--idle-timeout", type=float, default=0.0, metavar="SEC",
                   help="stop after SEC seconds with no client and no message")


def add_send_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framing", required=True, help="framer or flavour name (polysock plugins)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="framing option, e.g. -o length_size=2")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("message", nargs="*",
                   help="messages to send (UTF-8); none: read lines from stdin (interactive)")
    p.add_argument("--hex", action="store_true", help="messages/lines are hex, e.g. 'de ad'")
    p.add_argument("--expect", type=int, default=0, metavar="N",
                   help="wait for N messages back (error if they do not come in --timeout)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SEC",
                   help="connect timeout and --expect deadline (default 10)")
    p.add_argument("--linger", type=float, default=2.0, metavar="SEC",
                   help="after sending, print replies until the peer closes or SEC passes")
    p.add_argument("--tls", action="store_true", help="connect with TLS (verified)")
    p.add_argument("--tls-ca", metavar="FILE", help="trust this CA (implies --tls)")
    p.add_argument("--insecure", action="store_true", help="TLS without verification")
    p.add_argument("--server-hostname", help="TLS name to verify (default: HOST)")
    p.add_argument("--raw-output", dest="quiet_prefix", action="store_true",
                   help="print received messages without the '< ' prefix")
