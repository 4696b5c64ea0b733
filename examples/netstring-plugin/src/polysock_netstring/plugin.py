"""The polysock plugin: the module the ``polysock`` entry point names.

polysock imports it when it builds its plugin manager and calls its hook implementations;
``polysock_add_framers`` adds the name ``"netstring"``, so ``polysock.connect(...,
framing="netstring", framing_options={"max_frame_size": 4096})`` builds a
:class:`~polysock_netstring.NetstringFramer` with those options for each connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from polysock import Framer, hookimpl

from .framing import NetstringFramer


@hookimpl
def polysock_add_framers() -> Mapping[str, Callable[..., Framer]]:
    return {"netstring": NetstringFramer}
