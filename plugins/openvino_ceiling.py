"""OpenVINO's int8 ceiling: one large Q/DQ MatMul (u8 activations x s8 weights), which OpenVINO's
low-precision transformations turn into an int8 FullyConnected, compiled as every latency is
(``compile_cpu``: one stream, latency hint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from yolocc.compiler.ceiling import GEMM_SHAPE, fastest_gmacs, measured_ceiling

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
    ov = require_openvino("measuring OpenVINO's int8 ceiling")
    core = ov.Core()
    m, k, n = shape
    compiled = compile_cpu(ov, core.read_model(qdq_gemm_model(m, k, n).SerializeToString()), threads, core)
    request = compiled.create_infer_request()
    a = np.random.default_rng(1).random((m, k), dtype=np.float32)
    return fastest_gmacs(lambda: request.infer({0: a}), m * k * n, runs, warmup)


def int8_ceiling_gmacs(compile_cpu: Callable, threads: int = 0, cache_root: str | Path | None = None,
                       shape: tuple[int, int, int] = GEMM_SHAPE) -> dict[str, Any]:
    """OpenVINO's int8 ceiling on this machine (``compiler.ceiling.measured_ceiling``'s layout),
    measured once per ISA, OpenVINO version and thread count, then cached."""
    ov = require_openvino("measuring OpenVINO's int8 ceiling")
    return measured_ceiling(f"OpenVINO {ov.__version__}", "Q/DQ MatMul u8s8 {}x{}x{}".format(*shape),
                            threads, cache_root, lambda: measure_gemm(compile_cpu, shape, threads))
