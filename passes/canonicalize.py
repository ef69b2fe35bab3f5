"""``canonicalize``: numerically equivalent rewrites that make a model prunable and fast.

The rewrites belong to the framework, so the pass asks the model's frontend for them (Ultralytics:
C2f's channel split becomes two convolutions, DFL's softmax moves to the last axis). A model whose
frontend has none passes through unchanged.
"""

from __future__ import annotations

from yolocc.compiler.analyses import CANONICAL
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.passbase import Pass, PassContext, PassResult


class Canonicalize(Pass):
    """Equivalent rewrites from the model's frontend that make the graph prunable (C2f split -> two convs)."""

    name = "canonicalize"
    stage = "torch"
    provides = (CANONICAL,)

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        counts = ctx.frontend.canonicalize(ir, ctx.target.capabilities)
        ir.analyses[CANONICAL] = True
        return PassResult(bool(counts), {"rewrites": counts})
