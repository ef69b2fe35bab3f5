"""``fp16``: convert the ONNX graph to float16 (onnxruntime's converter), optionally keeping FP32 I/O."""

from __future__ import annotations

from yolocc.compiler.ir import ModelIR
from yolocc.compiler.onnxgraph import copy_header
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult


class FP16(Pass):
    """Convert weights and activations to float16; keep_io=true keeps FP32 inputs/outputs."""

    name = "fp16"
    stage = "onnx"
    makes = ("fp16",)
    rejects = {"quantized": "choose one of int8 and fp16"}
    params = (Param("keep_io", "bool", True, "keep the model's inputs and outputs in float32"),)

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        import onnx_graphsurgeon as gs
        from onnxruntime.transformers.float16 import convert_float_to_float16

        before = ir.onnx_model
        if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in before.graph.node):
            from yolocc.compiler.errors import UsageError

            raise UsageError("fp16 cannot follow int8/qdq: choose one of them")
        converted = convert_float_to_float16(before, keep_io_types=self.args["keep_io"], disable_shape_infer=False)
        graph = gs.import_onnx(converted)
        graph.toposort()  # the converter appends its I/O casts at the end
        after = gs.export_onnx(graph)
        copy_header(after, before)
        ir.set_onnx(after)
        return PassResult(True, {"bytes_before": before.ByteSize(), "bytes_after": after.ByteSize()})
