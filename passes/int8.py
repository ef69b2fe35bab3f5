"""``int8``: the macro fuse-bn -> calibrate -> qdq, with the arguments of its parts."""

from __future__ import annotations

from yolocc.compiler.passbase import Pass

from .calibrate import Calibrate
from .canonicalize import Canonicalize
from .fuse_bn import FuseBN
from .qdq import QDQ


#: The arguments of a *latency probe*'s INT8: the graph the final model has (the target's placement and
#: grid), on ranges from 16 images by minmax, with no bias correction or val confirmation; its accuracy
#: does not matter. Used where a structure is timed before it is trained (the branch search, ``prune``'s
#: ``round_to=auto`` on runtimes that time the model: ``channel_choice``).
LATENCY_PROBE = {"method": "minmax", "n": 16, "bias_correction": False, "confirm": False}


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
