"""Registers the built-in passes through the public ``yolocc_register_passes`` hook."""

from yolocc.compiler.hookspecs import hookimpl

from .calibrate import Calibrate
from .canonicalize import Canonicalize
from .finetune import Distill, Finetune
from .fp16 import FP16
from .fuse_bn import FuseBN
from .int8 import Int8
from .prune import Prune
from .qdq import QDQ
from .simplify import Simplify


@hookimpl
def yolocc_register_passes(registry):
    for cls in (Canonicalize, Prune, FuseBN, Finetune, Distill, Simplify, Calibrate, QDQ, Int8, FP16):
        registry.add_pass(cls)
