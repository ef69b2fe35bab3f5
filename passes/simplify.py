"""``simplify``: ONNX constant folding and dead-node removal with onnx-graphsurgeon."""

from __future__ import annotations

from yolocc.compiler.ir import ModelIR
from yolocc.compiler.passbase import Pass, PassContext, PassResult


class Simplify(Pass):
    """Fold constants, remove dead nodes and sort the ONNX graph (onnx-graphsurgeon)."""

    name = "simplify"
    stage = "onnx"
    preserves = ("calibration",)

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        import onnx
        import onnx_graphsurgeon as gs

        before = ir.onnx_model
        graph = gs.import_onnx(before)
        graph.fold_constants().cleanup().toposort()
        after = gs.export_onnx(graph)
        after.ir_version = before.ir_version
        del after.opset_import[:]
        after.opset_import.extend(before.opset_import)
        after.metadata_props.extend(before.metadata_props)
        after.producer_name, after.producer_version = before.producer_name, before.producer_version
        onnx.checker.check_model(after)
        n_before, n_after = len(before.graph.node), len(after.graph.node)
        modified = after.SerializeToString() != before.SerializeToString()
        if modified:
            ir.set_onnx(after)
        return PassResult(modified, {"nodes_before": n_before, "nodes_after": n_after})
