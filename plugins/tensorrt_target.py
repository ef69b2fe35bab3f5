"""The ``tensorrt`` target: TensorRT's explicit quantization (symmetric S8, Q/DQ where TensorRT wants them)."""

from __future__ import annotations

from yolocc.compiler.target import Placement, QuantScheme, Target, Verification

from .tensorrt_check import check_tensorrt_qdq


class TensorRTTarget(Target):
    name = "tensorrt"
    doc = ("TensorRT explicit quantization: symmetric S8 (zero-point 0), per-channel weights on axis 0, "
           "Q/DQ on the inputs of Conv/Gemm/MatMul, residual Add, pooling and concat; SiLU fused into the conv")
    scheme = QuantScheme(activation_dtype="int8", activation_symmetric=True, quantize_bias=False)
    placement = Placement(input_ops=("Conv", "Gemm", "MatMul", "Add", "MaxPool", "Concat", "GlobalAveragePool",
                                     "AveragePool"), fuses_conv_add=True)
    # The default artifact stays the Q/DQ ONNX (what trtexec and TensorRT's parser read); ``-o NAME.engine``
    # builds an engine where TensorRT is installed.

    def verify(self, model) -> Verification:
        problems = check_tensorrt_qdq(model)
        return Verification(facts={"tensorrt_rule_violations": len(problems)}, problems=problems[:5])

    # No TensorRT runtime here: latency and accuracy are measured with the default runtime
    # (onnxruntime CPU), and the report names that runtime.
