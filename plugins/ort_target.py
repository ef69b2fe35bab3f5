"""The ``ort-cpu`` target: onnxruntime's CPU provider with its integer (QLinear*) kernels."""

from __future__ import annotations

from yolocc.compiler.target import Placement, QuantScheme, Target, Verification

from .ort_fusion import fusion_summary
from .ort_runtime import OrtCpuRuntime


class OrtCpuTarget(Target):
    name = "ort-cpu"
    doc = "onnxruntime CPU: U8 activations, S8 per-channel weights, DQ->op->Q patterns fused into integer kernels"
    scheme = QuantScheme(activation_dtype="uint8", activation_symmetric=False, quantize_bias=True)
    auto_candidate = True
    placement = Placement(
        input_ops=("Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Concat", "MaxPool", "Resize",
                   "GlobalAveragePool", "AveragePool", "Relu", "Clip", "LeakyRelu"),
        output_ops=("Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Concat", "GlobalAveragePool",
                    "AveragePool", "Relu", "Clip", "LeakyRelu"),
        passthrough_ops=("MaxPool", "Resize", "Reshape", "Transpose", "Slice", "Split", "Flatten", "Squeeze",
                         "Unsqueeze"),
        share_concat_ranges=True,
        # onnxruntime's int8 convolution is slow on a 3-channel stem: float there is faster end to end.
        float_below_channels=4,
        fused_activations=("Relu", "Clip"),
    )

    def verify(self, model) -> Verification:
        return Verification(facts={"ort_fusion": fusion_summary(model)})

    def runtime(self) -> OrtCpuRuntime:
        return OrtCpuRuntime()
