"""polysock plugin: makes the flavour visible to ``polysock plugins``, ``polysock matrix`` and
``polysock bench``.

simplesockets needs no framer of its own: its wire format is the core's ``raw`` framing.
The matrix peers and bench functions live in :mod:`simplesockets._matrix`, imported only
when a tool asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polysock import Flavour, hookimpl

if TYPE_CHECKING:
    from polysock.bench import BenchScenario
    from polysock.matrix import MatrixPeer


@hookimpl
def polysock_add_flavours() -> list[Flavour]:
    return [
        Flavour(
            name="simplesockets",
            summary="simplesockets TCPServer/TCPClient (MrPoisen): raw bytes, no framing",
            framing="raw",
            framing_options={},
            modules=("simplesockets",),
        )
    ]


@hookimpl
def polysock_add_matrix_peers() -> list[MatrixPeer]:
    from ._matrix import matrix_peers

    return matrix_peers()


@hookimpl
def polysock_add_bench_scenarios() -> list[BenchScenario]:
    from polysock.bench import BenchScenario

    return [
        BenchScenario(
            name="200 clients x 200 echo round trips",
            flavour="simplesockets",
            baseline="W4",
            server="simplesockets._matrix:bench_echo_server",
            client="simplesockets._matrix:bench_load_client",
            params={"conns": 200, "n": 200, "size": 32},
        )
    ]
