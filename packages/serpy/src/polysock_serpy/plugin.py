"""The polysock plugin of polysock-serpy (entry point ``serpy`` in group ``polysock``).

It registers serpy's two framings through the core's hooks, so that every polysock tool can
speak them (``polysock.framer("serpy2")``, ``polysock demo``), describes the two legacy
flavours, and offers their peers to ``polysock matrix`` and their workloads to ``polysock
bench`` (both in :mod:`polysock_serpy.matrix_peers`, imported only when a tool asks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from polysock import Flavour, Framer, hookimpl

from .framing import Serpy2Framer, SerpyBlockFramer

if TYPE_CHECKING:
    from polysock.bench import BenchScenario
    from polysock.matrix import MatrixPeer

FRAMERS: dict[str, Callable[..., Framer]] = {
    "serpy": SerpyBlockFramer,
    "serpy2": Serpy2Framer,
}


@hookimpl
def polysock_add_framers() -> Mapping[str, Callable[..., Framer]]:
    return FRAMERS


@hookimpl
def polysock_add_flavours() -> list[Flavour]:
    return [
        Flavour(
            name="serpy",
            summary="serpy protocol 1: 0x1F-separated blocks, in-band mode switches and "
            "acknowledgements, base85/pickle modes",
            framing="serpy",
            framing_options={},
            modules=("serpy",),
        ),
        Flavour(
            name="serpy2",
            summary="serpy protocol 2: 14-byte headers (magic, type, byte-sum checksum, "
            "length) for str/bytes/int/float, geared to large binary blobs",
            framing="serpy2",
            framing_options={},
            modules=("serpy2",),
        ),
    ]


@hookimpl
def polysock_add_matrix_peers() -> list[MatrixPeer]:
    from .matrix_peers import matrix_peers

    return matrix_peers()


@hookimpl
def polysock_add_bench_scenarios() -> list[BenchScenario]:
    from polysock.bench import BenchScenario

    peers = "polysock_serpy.matrix_peers"
    return [
        BenchScenario(
            name="32 B messages one way",
            flavour="serpy",
            baseline="W1",
            server=f"{peers}:serpy_one_way_server",
            client=f"{peers}:serpy_one_way_client",
            params={"n": 100_000, "size": 32},
        ),
        BenchScenario(
            name="64 x 1 MiB blobs one way",
            flavour="serpy2",
            baseline="W3",
            server=f"{peers}:serpy2_blob_server",
            client=f"{peers}:serpy2_blob_client",
            params={"n": 64, "size": 1 << 20},
            target=0.5,  # the flavour's own goal: half the plain-socket rate
        ),
    ]
