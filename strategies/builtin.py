"""Registers the built-in search strategies through the same hook a third-party plugin uses."""

from __future__ import annotations

from yolocc.compiler.hookspecs import hookimpl

from .ladder import LadderSearch


@hookimpl
def yolocc_register_strategies(registry) -> None:
    registry.add_strategy(LadderSearch())
