"""How much of a Q/DQ graph onnxruntime's CPU provider turns into integer kernels."""

from __future__ import annotations

import collections
import os
import tempfile

import onnx

INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
               "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool", "ConvInteger",
               "MatMulInteger", "QGemm")


def optimized_op_counts(model: onnx.ModelProto) -> collections.Counter:
    """Op types of the graph after onnxruntime's extended CPU optimizations (QDQ fusion)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="yolocc-ortopt-") as tmp:
        out = os.path.join(tmp, "optimized.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = out
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        optimized = onnx.load(out)
    return collections.Counter(n.op_type for n in optimized.graph.node)


#: Activation ops that cost a pass of their own after fusion (SiLU is QLinearSigmoid + QLinearMul in int8).
ACTIVATION_OPS = ("Relu", "Clip", "QLinearSigmoid", "Sigmoid", "HardSwish", "HardSigmoid", "QuickGelu")


def fusion_summary(model: onnx.ModelProto) -> dict[str, int]:
    """Float Conv count before, and integer/float convs after onnxruntime's fusion."""
    counts = optimized_op_counts(model)
    return {"convs": sum(1 for n in model.graph.node if n.op_type == "Conv"),
            "qlinear_convs": counts.get("QLinearConv", 0), "float_convs_after": counts.get("Conv", 0),
            "integer_ops": sum(counts.get(op, 0) for op in INTEGER_OPS),
            "activations_after": {op: counts[op] for op in ACTIVATION_OPS if counts.get(op)}}
