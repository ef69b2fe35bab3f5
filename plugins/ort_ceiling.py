"""onnxruntime's int8 ceiling: one large ``MatMulInteger`` (u8 x s8, the kernel behind QLinearConv on
the CPU), timed with thread spinning off as every latency is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yolocc.compiler.ceiling import GEMM_SHAPE, fastest_gmacs, measured_ceiling


def gemm_model(m: int, k: int, n: int):
    """An ONNX model computing ``MatMulInteger(A u8 [m, k], B s8 [k, n])`` with B a constant."""
    from onnx import TensorProto, helper, numpy_helper

    from yolocc.compiler.onnxgraph import probe_model

    # 7-bit weights: AVX2's u8 x s8 multiply-add saturates pairs of full-range products (the speed is
    # the same, the result exact).
    b = np.random.default_rng(0).integers(-64, 64, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero", "b_zero"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
         numpy_helper.from_array(np.array(0, np.int8), "b_zero")])
    return probe_model(graph)


def measure_gemm(shape: tuple[int, int, int] = GEMM_SHAPE, threads: int = 0, runs: int = 20,
                 warmup: int = 3) -> float:
    """GMAC/s of the fastest of ``runs`` GEMMs (thread spinning off, as every latency is measured)."""
    import onnxruntime as ort

    m, k, n = shape
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(gemm_model(m, k, n).SerializeToString(), so, providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).integers(0, 256, size=(m, k), dtype=np.uint8)
    return fastest_gmacs(lambda: sess.run(None, {"a": a}), m * k * n, runs, warmup)


def int8_ceiling_gmacs(threads: int = 0, cache_root: str | Path | None = None,
                       shape: tuple[int, int, int] = GEMM_SHAPE) -> dict[str, Any]:
    """onnxruntime's int8 ceiling on this machine (``compiler.ceiling.measured_ceiling``'s layout),
    measured once per ISA, onnxruntime version and thread count, then cached."""
    import onnxruntime as ort

    return measured_ceiling(f"onnxruntime {ort.__version__}", "MatMulInteger u8s8 {}x{}x{}".format(*shape),
                            threads, cache_root, lambda: measure_gemm(shape, threads))
