"""``int8``: the macro fuse-bn -> calibrate -> qdq, with the arguments of its parts."""

from __future__ import annotations

from yolocc.compiler.passbase import Pass

from .calibrate import Calibrate
from .canonicalize import Canonicalize
from .fuse_bn import FuseBN
from .qdq import QDQ


class Int8(Pass):
    """INT8 post-training quantization: canonicalize, fuse-bn, calibrate, qdq (macro)."""

    name = "int8"
    stage = "torch"
    #: The parameters of its parts, in order: calibrate's (method, n, percentile, bias_correction,
    #: confirm, folds, refit), then qdq's (exclude, keep_tail_float, float_head_convs, max_drop).
    params = Calibrate.params + QDQ.params

    def expand(self, stage: str) -> list[Pass]:
        a = self.args
        # At the torch stage: canonical form (its DFL exports to a faster graph) and BN folding;
        # an ONNX input has its BN folded already.
        torch_part = [Canonicalize(), FuseBN()] if stage == "torch" else []
        return torch_part + [
                Calibrate(**{p.name: a[p.name] for p in Calibrate.params}),
                QDQ(**{p.name: a[p.name] for p in QDQ.params})]
