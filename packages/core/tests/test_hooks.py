"""Every hook of polysock.hookspecs, one section each.

Registration and per-connection hooks are tested on a PluginManager; the event hooks over
real loopback connections (127.0.0.1, ephemeral ports), every wait bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import logging
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pluggy
import polysock
import pytest
from polysock import (
    ConnectionClosed,
    DelimiterFramer,
    Flavour,
    FrameTooLarge,
    HandshakeError,
    LengthPrefixFramer,
    NoHandshake,
    PluginError,
    RawFramer,
    TLSHandshake,
    hookimpl,
    hookspec,
    hookspecs,
)
from polysock.events import (
    ConnectionLost,
    ConnectionMade,
    HandshakeComplete,
    MessageReceived,
    MessageSent,
    ProtocolErrorEvent,
)
from polysock.plugins import PluginManager

HOST = "127.0.0.1"
WAIT = 5.0  # seconds: the bound of every single wait on the network

EVENT_HOOKS = {
    "polysock_connection_made": ConnectionMade,
    "polysock_handshake_complete": HandshakeComplete,
    "polysock_message_received": MessageReceived,
    "polysock_message_sent": MessageSent,
    "polysock_protocol_error": ProtocolErrorEvent,
    "polysock_connection_lost": ConnectionLost,
}

#: every hook and the test(s) below that cover it
COVERED = {
    "polysock_addhooks": "test_addhooks_*",
    "polysock_add_framers": "test_add_framers_*",
    "polysock_add_handshakes": "test_add_handshakes_*",
    "polysock_add_flavours": "test_add_flavours_*",
    "polysock_make_framer": "test_make_framer_*",
    "polysock_make_handshake": "test_make_handshake_*",
    "polysock_connection_made": "test_events_*",
    "polysock_handshake_complete": "test_events_*",
    "polysock_message_received": "test_events_*",
    "polysock_message_sent": "test_events_*",
    "polysock_protocol_error": "test_events_protocol_error_*",
    "polysock_connection_lost": "test_events_*",
    "polysock_add_matrix_peers": "test_cli.py::test_matrix_*",
    "polysock_add_bench_scenarios": "test_bench.py::test_*scenario*",
}


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def manager(*plugins: object) -> PluginManager:
    pm = PluginManager(builtins_only=True)
    for plugin in plugins:
        pm.register(plugin)
    return pm


# ---------------------------------------------------------------- the specs themselves


def test_every_hook_is_covered_documented_and_declared():
    names = {n for n in dir(hookspecs) if n.startswith("polysock_")}
    assert names == set(COVERED), "a hook was added or removed: add/remove its tests"
    here = Path(__file__).parent
    for name, where in COVERED.items():
        module, _, pattern = where.rpartition("::")
        source = (here / (module or Path(__file__).name)).read_text()
        tests = re.findall(r"^def (test_\w+)", source, re.M)
        assert fnmatch.filter(tests, pattern), f"no test {where} covers {name}"
        assert name in source or not module, f"{module} does not exercise {name}"
    pm = manager()
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.split()) >= 5, f"{name} needs a docstring (when, arguments, return)"
        caller = getattr(pm.hook, name)
        assert caller.has_spec()
    opts = {name: getattr(pm.hook, name).spec.opts for name in names}
    assert opts["polysock_addhooks"]["historic"]
    assert opts["polysock_make_framer"]["firstresult"]
    assert opts["polysock_make_handshake"]["firstresult"]
    for name in names - {"polysock_make_framer", "polysock_make_handshake"}:
        assert not opts[name]["firstresult"], name
    for name in EVENT_HOOKS:
        assert getattr(pm.hook, name).spec.argnames == ("event",)


# ---------------------------------------------------------------- polysock_addhooks


class CustomSpecs:
    @hookspec
    def polysock_custom(self, value):
        """A hook added by a plugin through polysock_addhooks."""


class CustomImpl:
    @hookimpl
    def polysock_custom(self, value):
        return value * 2


def test_addhooks_is_called_on_registration_and_adds_hooks():
    calls = []

    class Adder:
        @hookimpl
        def polysock_addhooks(self, pluginmanager):
            calls.append(pluginmanager)
            pluginmanager.add_hookspecs(CustomSpecs)

    pm = manager()
    assert calls == []
    pm.register(Adder())
    assert calls == [pm]  # once, with the manager
    pm.register(CustomImpl())
    pm.check_pending()
    assert pm.hook.polysock_custom(value=21) == [42]


def test_addhooks_is_historic_plugins_registered_later_are_called_too():
    calls = []

    class Adder:
        def __init__(self, tag):
            self.tag = tag

        @hookimpl
        def polysock_addhooks(self, pluginmanager):
            calls.append(self.tag)

    pm = manager(Adder("first"))
    assert calls == ["first"]
    pm.register(Adder("second"))
    pm.register(Adder("third"))
    assert calls == ["first", "second", "third"]  # each once, none called twice


def test_addhooks_resolves_implementations_registered_before_the_spec():
    class Adder:
        @hookimpl
        def polysock_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(CustomSpecs)

    pm = manager(CustomImpl())
    with pytest.raises(pluggy.PluginValidationError, match="polysock_custom"):
        pm.check_pending()  # nobody declared it yet
    pm.register(Adder())
    pm.check_pending()
    assert pm.hook.polysock_custom(value=2) == [4]


# ---------------------------------------------------------------- misspelled hooks


def test_misspelled_hook_implementation_fails_loudly():
    class Typo:
        @hookimpl
        def polysock_conection_made(self, event):  # one "n" missing
            pass

    pm = manager()
    pm.register(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="polysock_conection_made"):
        pm.check_pending()


def test_hook_implementation_with_unknown_argument_fails_at_registration():
    class WrongArgs:
        @hookimpl
        def polysock_connection_made(self, evnt):
            pass

    pm = manager()
    with pytest.raises(pluggy.PluginValidationError, match="evnt"):
        pm.register(WrongArgs())


# ---------------------------------------------------------------- polysock_add_framers


class UpperFramer(DelimiterFramer):
    """A toy framing: newline-delimited, upper-cased on the way in."""

    def receive_data(self, data: bytes) -> list[bytes]:
        return [f.upper() for f in super().receive_data(data)]


class FramersPlugin:
    @hookimpl
    def polysock_add_framers(self):
        return {"upper": UpperFramer}


def test_add_framers_registers_a_framing_by_name():
    pm = manager(FramersPlugin())
    framer = pm.make_framer("upper", delimiter=b";", max_frame_size=5)
    assert isinstance(framer, UpperFramer)
    assert framer.max_frame_size == 5  # options go to the factory
    assert framer.receive_data(b"ab;cd;") == [b"AB", b"CD"]
    assert pm.make_framer("upper") is not pm.make_framer("upper")  # one per connection
    assert pm.framer_factory("upper") is UpperFramer
    assert {"raw", "delimiter", "length-prefix", "upper"} <= set(pm.registry.framers)


def test_add_framers_registry_follows_register_and_unregister():
    pm = manager()
    with pytest.raises(PluginError, match="unknown framing 'upper'"):
        pm.make_framer("upper")  # builds (and caches) the registry
    plugin = FramersPlugin()
    pm.register(plugin)
    assert isinstance(pm.make_framer("upper"), UpperFramer)
    pm.unregister(plugin)
    with pytest.raises(PluginError, match="unknown framing 'upper'"):
        pm.make_framer("upper")


def test_add_framers_returning_none_contributes_nothing():
    class Nothing:
        @hookimpl
        def polysock_add_framers(self):
            return None

    pm = manager(Nothing())
    assert set(pm.registry.framers) == {"raw", "delimiter", "length-prefix"}


def test_add_framers_clash_names_both_plugins():
    pm = manager()
    pm.register(FramersPlugin(), name="first-upper")
    pm.register(FramersPlugin(), name="second-upper")
    with pytest.raises(PluginError) as info:
        pm.make_framer("raw")
    message = str(info.value)
    assert "framer 'upper' is registered twice" in message
    assert "'first-upper'" in message
    assert "'second-upper'" in message


@pytest.mark.parametrize(
    ("result", "match"),
    [
        (["upper"], "must return a mapping"),
        ({"upper": "not a factory"}, "'upper' is not callable"),
    ],
)
def test_add_framers_bad_results_are_plugin_errors(result, match):
    class Bad:
        @hookimpl
        def polysock_add_framers(self):
            return result

    pm = manager()
    pm.register(Bad(), name="bad-plugin")
    with pytest.raises(PluginError, match=match) as info:
        pm.make_framer("raw")
    assert "'bad-plugin'" in str(info.value)


def test_add_framers_failing_implementation_is_a_plugin_error_naming_it():
    class Failing:
        @hookimpl
        def polysock_add_framers(self):
            raise KeyError("oops")

    pm = manager()
    pm.register(Failing(), name="failing-plugin")
    with pytest.raises(PluginError, match="'failing-plugin' failed in polysock_add_fr") as info:
        pm.make_framer("raw")
    assert isinstance(info.value.__cause__, KeyError)


# ---------------------------------------------------------------- polysock_add_handshakes


class HelloHandshake:
    """A toy handshake: the client says ``greeting``, the server answers ACK."""

    name = "hello"

    def __init__(self, role: str = "client", greeting: bytes = b"HELLO\n") -> None:
        self.role = role
        self.greeting = greeting

    async def perform(self, stream) -> None:
        if self.role == "client":
            stream.write(self.greeting)
            if await stream.readexactly(3) != b"ACK":
                raise HandshakeError("no ACK")
        else:
            line = await stream.readuntil(b"\n", limit=64)
            if line != self.greeting:
                raise HandshakeError(f"bad greeting {line!r}")
            stream.write(b"ACK")


class HandshakesPlugin:
    @hookimpl
    def polysock_add_handshakes(self):
        return {"hello": HelloHandshake}


def test_add_handshakes_registers_a_handshake_by_name():
    pm = manager(HandshakesPlugin())
    client = pm.make_handshake("hello", "client")
    server = pm.make_handshake("hello", "server", greeting=b"HI\n")
    assert isinstance(client, HelloHandshake)
    assert isinstance(server, HelloHandshake)
    assert isinstance(server, polysock.Handshake)
    assert (client.role, client.greeting) == ("client", b"HELLO\n")
    assert (server.role, server.greeting) == ("server", b"HI\n")
    assert set(pm.registry.handshakes) == {"none", "tls", "hello"}


def test_add_handshakes_unknown_name_lists_the_installed_ones():
    pm = manager(HandshakesPlugin())
    with pytest.raises(PluginError) as info:
        pm.make_handshake("helo", "client")
    assert "unknown handshake 'helo'" in str(info.value)
    assert "hello, none, tls" in str(info.value)


def test_add_handshakes_clash_names_both_plugins():
    pm = manager()
    pm.register(HandshakesPlugin(), name="hs-one")
    pm.register(HandshakesPlugin(), name="hs-two")
    with pytest.raises(PluginError) as info:
        pm.make_handshake("none", "client")
    message = str(info.value)
    assert "handshake 'hello' is registered twice" in message
    assert "'hs-one'" in message
    assert "'hs-two'" in message


def test_add_handshakes_clash_with_a_builtin():
    class ShadowTLS:
        @hookimpl
        def polysock_add_handshakes(self):
            return {"tls": HelloHandshake}

    pm = manager()
    pm.register(ShadowTLS(), name="shadow-tls")
    with pytest.raises(PluginError, match="'tls' is registered twice") as info:
        pm.make_handshake("none", "client")
    assert "'polysock'" in str(info.value)
    assert "'shadow-tls'" in str(info.value)


# ---------------------------------------------------------------- polysock_add_flavours

FLAVOUR = Flavour(
    "toyflavour",
    summary="a toy legacy API",
    framing="delimiter",
    framing_options={"delimiter": b"\0"},
    modules=("toyflavour",),
)


class FlavourPlugin:
    @hookimpl
    def polysock_add_flavours(self):
        return [FLAVOUR]


def test_add_flavours_registers_flavour_objects():
    pm = manager()
    pm.register(FlavourPlugin(), name="toy")
    assert pm.flavour("toyflavour") is FLAVOUR
    # the flavour names a framing the registry can build
    framer = pm.make_framer(FLAVOUR.framing, **FLAVOUR.framing_options)
    assert framer.frame(b"hello") == b"hello\x00"
    info = next(i for i in pm.plugin_infos() if i.name == "toy")
    assert info.flavours == ("toyflavour",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FLAVOUR.name = "other"  # type: ignore[misc]


def test_add_flavours_unknown_name_lists_the_installed_ones():
    pm = manager(FlavourPlugin())
    with pytest.raises(PluginError, match=r"unknown flavour 'tcpcom'.*toyflavour"):
        pm.flavour("tcpcom")


def test_add_flavours_clash_names_both_plugins():
    pm = manager()
    pm.register(FlavourPlugin(), name="toy-a")
    pm.register(FlavourPlugin(), name="toy-b")
    with pytest.raises(PluginError) as info:
        pm.flavour("toyflavour")
    message = str(info.value)
    assert "flavour 'toyflavour' is registered twice" in message
    assert "'toy-a'" in message
    assert "'toy-b'" in message


def test_add_flavours_must_return_flavour_objects():
    class NotFlavours:
        @hookimpl
        def polysock_add_flavours(self):
            return [{"name": "dict-flavour"}]

    pm = manager()
    pm.register(NotFlavours(), name="dicts")
    with pytest.raises(PluginError, match="must return Flavour objects, not dict") as info:
        pm.flavour("dict-flavour")
    assert "'dicts'" in str(info.value)


# ---------------------------------------------------------------- polysock_make_framer


class Passer:
    """Implements both make_* hooks, records the call and passes (returns None)."""

    def __init__(self, tag: str, log: list) -> None:
        self.tag = tag
        self.log = log

    @hookimpl
    def polysock_make_framer(self, name, options):
        self.log.append((self.tag, name, dict(options)))

    @hookimpl
    def polysock_make_handshake(self, name, role, options):
        self.log.append((self.tag, name, role, dict(options)))


class Winner:
    def __init__(self, log: list) -> None:
        self.log = log
        self.framer = RawFramer()
        self.handshake = NoHandshake("server")

    @hookimpl
    def polysock_make_framer(self, name, options):
        self.log.append(("winner", name, dict(options)))
        return self.framer

    @hookimpl
    def polysock_make_handshake(self, name, role, options):
        self.log.append(("winner", name, role, dict(options)))
        return self.handshake


def test_make_framer_passing_plugins_fall_through_to_the_core():
    log: list = []
    pm = manager()
    pm.register(Passer("early", log))
    pm.register(Passer("late", log))
    framer = pm.make_framer("delimiter", delimiter=b"\x1f")
    assert isinstance(framer, DelimiterFramer)  # built by the core, last
    assert framer.frame(b"hello") == b"hello\x1f"
    # every plugin was asked, the last registered first, with the name and the options
    assert log == [
        ("late", "delimiter", {"delimiter": b"\x1f"}),
        ("early", "delimiter", {"delimiter": b"\x1f"}),
    ]


def test_make_framer_first_non_none_result_wins_and_the_core_never_runs():
    log: list = []
    pm = manager()
    winner = Winner(log)
    pm.register(Passer("early", log))
    pm.register(winner)
    pm.register(Passer("late", log))
    # a name the core does not know: the core would raise if it were called
    assert pm.make_framer("nonexistent", x=1) is winner.framer
    assert log == [("late", "nonexistent", {"x": 1}), ("winner", "nonexistent", {"x": 1})]


def test_make_framer_can_wrap_the_registered_framing():
    class Wrapping:
        def __init__(self, pm: PluginManager) -> None:
            self.pm = pm

        @hookimpl
        def polysock_make_framer(self, name, options):
            if name != "delimiter":
                return None
            inner = self.pm.framer_factory(name)(**options)
            inner.wrapped_by_plugin = True
            return inner

    pm = manager()
    pm.register(Wrapping(pm))
    framer = pm.make_framer("delimiter", delimiter=b"\0")
    assert framer.wrapped_by_plugin is True
    assert framer.frame(b"x") == b"x\x00"
    assert not hasattr(pm.make_framer("raw"), "wrapped_by_plugin")


def test_make_framer_without_any_result_is_a_plugin_error():
    pm = manager()
    pm.unregister(name="polysock")  # nobody left to build it
    with pytest.raises(PluginError, match="no plugin built a framer for framing 'raw'"):
        pm.make_framer("raw")


def test_make_framer_unknown_name_reaches_the_core_error():
    pm = manager(Passer("p", []))
    with pytest.raises(PluginError, match="unknown framing 'nope'"):
        pm.make_framer("nope")


def test_make_framer_is_called_for_every_connection():
    calls: list = []

    class Counting(DelimiterFramer):
        pass

    class Maker:
        @hookimpl
        def polysock_make_framer(self, name, options):
            calls.append((name, dict(options)))
            return Counting(**options) if name == "delimiter" else None

    pm = manager(Maker())
    server_framers: list = []

    async def main():
        async def session(conn):
            server_framers.append(conn.framer)
            await conn.send(await conn.recv())

        server = await polysock.serve(
            session, HOST, 0, framing="delimiter", framing_options={"delimiter": b"\0"},
            plugin_manager=pm,
        )
        async with server:
            client = await polysock.connect(
                HOST, server.port, framing="delimiter", framing_options={"delimiter": b"\0"},
                plugin_manager=pm, timeout=WAIT,
            )
            await client.send(b"ping")
            assert await asyncio.wait_for(client.recv(), WAIT) == b"ping"
            await asyncio.wait_for(client.close(), WAIT)
            return client

    client = run(main())
    assert calls == [("delimiter", {"delimiter": b"\0"})] * 2  # client and server
    assert isinstance(client.framer, Counting)
    assert len(server_framers) == 1
    assert isinstance(server_framers[0], Counting)


# ---------------------------------------------------------------- polysock_make_handshake


def test_make_handshake_passing_plugins_fall_through_to_the_core():
    log: list = []
    pm = manager()
    pm.register(Passer("early", log))
    pm.register(Passer("late", log))
    none = pm.make_handshake("none", "server")
    assert isinstance(none, NoHandshake)
    assert none.role == "server"
    tls = pm.make_handshake("tls", "client", verify=False)
    assert isinstance(tls, TLSHandshake)
    assert tls.role == "client"
    assert log == [
        ("late", "none", "server", {}),
        ("early", "none", "server", {}),
        ("late", "tls", "client", {"verify": False}),
        ("early", "tls", "client", {"verify": False}),
    ]


def test_make_handshake_first_non_none_result_wins():
    log: list = []
    pm = manager()
    winner = Winner(log)
    pm.register(winner)
    pm.register(Passer("late", log))
    assert pm.make_handshake("unknown-to-core", "client", a=1) is winner.handshake
    assert log == [
        ("late", "unknown-to-core", "client", {"a": 1}),
        ("winner", "unknown-to-core", "client", {"a": 1}),
    ]


def test_make_handshake_without_any_result_is_a_plugin_error():
    pm = manager()
    pm.unregister(name="polysock")
    with pytest.raises(PluginError, match="no plugin built a handshake for 'tls'"):
        pm.make_handshake("tls", "client")


def test_make_handshake_is_called_per_connection_and_can_replace_one():
    calls: list = []

    class Replacer:
        @hookimpl
        def polysock_make_handshake(self, name, role, options):
            calls.append((name, role, dict(options)))
            if name == "hello":
                return HelloHandshake(role, greeting=b"HOWDY\n")  # replaces the default
            return None

    recorder = Recorder()
    pm = manager(HandshakesPlugin(), Replacer(), recorder)

    async def main():
        async def session(conn):
            await conn.send(await conn.recv())

        async with await polysock.serve(
            session, HOST, 0, handshake="hello", plugin_manager=pm
        ) as server:
            client = await polysock.connect(
                HOST, server.port, handshake="hello", plugin_manager=pm, timeout=WAIT
            )
            await client.send(b"after the handshake")
            assert await asyncio.wait_for(client.recv(), WAIT) == b"after the handshake"
            await asyncio.wait_for(client.close(), WAIT)

    run(main())
    assert sorted(calls) == [("hello", "client", {}), ("hello", "server", {})]
    for role in ("client", "server"):
        completes = [ev for kind, ev in recorder.of(role) if kind == "handshake_complete"]
        assert [ev.handshake for ev in completes] == ["hello"]


# ---------------------------------------------------------------- event hooks


class Recorder:
    """Observes every event hook, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def polysock_connection_made(self, event):
        self.events.append(("made", event))

    @hookimpl
    def polysock_handshake_complete(self, event):
        self.events.append(("handshake_complete", event))

    @hookimpl
    def polysock_message_received(self, event):
        self.events.append(("received", event))

    @hookimpl
    def polysock_message_sent(self, event):
        self.events.append(("sent", event))

    @hookimpl
    def polysock_protocol_error(self, event):
        self.events.append(("protocol_error", event))

    @hookimpl
    def polysock_connection_lost(self, event):
        self.events.append(("lost", event))

    def of(self, role: str) -> list[tuple[str, Any]]:
        return [(kind, ev) for kind, ev in self.events if ev.connection.role == role]

    def kinds(self, role: str) -> list[str]:
        return [kind for kind, _ in self.of(role)]

    def payloads(self, role: str, kind: str) -> list[bytes]:
        return [ev.payload for k, ev in self.of(role) if k == kind]


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait for a condition that a callback on this loop will make true (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)  # yield to the loop; the bound is the deadline above


def test_events_exact_sequence_on_both_sides():
    recorder = Recorder()
    pm = manager(recorder)

    async def main():
        received: list[bytes] = []
        server_conns: list = []

        async def session(conn):
            server_conns.append(conn)
            async for msg in conn:
                received.append(msg)

        server = await polysock.serve(session, HOST, 0, plugin_manager=pm)
        port = server.port
        async with server:
            client = await polysock.connect(HOST, port, plugin_manager=pm, timeout=WAIT)
            await client.send(b"one")
            await client.send_many([b"two", b""])
            await wait_until(lambda: len(received) == 3, "3 messages at the server")
            await asyncio.wait_for(client.close(), WAIT)
            await asyncio.wait_for(server_conns[0].wait_closed(), WAIT)
        return client, server_conns[0], port, received

    client, sconn, port, received = run(main())
    assert received == [b"one", b"two", b""]

    assert recorder.kinds("client") == [
        "made", "handshake_complete", "sent", "sent", "sent", "lost",
    ]
    assert recorder.payloads("client", "sent") == [b"one", b"two", b""]
    assert recorder.kinds("server") == [
        "made", "handshake_complete", "received", "received", "received", "lost",
    ]
    assert recorder.payloads("server", "received") == [b"one", b"two", b""]

    for role, conn in (("client", client), ("server", sconn)):
        events = recorder.of(role)
        assert all(ev.connection is conn for _, ev in events)
        assert {ev.connection_id for _, ev in events} == {conn.id}
        made, complete, lost = events[0][1], events[1][1], events[-1][1]
        assert type(made) is ConnectionMade
        assert made.role == role
        assert made.sockname == conn.sockname
        assert made.peername == conn.peername
        assert type(complete) is HandshakeComplete
        assert complete.handshake == "none"
        assert type(lost) is ConnectionLost
        assert lost.reason is None  # orderly close on both sides
    client_made = recorder.of("client")[0][1]
    server_made = recorder.of("server")[0][1]
    assert client_made.peername == (HOST, port)
    assert server_made.peername == client_made.sockname
    assert all(type(ev) is MessageSent for kind, ev in recorder.of("client") if kind == "sent")

    with pytest.raises(dataclasses.FrozenInstanceError):
        client_made.role = "server"


class RecordingFramer(LengthPrefixFramer):
    """Length-prefix framing that records every chunk it is fed."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.chunks: list[bytes] = []

    def receive_data(self, data: bytes) -> list[bytes]:
        self.chunks.append(data)
        return super().receive_data(data)


def test_events_message_received_once_per_frame_not_per_chunk():
    recorder = Recorder()
    pm = manager(recorder)
    encoder = LengthPrefixFramer()
    split_frame = encoder.frame(b"x" * 100)
    burst = [b"m%d" % i for i in range(50)]

    async def main():
        framers: list[RecordingFramer] = []
        received: list[bytes] = []

        def make_framer() -> RecordingFramer:
            framers.append(RecordingFramer())
            return framers[-1]

        async def session(conn):
            async for msg in conn:
                received.append(msg)

        server = await polysock.serve(session, HOST, 0, framing=make_framer, plugin_manager=pm)
        async with server:
            client = await polysock.connect(
                HOST, server.port, framing="raw", plugin_manager=pm, timeout=WAIT
            )
            # One frame in two chunks: the second half is sent only once the server has
            # read the first, so the server's framer sees at least two reads for it.
            client.write(split_frame[:50])
            await wait_until(lambda: framers and sum(map(len, framers[0].chunks)) >= 50,
                             "the first half at the server")
            client.write(split_frame[50:])
            await wait_until(lambda: len(received) == 1, "the split frame")
            chunks_for_split = len(framers[0].chunks)
            # Fifty frames in one write: however TCP cuts them, one event per frame.
            client.write(encoder.frame_many(burst))
            await wait_until(lambda: len(received) == 51, "the burst")
            await asyncio.wait_for(client.close(), WAIT)
        return framers[0], chunks_for_split, received

    framer, chunks_for_split, received = run(main())
    assert chunks_for_split >= 2
    assert received == [b"x" * 100, *burst]
    assert recorder.payloads("server", "received") == received  # exactly one per frame
    assert b"".join(framer.chunks) == split_frame + encoder.frame_many(burst)
    # the raw client's sends are events too: one per payload handed to the transport
    assert recorder.payloads("client", "sent") == [
        split_frame[:50], split_frame[50:], encoder.frame_many(burst)
    ]


def test_events_message_received_comes_after_the_handler_got_the_frame():
    log: list = []

    class Observer:
        @hookimpl
        def polysock_message_received(self, event):
            log.append(("event", event.payload))

        @hookimpl
        def polysock_connection_lost(self, event):
            if event.connection.role == "server":
                log.append(("lost", None))

    class Handler(polysock.Handler):
        def messages_received(self, conn, messages):
            log.append(("handler", list(messages)))

    pm = manager(Observer())
    payloads = [b"p%d" % i for i in range(10)]

    async def main():
        server = await polysock.serve(None, HOST, 0, handler_factory=Handler, plugin_manager=pm)
        async with server:
            client = await polysock.connect(HOST, server.port, plugin_manager=pm, timeout=WAIT)
            await client.send_many(payloads)
            await wait_until(
                lambda: sum(1 for kind, _ in log if kind == "event") == len(payloads),
                "every event",
            )
            await asyncio.wait_for(client.close(), WAIT)
            await wait_until(lambda: ("lost", None) in log, "the server side to close")

    run(main())
    # Each batch handed to the handler is followed by one event per frame of that batch.
    expected: list = []
    for kind, value in log:
        if kind == "handler":
            expected.append((kind, value))
            expected.extend(("event", frame) for frame in value)
    expected.append(("lost", None))
    assert log == expected
    assert [frame for kind, value in log if kind == "handler" for frame in value] == payloads


def test_events_protocol_error_then_connection_lost_with_the_error():
    recorder = Recorder()
    pm = manager(recorder)
    encoder = LengthPrefixFramer()

    session_errors: list = []

    async def main():
        server_conns: list = []

        async def session(conn):
            server_conns.append(conn)
            try:
                async for _ in conn:
                    pass
            except polysock.ProtocolError as exc:
                session_errors.append(exc)

        server = await polysock.serve(
            session, HOST, 0, framing_options={"max_frame_size": 16}, plugin_manager=pm
        )
        async with server:
            client = await polysock.connect(
                HOST, server.port, framing="raw", plugin_manager=pm, timeout=WAIT
            )
            # a good frame, then a header declaring 1000 bytes (over the server's limit)
            client.write(encoder.frame(b"ok") + b"\x00\x00\x03\xe8")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), WAIT)  # the server closes on us
            await asyncio.wait_for(client.close(), WAIT)
            await wait_until(lambda: server_conns, "the session")
            await asyncio.wait_for(server_conns[0].wait_closed(), WAIT)

    run(main())
    assert recorder.kinds("server") == [
        "made", "handshake_complete", "received", "protocol_error", "lost",
    ]
    events = dict(recorder.of("server"))
    assert events["received"].payload == b"ok"  # what arrived intact was delivered first
    error = events["protocol_error"].error
    assert isinstance(error, FrameTooLarge)
    assert (error.limit, error.size) == (16, 1000)
    assert events["lost"].reason is error
    assert session_errors == [error]  # recv() reports why the connection ended
    assert recorder.kinds("client")[-1] == "lost"
    assert "protocol_error" not in recorder.kinds("client")


def test_events_protocol_error_for_a_failed_handshake():
    recorder = Recorder()
    pm = manager(HandshakesPlugin(), recorder)

    async def main():
        async def session(conn):  # pragma: no cover - the handshake never completes
            raise AssertionError("a session started without a handshake")

        async with await polysock.serve(
            session, HOST, 0, handshake="hello", plugin_manager=pm
        ) as server:
            client = await polysock.connect(
                HOST, server.port, framing="raw", plugin_manager=pm, timeout=WAIT
            )
            client.write(b"GOODBYE\n")  # not the greeting the server expects
            with pytest.raises(ConnectionError):  # ConnectionClosed (FIN or RST)
                await asyncio.wait_for(client.recv(), WAIT)
            await asyncio.wait_for(client.close(), WAIT)
            await wait_until(lambda: "lost" in recorder.kinds("server"), "the server to close")

    run(main())
    assert recorder.kinds("server") == ["made", "protocol_error", "lost"]
    events = dict(recorder.of("server"))
    assert isinstance(events["protocol_error"].error, HandshakeError)
    assert "GOODBYE" in str(events["protocol_error"].error)
    assert events["lost"].reason is events["protocol_error"].error


def test_events_observer_that_raises_does_not_affect_the_connection(caplog):
    class Exploding:
        def boom(self, event):
            raise RuntimeError(f"observer bug in {type(event).__name__}")

        @hookimpl
        def polysock_connection_made(self, event):
            self.boom(event)

        @hookimpl
        def polysock_handshake_complete(self, event):
            self.boom(event)

        @hookimpl
        def polysock_message_received(self, event):
            self.boom(event)

        @hookimpl
        def polysock_message_sent(self, event):
            self.boom(event)

        @hookimpl
        def polysock_connection_lost(self, event):
            self.boom(event)

    recorder = Recorder()
    pm = manager()
    pm.register(Exploding())
    pm.register(recorder)  # registered last: called first, sees every event

    async def main():
        server_conns: list = []

        async def session(conn):
            server_conns.append(conn)
            async for msg in conn:
                await conn.send(msg.upper())

        async with await polysock.serve(session, HOST, 0, plugin_manager=pm) as server:
            client = await polysock.connect(HOST, server.port, plugin_manager=pm, timeout=WAIT)
            replies = []
            for msg in (b"a", b"b", b"c"):
                await client.send(msg)
                replies.append(await asyncio.wait_for(client.recv(), WAIT))
            await asyncio.wait_for(client.close(), WAIT)
            await asyncio.wait_for(server_conns[0].wait_closed(), WAIT)
            return client, server_conns[0], replies

    with caplog.at_level(logging.ERROR, logger="polysock.plugins"):
        client, sconn, replies = run(main())
    assert replies == [b"A", b"B", b"C"]
    assert client.error is None
    assert sconn.error is None
    for role in ("client", "server"):
        lost = [ev for kind, ev in recorder.of(role) if kind == "lost"]
        assert len(lost) == 1
        assert lost[0].reason is None
    logged = [r for r in caplog.records if r.name == "polysock.plugins"]
    failed_hooks = {r.getMessage() for r in logged}
    for hook in (
        "polysock_connection_made",
        "polysock_handshake_complete",
        "polysock_message_received",
        "polysock_message_sent",
        "polysock_connection_lost",
    ):
        assert any(hook in message for message in failed_hooks), hook
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in logged)


def test_events_skipped_entirely_when_no_plugin_implements_them():
    pm = manager(FramersPlugin())  # a plugin, but no event hooks
    assert not pm.event_hooks().any

    async def main():
        server_conns: list = []

        async def session(conn):
            server_conns.append(conn)
            await conn.send(await conn.recv())

        async with await polysock.serve(session, HOST, 0, plugin_manager=pm) as server:
            client = await polysock.connect(HOST, server.port, plugin_manager=pm, timeout=WAIT)
            await client.send(b"echo")
            assert await asyncio.wait_for(client.recv(), WAIT) == b"echo"
            await asyncio.wait_for(client.close(), WAIT)
            return client, server_conns[0]

    client, sconn = run(main())
    assert client._ev is None
    assert sconn._ev is None


def test_events_only_implemented_hooks_are_called():
    class OnlyReceived:
        def __init__(self) -> None:
            self.payloads: list[bytes] = []

        @hookimpl
        def polysock_message_received(self, event):
            self.payloads.append(event.payload)

    observer = OnlyReceived()
    pm = manager(observer)
    hooks = pm.event_hooks()
    assert hooks.any
    assert hooks.polysock_message_received is not None
    assert [n for n in hooks._fields if getattr(hooks, n) is None] == [
        n for n in EVENT_HOOKS if n != "polysock_message_received"
    ]

    async def main():
        async def session(conn):
            await conn.send(await conn.recv())

        async with await polysock.serve(session, HOST, 0, plugin_manager=pm) as server:
            client = await polysock.connect(HOST, server.port, plugin_manager=pm, timeout=WAIT)
            assert client._ev is hooks
            await client.send(b"hi")
            assert await asyncio.wait_for(client.recv(), WAIT) == b"hi"
            await asyncio.wait_for(client.close(), WAIT)

    run(main())
    assert observer.payloads == [b"hi", b"hi"]  # server received, then client received


def test_events_hook_cache_follows_register_and_unregister():
    pm = manager()
    assert not pm.event_hooks().any
    recorder = Recorder()
    pm.register(recorder)
    hooks = pm.event_hooks()
    assert all(getattr(hooks, name) is not None for name in EVENT_HOOKS)
    assert pm.event_hooks() is hooks  # cached
    pm.unregister(recorder)
    assert not pm.event_hooks().any


def test_events_classes_match_the_hooks():
    assert set(EVENT_HOOKS) == {n for n in COVERED if n not in {
        "polysock_addhooks", "polysock_add_framers", "polysock_add_handshakes",
        "polysock_add_flavours", "polysock_make_framer", "polysock_make_handshake",
        "polysock_add_matrix_peers", "polysock_add_bench_scenarios",
    }}
    for cls in EVENT_HOOKS.values():
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert "connection" in {f.name for f in dataclasses.fields(cls)}


def test_misspelled_hook_in_code_registered_plugin_fails_at_first_lookup():
    class Typo:
        @hookimpl
        def polysock_add_framer(self):  # the hook is polysock_add_framers
            return {"x": object}

    pm = manager()
    pm.register(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="polysock_add_framer"):
        pm.framer_factory("raw")


def test_single_flavour_instead_of_a_list_is_a_plugin_error():
    class One:
        @hookimpl
        def polysock_add_flavours(self):
            return Flavour("solo")

    pm = manager(One())
    with pytest.raises(PluginError, match="must return a list"):
        pm.flavour("solo")
