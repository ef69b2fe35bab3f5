"""Registers the built-in passes through the public ``yolocc_register_passes`` hook."""

from yolocc.compiler.hookspecs import hookimpl

from .act import Act
from .calibrate import Calibrate
from .canonicalize import Canonicalize
from .finetune import Distill, Finetune
from .fp16 import FP16
from .fuse_bn import FuseBN
from .int8 import Int8
from .prune import Prune
from .qat import QAT, QATTrain
from .qdq import QDQ
from .sensitivity import Sensitivity
from .simplify import Simplify


# tryfirst: built-ins register before any third-party plugin (pluggy calls later plugins first otherwise).
@hookimpl(tryfirst=True)
def yolocc_register_passes(registry):
    for cls in (Canonicalize, Act, Sensitivity, Prune, FuseBN, Finetune, Distill, Simplify, Calibrate, QATTrain, QDQ, Int8, QAT, FP16):
        registry.add_pass(cls)
