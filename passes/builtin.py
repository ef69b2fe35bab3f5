"""Registers the built-in passes through the public ``yolocc_register_passes`` hook."""

from yolocc.compiler.hookspecs import hookimpl

from .canonicalize import Canonicalize
from .fuse_bn import FuseBN
from .prune import Prune
from .simplify import Simplify


@hookimpl
def yolocc_register_passes(registry):
    for cls in (Canonicalize, Prune, FuseBN, Simplify):
        registry.add_pass(cls)
