"""The polysock hook specifications (pluggy project name ``"polysock"``).

Hooks sit at lifecycle edges: plugin registration, per-connection setup and connection events.
None is called per byte or per read (a pluggy call costs about 1.7 us). A plugin implements any
subset, marked with :data:`hookimpl`, and is registered through the ``polysock`` entry-point
group (or :func:`polysock.plugins.register`). The core's own framers and handshakes are
registered through the same hooks, by the plugin named ``"polysock"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .bench import BenchScenario
    from .events import (
        ConnectionLost,
        ConnectionMade,
        HandshakeComplete,
        MessageReceived,
        MessageSent,
        ProtocolErrorEvent,
    )
    from .framing import Framer
    from .handshake import Handshake
    from .matrix import MatrixPeer
    from .plugins import Flavour, PluginManager

hookspec = pluggy.HookspecMarker("polysock")
hookimpl = pluggy.HookimplMarker("polysock")

# ---------------------------------------------------------------- registration


@hookspec(historic=True)
def polysock_addhooks(pluginmanager: PluginManager) -> None:
    """Called once when the plugin is registered, to add hook specifications of its own.

    ``pluginmanager.add_hookspecs(module)`` makes new hooks available to other plugins. Historic:
    a plugin registered later is still called. Return value ignored.
    """


@hookspec
def polysock_add_framers() -> Mapping[str, Callable[..., Framer]] | None:
    """Called once per registry build (first lookup after a plugin is registered or removed).

    Return a mapping of framing name -> factory; the factory is called with the user's options
    as keyword arguments and returns a fresh framer for one connection. All results are merged;
    a name returned by two plugins is a :class:`~polysock.errors.PluginError` naming both.
    """


@hookspec
def polysock_add_handshakes() -> Mapping[str, Callable[..., Handshake]] | None:
    """Called once per registry build, like :func:`polysock_add_framers`.

    Return a mapping of handshake name -> factory; the factory is called with ``role``
    (``"client"`` or ``"server"``) and the user's options as keyword arguments. All results are
    merged; a clash is a :class:`~polysock.errors.PluginError` naming both plugins.
    """


@hookspec
def polysock_add_flavours() -> list[Flavour] | None:
    """Called once per registry build.

    Return the :class:`~polysock.plugins.Flavour` descriptions (legacy API packages such as
    ``tcpcom``) the plugin provides. All results are merged; a flavour name returned by two
    plugins is a :class:`~polysock.errors.PluginError` naming both.
    """


@hookspec
def polysock_add_matrix_peers() -> list[MatrixPeer] | None:
    """Called once by ``polysock matrix`` (and the integration tests) to collect peers.

    Return the :class:`~polysock.matrix.MatrixPeer` objects the plugin offers: an echo server
    it can start on loopback and/or a client that exchanges a list of messages, both written
    with the flavour's public API. Peers whose wire keys are equal are paired. All results
    are concatenated; return value ``None`` contributes nothing.
    """


@hookspec
def polysock_add_bench_scenarios() -> list[BenchScenario] | None:
    """Called once by ``polysock bench`` (unless ``--no-flavours``) to collect scenarios.

    Return :class:`~polysock.bench.BenchScenario` objects: a flavour's own workload, run in
    separate server and client processes and compared with the raw-socket baseline of the same
    shape. All results are concatenated; ``None`` contributes nothing.
    """


# ---------------------------------------------------------------- per connection


@hookspec(firstresult=True)
def polysock_make_framer(name: str, options: Mapping[str, Any]) -> Framer | None:
    """Called for every new connection (and by :func:`polysock.framer`) to build its framer.

    Return a framer to use, or ``None`` to let the next plugin decide. First non-``None`` result
    wins; the core's implementation runs last and builds the registered framing ``name`` with
    ``options``, so a plugin can wrap or replace any framing for every connection.
    """


@hookspec(firstresult=True)
def polysock_make_handshake(name: str, role: str, options: Mapping[str, Any]) -> Handshake | None:
    """Called for every new connection whose handshake is not ``"none"``, before any message.

    ``role`` is ``"client"`` or ``"server"``. Return a handshake object or ``None`` to pass.
    First non-``None`` result wins; the core's implementation runs last and builds the
    registered handshake ``name``.
    """


# ---------------------------------------------------------------- events (observers)
# Called on the event-loop thread, in order, only when at least one plugin implements them
# (the transport checks once per connection and skips the call entirely otherwise). Return
# values are ignored; an exception raised by an observer is logged on "polysock.plugins" and
# does not affect the connection. Observers must not block: they run on the loop thread.


@hookspec
def polysock_connection_made(event: ConnectionMade) -> None:
    """Called when TCP is connected, before the handshake. Return value ignored."""


@hookspec
def polysock_handshake_complete(event: HandshakeComplete) -> None:
    """Called when the handshake finished, just before the first message can flow.

    Also called (with handshake ``"none"``) for connections without a handshake, so an observer
    can rely on it as "ready". Return value ignored.
    """


@hookspec
def polysock_message_received(event: MessageReceived) -> None:
    """Called once per decoded frame, after it was handed to the connection's handler.

    Return value ignored.
    """


@hookspec
def polysock_message_sent(event: MessageSent) -> None:
    """Called once per payload framed and handed to the transport.

    Return value ignored.
    """


@hookspec
def polysock_protocol_error(event: ProtocolErrorEvent) -> None:
    """Called when the peer broke the framing or the handshake, before the connection closes.

    Return value ignored.
    """


@hookspec
def polysock_connection_lost(event: ConnectionLost) -> None:
    """Called once per connection when it is closed, whatever the reason. Return ignored."""
