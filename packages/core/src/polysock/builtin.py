"""The core's own plugin: registers the built-in framers and handshakes through the hooks.

It is registered first, as plugin ``"polysock"``, by every :class:`PluginManager`, so the
built-ins go through exactly the path a third-party plugin does; its ``polysock_make_*``
implementations run last and build whatever name the registries hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .framing import DelimiterFramer, Framer, LengthPrefixFramer, RawFramer
from .handshake import Handshake, NoHandshake, TLSHandshake
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .plugins import PluginManager

BUILTIN_FRAMERS: dict[str, Callable[..., Framer]] = {
    "raw": RawFramer,
    "delimiter": DelimiterFramer,
    "length-prefix": LengthPrefixFramer,
}
BUILTIN_HANDSHAKES: dict[str, Callable[..., Handshake]] = {
    "none": NoHandshake,
    "tls": TLSHandshake,
}


class CorePlugin:
    def __init__(self, pm: PluginManager) -> None:
        self._pm = pm

    @hookimpl
    def polysock_add_framers(self) -> Mapping[str, Callable[..., Framer]]:
        return BUILTIN_FRAMERS

    @hookimpl
    def polysock_add_handshakes(self) -> Mapping[str, Callable[..., Handshake]]:
        return BUILTIN_HANDSHAKES

    @hookimpl(trylast=True)
    def polysock_make_framer(self, name: str, options: Mapping[str, Any]) -> Framer:
        return self._pm.framer_factory(name)(**options)

    @hookimpl(trylast=True)
    def polysock_make_handshake(
        self, name: str, role: str, options: Mapping[str, Any]
    ) -> Handshake:
        return self._pm.handshake_factory(name)(role=role, **options)
