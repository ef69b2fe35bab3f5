"""The hooks every yolocc plugin, built-in or third-party, implements."""

from __future__ import annotations

import pluggy

PROJECT = "yolocc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def yolocc_register_passes(registry) -> None:
    """Add pass classes: ``registry.add_pass(MyPass)``."""


@hookspec
def yolocc_register_frontends(registry) -> None:
    """Add model loaders: ``registry.add_frontend(MyFrontend())``."""


@hookspec
def yolocc_register_emitters(registry) -> None:
    """Add artifact writers: ``registry.add_emitter(MyEmitter())``."""


@hookspec
def yolocc_register_targets(registry) -> None:
    """Add execution targets: ``registry.add_target(MyTarget())``."""


@hookspec
def yolocc_before_pass(pass_, ir, ctx) -> None:
    """Called before each pass runs (timing, progress, IR dumps)."""


@hookspec
def yolocc_after_pass(pass_, ir, ctx, result) -> None:
    """Called after each pass has run, with its ``PassResult``."""
