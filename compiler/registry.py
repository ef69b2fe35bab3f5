"""The plugin manager factory and the registry that hooks fill.

Built-in passes and integrations register through exactly the hooks a third party uses; external
plugins come from the ``yolocc`` entry-point group. ``YOLOCC_DISABLE_PLUGINS`` (comma-separated
names) blocks entry-point plugins. Nothing is built at import time: call ``get_plugin_manager``.
"""

from __future__ import annotations

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
from .interfaces import Emitter, Frontend, Target
from .passbase import Pass

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "yolocc"
DISABLE_ENV = "YOLOCC_DISABLE_PLUGINS"
BUILTIN_MODULES = ("yolocc.passes.builtin", "yolocc.plugins.builtin")


@dataclass
class Registered:
    """A registered object and the plugin that provided it."""

    obj: Any
    provider: str


@dataclass
class Registry:
    """Passes, frontends, emitters and targets by name, each with its provider."""

    passes: dict[str, Registered] = field(default_factory=dict)
    frontends: dict[str, Registered] = field(default_factory=dict)
    emitters: dict[str, Registered] = field(default_factory=dict)
    targets: dict[str, Registered] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # plugin name -> why it failed to load
    provider: str = "?"  # set while a plugin's hook runs

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

    def add_frontend(self, frontend: Frontend) -> None:
        self._add(self.frontends, "frontend", frontend.name, frontend)

    def add_emitter(self, emitter: Emitter) -> None:
        self._add(self.emitters, "emitter", emitter.name, emitter)

    def add_target(self, target: Target) -> None:
        self._add(self.targets, "target", target.name, target)

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


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def get_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the hookspecs, the built-ins and the installed plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.broken = {}  # type: ignore[attr-defined]
    pm.versions = {}  # type: ignore[attr-defined]  # entry-point plugin -> its distribution's version
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
                pm.versions[ep.name] = ep.dist.version if ep.dist else "?"  # type: ignore[attr-defined]
            except Exception as e:  # a broken plugin must not take down the others
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                pm.broken[ep.name] = why  # type: ignore[attr-defined]
                log.warning("plugin '%s' failed to load and is skipped (%s); set %s=%s to hide this",
                            ep.name, why, DISABLE_ENV, ep.name)
    return pm


_REGISTRATION_HOOKS = ("yolocc_register_passes", "yolocc_register_frontends",
                       "yolocc_register_emitters", "yolocc_register_targets")


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook, one plugin at a time, so each entry knows its provider."""
    reg = Registry(broken=dict(getattr(pm, "broken", {})))
    for hook_name in _REGISTRATION_HOOKS:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            reg.provider = impl.plugin_name
            try:
                impl.function(registry=reg)
            except PluginError:
                raise
            except Exception as e:
                raise PluginError(f"plugin '{impl.plugin_name}' failed in {hook_name}: "
                                  f"{type(e).__name__}: {e}") from e
    reg.provider = "?"
    return reg
