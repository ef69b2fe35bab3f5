"""Execution targets: the quantization rules that follow from how the graph will run."""

from __future__ import annotations

from dataclasses import dataclass

from yolocc.compiler.interfaces import Target


@dataclass(frozen=True, kw_only=True)
class QuantTarget(Target):
    """Quantization rules of one runtime."""

    name: str
    doc: str
    activation_dtype: str  # "uint8" | "int8"
    activation_symmetric: bool
    #: Ops whose float activation inputs get Q/DQ.
    input_ops: tuple[str, ...]
    #: Ops whose outputs also get Q/DQ (so the runtime can fuse DQ -> op -> Q into an integer kernel).
    output_ops: tuple[str, ...]
    #: Data-movement ops: their output reuses the input's scale/zero point, so the runtime can
    #: drop the Q/DQ around them and move int8 data directly.
    passthrough_ops: tuple[str, ...] = ()
    weight_axis: int = 0
    #: Conv/Gemm bias as int32 behind DequantizeLinear (onnxruntime's QLinearConv wants it).
    quantize_bias: bool = True
    #: Convolutions with fewer input channels than this (and their activation) stay float.
    float_below_channels: int = 0


ORT_CPU = QuantTarget(
    name="ort-cpu",
    doc="onnxruntime CPU: U8 activations, S8 per-channel weights, DQ->op->Q patterns fused into integer kernels",
    activation_dtype="uint8", activation_symmetric=False,
    input_ops=("Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Concat", "MaxPool", "Resize",
               "GlobalAveragePool", "AveragePool", "Relu", "Clip", "LeakyRelu"),
    output_ops=("Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Concat", "GlobalAveragePool",
                "AveragePool", "Relu", "Clip", "LeakyRelu"),
    passthrough_ops=("MaxPool", "Resize", "Reshape", "Transpose", "Slice", "Split", "Flatten", "Squeeze",
                     "Unsqueeze"),
    # onnxruntime's int8 convolution is slow on a 3-channel stem (YOLOv8n@640: 4.5 ms as QLinearConv,
    # a tenth of the int8 model); float there is faster end to end (benchmarks/int8.py, README).
    float_below_channels=4,
)

TENSORRT = QuantTarget(
    name="tensorrt",
    doc="TensorRT explicit quantization: symmetric S8 (zero-point 0), per-channel weights on axis 0, "
        "Q/DQ on the inputs of Conv/Gemm/MatMul, residual Add, pooling and concat; SiLU fused into the conv",
    activation_dtype="int8", activation_symmetric=True,
    input_ops=("Conv", "Gemm", "MatMul", "Add", "MaxPool", "Concat", "GlobalAveragePool", "AveragePool"),
    output_ops=(),
    quantize_bias=False,
)

TARGETS = (ORT_CPU, TENSORRT)
