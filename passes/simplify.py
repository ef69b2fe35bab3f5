"""``simplify``: ONNX constant folding and dead-node removal with onnx-graphsurgeon."""

from __future__ import annotations

from yolocc.compiler.analyses import CALIBRATION
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.onnxgraph import folded
from yolocc.compiler.passbase import Pass, PassContext, PassResult


class Simplify(Pass):
    """Fold constants, remove dead nodes and sort the ONNX graph (onnx-graphsurgeon)."""

    name = "simplify"
    stage = "onnx"
    preserves = (CALIBRATION,)

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        import onnx

        before = ir.onnx_model
        after = folded(before)
        onnx.checker.check_model(after)
        n_before, n_after = len(before.graph.node), len(after.graph.node)
        modified = after.SerializeToString() != before.SerializeToString()
        if modified:
            ir.set_onnx(after)
        return PassResult(modified, {"nodes_before": n_before, "nodes_after": n_after})
