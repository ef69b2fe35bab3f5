"""OpenVINO's int8 ceiling: the faster of two large int8 kernels, both compiled as every latency is
(``compile_cpu``: one stream, latency hint):
- one Q/DQ MatMul (u8 activations x s8 weights), which OpenVINO's low-precision transformations turn
  into an int8 FullyConnected;
- one Q/DQ 3x3 convolution (``compiler.channels.qdq_conv_model``: ``CONV_CHANNELS`` in and out, a
  ``CONV_SPATIAL`` squared map), the kernel a YOLO model's time goes to.

The MatMul alone is not a ceiling on every ISA. On AVX-512 VNNI it measured 770 GMAC/s, well above
what the models' convolutions sustain (README, Results). On an AVX2-only AMD EPYC it reached 46.6
GMAC/s while the convolutions of yolov8n at 640 sustained 65-81 GMAC/s, which read as efficiencies
above 100%. On that machine the 3x3 convolution ran about 2x the MatMul's rate (session 20, measured
side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from yolocc.compiler.ceiling import GEMM_SHAPE, fastest_gmacs, measured_ceiling
from yolocc.compiler.channels import qdq_conv_model

from .openvino_emitter import require_openvino


def qdq_gemm_model(m: int, k: int, n: int):
    """An ONNX model: ``DQ(Q(a, u8)) [m, k] @ DQ(B s8) [k, n]``, B a constant, float32 output."""
    from onnx import TensorProto, helper, numpy_helper

    from yolocc.compiler.onnxgraph import probe_model

    b = np.random.default_rng(0).integers(-64, 64, size=(k, n), dtype=np.int8)  # 7-bit: no pair saturation
    inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(1 / 255, np.float32), "a_scale"),
             numpy_helper.from_array(np.array(0, np.uint8), "a_zero"),
             numpy_helper.from_array(np.array(0.01, np.float32), "b_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["a", "a_scale", "a_zero"], ["a_q"]),
             helper.make_node("DequantizeLinear", ["a_q", "a_scale", "a_zero"], ["a_dq"]),
             helper.make_node("DequantizeLinear", ["b", "b_scale", "b_zero"], ["b_dq"]),
             helper.make_node("MatMul", ["a_dq", "b_dq"], ["y"])]
    graph = helper.make_graph(nodes, "int8_gemm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    return probe_model(graph)


def measure_gemm(compile_cpu: Callable, shape: tuple[int, int, int] = GEMM_SHAPE, threads: int = 0, runs: int = 20,
                 warmup: int = 3) -> float:
    """GMAC/s of the fastest of ``runs`` Q/DQ GEMMs on OpenVINO's CPU plugin, compiled with
    ``compile_cpu(ov, model, threads, core)`` (the target's own configuration)."""
    m, k, n = shape
    return _fastest_gmacs(compile_cpu, qdq_gemm_model(m, k, n), (m, k), m * k * n, threads, runs, warmup)


def _fastest_gmacs(compile_cpu: Callable, model, input_shape: tuple[int, ...], macs: int, threads: int, runs: int,
                   warmup: int) -> float:
    """GMAC/s of the fastest of ``runs`` inferences of the ONNX ``model`` (``macs`` each, one float input
    of ``input_shape``) on OpenVINO's CPU plugin, compiled with ``compile_cpu``."""
    ov = require_openvino("measuring OpenVINO's int8 ceiling")
    core = ov.Core()
    request = compile_cpu(ov, core.read_model(model.SerializeToString()), threads, core).create_infer_request()
    x = np.random.default_rng(1).random(input_shape, dtype=np.float32)
    return fastest_gmacs(lambda: request.infer({0: x}), macs, runs, warmup)


#: The ceiling's convolution: channels in and out, and the side of its square feature map
#: (256 x 256 x 9 x 64^2 = 2.4 G multiply-accumulates, large enough that overheads vanish).
CONV_CHANNELS, CONV_SPATIAL = 256, 64


def measure_conv(compile_cpu: Callable, channels: int = CONV_CHANNELS, spatial: int = CONV_SPATIAL, threads: int = 0,
                 runs: int = 20, warmup: int = 3) -> float:
    """GMAC/s of the fastest of ``runs`` Q/DQ 3x3 convolutions (``channels`` in and out, ``spatial`` x
    ``spatial``, stride 1, padded) on OpenVINO's CPU plugin, compiled with ``compile_cpu``."""
    return _fastest_gmacs(compile_cpu, qdq_conv_model(channels, spatial), (1, channels, spatial, spatial),
                          spatial * spatial * channels * channels * 9, threads, runs, warmup)


def int8_ceiling_gmacs(compile_cpu: Callable, threads: int = 0, cache_root: str | Path | None = None,
                       shape: tuple[int, int, int] = GEMM_SHAPE) -> dict[str, Any]:
    """OpenVINO's int8 ceiling on this machine (``compiler.ceiling.measured_ceiling``'s layout): the
    larger GMAC/s of ``measure_gemm`` (``shape``) and ``measure_conv``. It is measured once per ISA,
    OpenVINO version and thread count, then cached. ``op`` names both kernels."""
    ov = require_openvino("measuring OpenVINO's int8 ceiling")
    op = "max(Q/DQ MatMul u8s8 {}x{}x{}, Q/DQ Conv3x3 u8s8 {c}ch {s}x{s})".format(*shape, c=CONV_CHANNELS,
                                                                              s=CONV_SPATIAL)
    return measured_ceiling(f"OpenVINO {ov.__version__}", op, threads, cache_root,
                            lambda: max(measure_gemm(compile_cpu, shape, threads),
                                        measure_conv(compile_cpu, threads=threads)))
