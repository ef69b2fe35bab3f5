"""``act``: swap SiLU for an activation the target's integer kernels absorb.

onnxruntime runs an int8 SiLU as QLinearSigmoid + QLinearMul: two more passes over every feature
map. A ReLU (or ReLU6, a Clip) in front of a QuantizeLinear disappears into the QLinearConv before
it. The swap changes what the model computes, so it is meant to be followed by ``distill``; the
teacher stays the SiLU model (the snapshot is taken here when no earlier pass took one).
"""

from __future__ import annotations


import torch.nn as nn

from yolocc.compiler.analyses import CANONICAL
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult, keep_teacher

#: The activations ``to=`` offers.
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


def swap_silu(module: nn.Module, make: type[nn.Module]) -> int:
    """Replace every ``nn.SiLU`` child in ``module`` by ``make()``; returns how many references changed.

    Walks every parent's own children rather than ``named_modules()``, which lists a shared module
    once: Ultralytics' ``Conv`` gives all its instances one class-level ``default_act``. A module
    shared by several parents gets one shared replacement; the class attribute itself is untouched,
    so models built later keep SiLU."""
    replaced: dict[int, nn.Module] = {}
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.SiLU:
                new = replaced.setdefault(id(child), make())
                setattr(parent, name, new)
                count += 1
    return count


class Act(Pass):
    """Swap SiLU for ReLU/ReLU6/HardSwish, which the target's int8 kernels fuse; follow it with distill."""

    name = "act"
    stage = "torch"
    preserves = (CANONICAL,)
    needs_recovery = True
    params = (Param("to", "choice", "relu", "the activation that replaces SiLU (relu: folded into "
                    "onnxruntime's QLinearConv; relu6: a Clip, folded too; hardswish: float between int8 convs)",
                    choices=tuple(ACTIVATIONS)),)

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        if not any(type(m) is nn.SiLU for m in ir.module.modules()):
            return PassResult(False, {"reason": "no nn.SiLU modules"})
        keep_teacher(ir)  # the distillation teacher (and epochs=auto's reference) stays the SiLU model
        count = swap_silu(ir.module, ACTIVATIONS[self.args["to"]])
        return PassResult(True, {"to": self.args["to"], "replaced": count})
