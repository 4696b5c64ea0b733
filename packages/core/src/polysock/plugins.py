"""Finding, loading and listing plugins.

Plugins come from the ``polysock`` entry-point group, each loaded in isolation: one that fails
to import is skipped with a :class:`~polysock.errors.PluginLoadWarning` naming its
distribution, version and error, so a broken flavour never takes the others down. Environment:

``POLYSOCK_STRICT_PLUGINS=1``   a plugin that fails to load is an error instead
``POLYSOCK_DISABLE_PLUGINS=a,b`` skip the entry points named ``a`` and ``b``
``POLYSOCK_NO_AUTOLOAD=1``       load only the built-ins and plugins registered in code
"""

from __future__ import annotations

import builtins
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, NamedTuple

import pluggy
from pluggy import HookCaller

from . import hookspecs
from .__about__ import __version__
from .errors import PluginError, PluginLoadError, PluginLoadWarning
from .framing import Framer
from .handshake import Handshake

__all__ = [
    "ENTRY_POINT_GROUP",
    "Flavour",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "list",
    "register",
    "reset",
    "unregister",
]

ENTRY_POINT_GROUP = "polysock"
CORE_PLUGIN_NAME = "polysock"

_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


@dataclass(frozen=True)
class Flavour:
    """A legacy API package built on polysock (what ``polysock_add_flavours`` returns).

    ``framing``/``framing_options`` name the wire format, so tools such as ``polysock serve``
    can speak it; ``modules`` are the import names the flavour provides.
    """

    name: str
    summary: str = ""
    framing: str = "raw"
    framing_options: Mapping[str, Any] = field(default_factory=dict)
    modules: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginInfo:
    """One line of ``polysock plugins``: what a plugin is, where from, what it registered."""

    name: str
    distribution: str | None
    version: str | None
    framers: tuple[str, ...] = ()
    handshakes: tuple[str, ...] = ()
    flavours: tuple[str, ...] = ()
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None


class EventHooks(NamedTuple):
    """Hook callers for the event hooks; ``None`` where no plugin implements the hook."""

    polysock_connection_made: HookCaller | None
    polysock_handshake_complete: HookCaller | None
    polysock_message_received: HookCaller | None
    polysock_message_sent: HookCaller | None
    polysock_protocol_error: HookCaller | None
    polysock_connection_lost: HookCaller | None

    @property
    def any(self) -> bool:
        return any(h is not None for h in self)


@dataclass
class _Registry:
    framers: dict[str, tuple[Callable[..., Framer], str]]
    handshakes: dict[str, tuple[Callable[..., Handshake], str]]
    flavours: dict[str, tuple[Flavour, str]]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus entry-point loading with isolation, and the name registries."""

    def __init__(self, *, builtins_only: bool = False) -> None:
        super().__init__("polysock")
        self.add_hookspecs(hookspecs)
        # Historic: every plugin registered from now on gets polysock_addhooks once.
        self.hook.polysock_addhooks.call_historic(kwargs={"pluginmanager": self})
        self._origins: dict[str, tuple[str | None, str | None]] = {}
        self._failed: dict[str, PluginInfo] = {}
        self._registry: _Registry | None = None
        self._events: EventHooks | None = None
        self._lock = threading.RLock()
        from .builtin import CorePlugin

        # Origins known up front skip _origin_of(), a scan of every installed distribution.
        self._origins[CORE_PLUGIN_NAME] = ("polysock", __version__)
        self.register(CorePlugin(self), name=CORE_PLUGIN_NAME)
        if not builtins_only:
            self.load_entrypoints()

    # -------------------------------------------------------------- registration

    def register(self, plugin: object, name: str | None = None) -> str | None:
        with self._lock:
            result = super().register(plugin, name)
            self._registry = None
            self._events = None
            if result is not None and result not in self._origins:
                self._origins[result] = _origin_of(plugin)
            return result

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        with self._lock:
            result = super().unregister(plugin, name)
            self._registry = None
            self._events = None
            return result

    def load_entrypoints(self) -> None:
        """Register every plugin of the entry-point group, honouring the environment."""
        if _env_flag("POLYSOCK_NO_AUTOLOAD"):
            return
        strict = _env_flag("POLYSOCK_STRICT_PLUGINS")
        disabled = {
            n.strip()
            for n in os.environ.get("POLYSOCK_DISABLE_PLUGINS", "").split(",")
            if n.strip()
        }
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if (
                ep.name in disabled
                or self.get_plugin(ep.name) is not None
                or self.is_blocked(ep.name)
            ):
                continue
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            dist_version = dist.version if dist is not None else None
            try:
                plugin = ep.load()
                self._origins[ep.name] = (dist_name, dist_version)
                self.register(plugin, name=ep.name)
            except Exception as exc:
                self._origins.pop(ep.name, None)
                where = f"{dist_name or 'an unknown distribution'} {dist_version or ''}".strip()
                message = (
                    f"polysock plugin {ep.name!r} from {where} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                )
                if strict:
                    raise PluginLoadError(message) from exc
                self._failed[ep.name] = PluginInfo(ep.name, dist_name, dist_version, error=message)
                warnings.warn(message + " (skipped)", PluginLoadWarning, stacklevel=2)
        self.check_pending()

    # -------------------------------------------------------------- registries

    @property
    def registry(self) -> _Registry:
        reg = self._registry
        if reg is None:
            with self._lock:
                # First use after (re)registration: every plugin that adds hook specs is in,
                # so an implementation of an unknown (misspelled) hook in a plugin registered
                # in code fails here, loudly, instead of never being called.
                self.check_pending()
                reg = self._registry = _Registry(
                    framers=self._collect("polysock_add_framers", "framer"),
                    handshakes=self._collect("polysock_add_handshakes", "handshake"),
                    flavours=self._collect_flavours(),
                )
        return reg

    def _describe(self, plugin_name: str) -> str:
        dist, version = self._origins.get(plugin_name, (None, None))
        return f"plugin {plugin_name!r}" + (f" ({dist} {version})" if dist else "")

    def _results(self, hookname: str) -> builtins.list[tuple[str, Any]]:
        # Call each implementation on its own so that every contribution is attributed to
        # its plugin: a clash error must name both sides. Registration order (the core
        # first), so that a clash blames the plugin that came later.
        out = []
        for impl in getattr(self.hook, hookname).get_hookimpls():
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginError(
                    f"{self._describe(impl.plugin_name)} failed in {hookname}(): {exc!r}"
                ) from exc
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    def _collect(self, hookname: str, kind: str) -> dict[str, tuple[Any, str]]:
        merged: dict[str, tuple[Any, str]] = {}
        for plugin_name, mapping in self._results(hookname):
            if not isinstance(mapping, Mapping):
                raise PluginError(
                    f"{self._describe(plugin_name)}: {hookname}() must return a mapping of "
                    f"name -> factory, not {type(mapping).__name__}"
                )
            for name, factory in mapping.items():
                if name in merged:
                    raise PluginError(
                        f"{kind} {name!r} is registered twice: "
                        f"by {self._describe(merged[name][1])} "
                        f"and by {self._describe(plugin_name)}; uninstall one of them or set "
                        f"POLYSOCK_DISABLE_PLUGINS={plugin_name}"
                    )
                if not callable(factory):
                    raise PluginError(
                        f"{self._describe(plugin_name)}: {kind} {name!r} is not callable"
                    )
                merged[name] = (factory, plugin_name)
        return merged

    def _collect_flavours(self) -> dict[str, tuple[Flavour, str]]:
        merged: dict[str, tuple[Flavour, str]] = {}
        for plugin_name, flavours in self._results("polysock_add_flavours"):
            if isinstance(flavours, Flavour) or not isinstance(flavours, (builtins.list, tuple)):
                raise PluginError(
                    f"{self._describe(plugin_name)}: polysock_add_flavours() must return a list "
                    f"of Flavour objects, not {type(flavours).__name__}"
                )
            for flavour in flavours:
                if not isinstance(flavour, Flavour):
                    raise PluginError(
                        f"{self._describe(plugin_name)}: polysock_add_flavours() must return "
                        f"Flavour objects, not {type(flavour).__name__}"
                    )
                if flavour.name in merged:
                    raise PluginError(
                        f"flavour {flavour.name!r} is registered twice: by "
                        f"{self._describe(merged[flavour.name][1])} and by "
                        f"{self._describe(plugin_name)}"
                    )
                merged[flavour.name] = (flavour, plugin_name)
        return merged

    def event_hooks(self) -> EventHooks:
        """The event hooks that have implementations (``None`` for the others), cached."""
        ev = self._events
        if ev is None:
            with self._lock:
                ev = self._events = EventHooks(
                    *(
                        caller if caller.get_hookimpls() else None
                        for caller in (getattr(self.hook, name) for name in EventHooks._fields)
                    )
                )
        return ev

    # -------------------------------------------------------------- lookups

    def make_framer(self, name: str, **options: Any) -> Framer:
        framer = self.hook.polysock_make_framer(name=name, options=options)
        if framer is None:  # only if a plugin blocked the core's implementation
            raise PluginError(f"no plugin built a framer for framing {name!r}")
        return framer  # type: ignore[no-any-return]

    def make_handshake(self, name: str, role: str, **options: Any) -> Handshake:
        handshake = self.hook.polysock_make_handshake(name=name, role=role, options=options)
        if handshake is None:
            raise PluginError(f"no plugin built a handshake for {name!r}")
        return handshake  # type: ignore[no-any-return]

    def framer_factory(self, name: str) -> Callable[..., Framer]:
        try:
            return self.registry.framers[name][0]
        except KeyError:
            known = ", ".join(sorted(self.registry.framers)) or "none"
            raise PluginError(
                f"unknown framing {name!r}; installed framings: {known} "
                "(is the plugin that provides it installed? see `polysock plugins`)"
            ) from None

    def handshake_factory(self, name: str) -> Callable[..., Handshake]:
        try:
            return self.registry.handshakes[name][0]
        except KeyError:
            known = ", ".join(sorted(self.registry.handshakes)) or "none"
            raise PluginError(
                f"unknown handshake {name!r}; installed handshakes: {known}"
            ) from None

    def flavour(self, name: str) -> Flavour:
        try:
            return self.registry.flavours[name][0]
        except KeyError:
            known = ", ".join(sorted(self.registry.flavours)) or "none"
            raise PluginError(f"unknown flavour {name!r}; installed flavours: {known}") from None

    def plugin_infos(self) -> builtins.list[PluginInfo]:
        """Every registered plugin with what it contributes, then the ones that failed."""
        reg = self.registry
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            dist, version = self._origins.get(name, (None, None))
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist,
                    version=version,
                    framers=tuple(sorted(n for n, (_, p) in reg.framers.items() if p == name)),
                    handshakes=tuple(
                        sorted(n for n, (_, p) in reg.handshakes.items() if p == name)
                    ),
                    flavours=tuple(sorted(n for n, (_, p) in reg.flavours.items() if p == name)),
                )
            )
        infos.sort(key=lambda i: (i.name != CORE_PLUGIN_NAME, i.name))
        return infos + sorted(self._failed.values(), key=lambda i: i.name)


def _origin_of(plugin: object) -> tuple[str | None, str | None]:
    """Best-effort distribution of a plugin registered in code (module -> distribution)."""
    module = plugin if isinstance(plugin, ModuleType) else None
    modname = module.__name__ if module else getattr(type(plugin), "__module__", "")
    top = (modname or "").partition(".")[0]
    try:
        dists = metadata.packages_distributions().get(top, [])
    except Exception:  # pragma: no cover - broken metadata on the path
        dists = []
    if dists:
        try:
            return dists[0], metadata.version(dists[0])
        except metadata.PackageNotFoundError:  # pragma: no cover
            return dists[0], None
    return None, None


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built (and entry points loaded) on first use."""
    global _manager
    pm = _manager
    if pm is None:
        with _manager_lock:
            pm = _manager
            if pm is None:
                pm = _manager = PluginManager()
    return pm


def reset() -> None:
    """Forget the process-wide manager; the next use reloads plugins (the environment too)."""
    global _manager
    with _manager_lock:
        _manager = None


def register(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module in code (works with ``POLYSOCK_NO_AUTOLOAD=1``)."""
    return get_plugin_manager().register(plugin, name)


def unregister(plugin: object | None = None, name: str | None = None) -> Any:
    return get_plugin_manager().unregister(plugin, name)


def list() -> builtins.list[PluginInfo]:
    """Every plugin: name, distribution, version, what it registers; failed ones last."""
    return get_plugin_manager().plugin_infos()
