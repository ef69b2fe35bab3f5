"""The plugin manager factory and the registry that hooks fill.

Built-in passes and integrations register through exactly the hooks a third party uses; external
plugins come from the ``yolocc`` entry-point group. ``YOLOCC_DISABLE_PLUGINS`` (comma-separated
names) blocks entry-point plugins. Nothing is built at import time: call ``get_plugin_manager``.

Registration hooks are called through pluggy (so hookwrappers run). Each registration hook
implementation is wrapped once, when its plugin is registered, so that what it adds to the
``Registry`` is attributed to its plugin and its failures name that plugin.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, PipelineError, UsageError
from .guard import guard
from .interfaces import Emitter, Frontend
from .options import DEFAULT_SEARCH
from .passbase import Pass
from .search import SearchStrategy
from .target import Target

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "yolocc"
DISABLE_ENV = "YOLOCC_DISABLE_PLUGINS"
BUILTIN_MODULES = ("yolocc.passes.builtin", "yolocc.strategies.builtin", "yolocc.plugins.builtin")


@dataclass
class Registered:
    """A registered object and the plugin that provided it."""

    obj: Any
    provider: str


@dataclass
class Registry:
    """Passes, frontends, emitters, targets and search strategies by name, each with its provider."""

    passes: dict[str, Registered] = field(default_factory=dict)
    frontends: dict[str, Registered] = field(default_factory=dict)
    emitters: dict[str, Registered] = field(default_factory=dict)
    targets: dict[str, Registered] = field(default_factory=dict)
    strategies: dict[str, Registered] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # plugin name -> why it failed to load

    @property
    def provider(self) -> str:
        """The plugin whose registration hook is running."""
        return _PROVIDER.get()

    def _add(self, table: dict, kind: str, name: str, obj: Any) -> None:
        if not name:
            raise PluginError(f"plugin '{self.provider}' registered a {kind} without a name")
        if name in table:
            raise PluginError(f"plugin '{self.provider}' registers {kind} '{name}', "
                              f"which plugin '{table[name].provider}' already provides")
        table[name] = Registered(obj, self.provider)

    def add_pass(self, cls: type[Pass]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            raise PluginError(f"plugin '{self.provider}' registered {cls!r}, which is not a Pass subclass")
        if cls.stage not in ("torch", "onnx"):
            raise PluginError(f"plugin '{self.provider}': pass '{cls.name}' has unknown stage '{cls.stage}'")
        self._add(self.passes, "pass", cls.name, cls)

    def _guarded(self, obj: Any, kind: str) -> Any:
        """A third-party object's failures name its plugin (``guard``); built-ins stay as they are."""
        return obj if self.provider in BUILTIN_MODULES else guard(obj, self.provider, kind)

    def add_frontend(self, frontend: Frontend) -> None:
        self._add(self.frontends, "frontend", frontend.name, self._guarded(frontend, "frontend"))

    def add_emitter(self, emitter: Emitter) -> None:
        self._add(self.emitters, "emitter", emitter.name, self._guarded(emitter, "emitter"))

    def add_target(self, target: Target) -> None:
        if not isinstance(target, Target):
            raise PluginError(f"plugin '{self.provider}' registered {target!r}, which is not a Target")
        self._add(self.targets, "target", target.name, self._guarded(target, "target"))

    def add_strategy(self, strategy: SearchStrategy) -> None:
        """A search strategy for ``--search NAME`` (see ``compiler.search``)."""
        if not isinstance(strategy, SearchStrategy):
            raise PluginError(f"plugin '{self.provider}' registered {strategy!r}, which is not a SearchStrategy")
        self._add(self.strategies, "search strategy", strategy.name, self._guarded(strategy, "strategy"))

    # ------------------------------------------------------------ lookups
    def pass_class(self, name: str) -> type[Pass]:
        if name not in self.passes:
            hint = ""
            if self.broken:
                hint = f" (plugins that failed to load: {', '.join(sorted(self.broken))})"
            raise PipelineError(f"unknown pass '{name}'; available passes: "
                                f"{', '.join(sorted(self.passes))}{hint}")
        return self.passes[name].obj

    def emitter_for(self, path: str | Path) -> Emitter:
        """The emitter whose suffix matches the end of ``path`` (longest match: ``.onnx.gz`` > ``.gz``)."""
        name = Path(path).name.lower()
        matches = [(len(s), reg.obj) for reg in self.emitters.values() for s in reg.obj.suffixes if name.endswith(s)]
        if matches:
            return max(matches, key=lambda m: m[0])[1]
        suffix = Path(path).suffix.lower()
        known = sorted(s for reg in self.emitters.values() for s in reg.obj.suffixes)
        raise UsageError(f"no emitter writes '{suffix or path}' files; use one of: {', '.join(known)}")

    def target(self, name: str) -> Target:
        if name not in self.targets:
            raise UsageError(f"unknown target '{name}'; available targets: {', '.join(sorted(self.targets))}")
        return self.targets[name].obj

    def strategy(self, name: str | None) -> SearchStrategy:
        """The search strategy ``name`` (None: ``options.DEFAULT_SEARCH``)."""
        name = name or DEFAULT_SEARCH
        if name not in self.strategies:
            raise UsageError(f"unknown search strategy '{name}'; available strategies: "
                             f"{', '.join(sorted(self.strategies))}")
        return self.strategies[name].obj


_PROVIDER: contextvars.ContextVar[str] = contextvars.ContextVar("yolocc_provider", default="?")
REGISTRATION_HOOKS = ("yolocc_register_passes", "yolocc_register_frontends",
                      "yolocc_register_emitters", "yolocc_register_targets", "yolocc_register_strategies")


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class PluginManager(pluggy.PluginManager):
    """yolocc's pluggy manager: the hookspecs, plus which entry-point plugins failed to load and the
    versions of those that loaded (part of the cache key)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.broken: dict[str, str] = {}
        self.versions: dict[str, str] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` and attribute its registration hooks to ``name``."""
        registered = super().register(plugin, name)
        if registered is not None:
            for hook_name in REGISTRATION_HOOKS:
                for impl in getattr(self.hook, hook_name).get_hookimpls():
                    if impl.plugin_name == registered and not getattr(impl.function, "_yolocc_attributed", False):
                        impl.function = _attributed(impl.function, registered, hook_name)
        return registered


def _attributed(function, plugin_name: str, hook_name: str):
    """``function`` run with ``plugin_name`` as the registry's provider; its errors name the plugin."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        token = _PROVIDER.set(plugin_name)
        try:
            return function(*args, **kwargs)
        except PluginError:
            raise
        except Exception as e:
            raise PluginError(f"plugin '{plugin_name}' failed in {hook_name}: {type(e).__name__}: {e}") from e
        finally:
            _PROVIDER.reset(token)

    call._yolocc_attributed = True  # type: ignore[attr-defined]
    return call


def get_plugin_manager(load_entry_points: bool = True) -> PluginManager:
    """A fresh plugin manager with the hookspecs, the built-ins and the installed plugins.

    A plugin that implements a ``yolocc_*`` hook no spec defines (a misspelling) is an error naming it."""
    pm = PluginManager()
    for modname in BUILTIN_MODULES:
        pm.register(importlib.import_module(modname), name=modname)
    if load_entry_points:
        blocked = disabled_plugins()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in blocked or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
                pm.versions[ep.name] = ep.dist.version if ep.dist else "?"
            except BaseException as e:  # a broken plugin (even one calling sys.exit) must not take down the others
                if isinstance(e, KeyboardInterrupt):
                    raise
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                pm.broken[ep.name] = why
                log.warning("plugin '%s' failed to load and is skipped (%s); set %s=%s to hide this",
                            ep.name, why, DISABLE_ENV, ep.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        name = pm.get_name(e.plugin) if e.plugin is not None else "?"
        raise PluginError(f"plugin '{name}': {str(e).splitlines()[0]} (known hooks: "
                          f"{', '.join(n for n in dir(hookspecs) if n.startswith('yolocc_'))}; "
                          f"set {DISABLE_ENV}={name} to skip it)") from e
    return pm


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook through pluggy; entries know the plugin that added them."""
    reg = Registry(broken=dict(getattr(pm, "broken", {})))
    for hook_name in REGISTRATION_HOOKS:
        getattr(pm.hook, hook_name)(registry=reg)
    return reg
