"""The hooks every yolocc plugin, built-in or third-party, implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .ir import ModelIR
    from .passbase import Pass, PassContext, PassResult
    from .registry import Registry

PROJECT = "yolocc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def yolocc_register_passes(registry: Registry) -> None:
    """Add pass classes: ``registry.add_pass(MyPass)``."""


@hookspec
def yolocc_register_frontends(registry: Registry) -> None:
    """Add model loaders: ``registry.add_frontend(MyFrontend())``."""


@hookspec
def yolocc_register_emitters(registry: Registry) -> None:
    """Add artifact writers: ``registry.add_emitter(MyEmitter())``."""


@hookspec
def yolocc_register_targets(registry: Registry) -> None:
    """Add execution targets: ``registry.add_target(MyTarget())``."""


@hookspec
def yolocc_register_strategies(registry: Registry) -> None:
    """Add budget search strategies (``--search NAME``): ``registry.add_strategy(MyStrategy())``."""


@hookspec
def yolocc_before_pass(pass_: Pass, ir: ModelIR, ctx: PassContext) -> None:
    """Called before each pass runs (timing, progress, IR dumps)."""


@hookspec
def yolocc_after_pass(pass_: Pass, ir: ModelIR, ctx: PassContext, result: PassResult) -> None:
    """Called after each pass has run, with its ``PassResult``."""
