"""Registers the built-in search strategies through the same hook a third-party plugin uses."""

from __future__ import annotations

from yolocc.compiler.hookspecs import hookimpl

from .branch import BranchSearch
from .ladder import LadderSearch


@hookimpl
def yolocc_register_strategies(registry) -> None:
    registry.add_strategy(LadderSearch())
    registry.add_strategy(BranchSearch())
