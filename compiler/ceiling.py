"""The machine's int8 ceiling: the multiply-accumulates per second onnxruntime sustains on one large
integer GEMM (u8 x s8, the kernel behind QLinearConv on the CPU).

A stage's MACs over its latency, against this ceiling, says how much of the hardware a model uses:
a low percentage means time goes to something other than integer convolutions (float ops, data
movement, small layers). Measured once per ISA, onnxruntime version and thread count, then cached.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cache import cached_json
from .measure import cpu_isa
from .options import CompileOptions

#: The GEMM shape (M, K, N): large enough that packing and threading overheads vanish.
GEMM_SHAPE = (1024, 1024, 1024)


def gemm_model(m: int, k: int, n: int):
    """An ONNX model computing ``MatMulInteger(A u8 [m, k], B s8 [k, n])`` with B a constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # 7-bit weights: AVX2's u8 x s8 multiply-add saturates pairs of full-range products (the speed is
    # the same, the result exact).
    b = np.random.default_rng(0).integers(-64, 64, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero", "b_zero"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
         numpy_helper.from_array(np.array(0, np.int8), "b_zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


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
    for _ in range(warmup):
        sess.run(None, {"a": a})
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"a": a})
        best = min(best, time.perf_counter() - t0)
    return m * k * n / best / 1e9


def int8_ceiling_gmacs(threads: int = 0, cache_root: str | Path | None = None,
                       shape: tuple[int, int, int] = GEMM_SHAPE) -> dict[str, Any]:
    """The int8 ceiling of this machine: ``{"gmacs", "isa", "op", "threads", "runtime", "loadavg_1min"}``, measured on
    the first call and read from the cache (``CompileOptions.cache_root()/ceiling``) afterwards.

    The fastest run, not the median: the ceiling is what the machine can do, and other load only
    slows a run down."""
    import onnxruntime as ort

    isa = cpu_isa()
    op = "MatMulInteger u8s8 {}x{}x{}".format(*shape)
    runtime = f"onnxruntime {ort.__version__}"
    key = hashlib.sha256(f"{isa}|{runtime}|{threads}|{op}".encode()).hexdigest()[:16]
    root = Path(cache_root) if cache_root is not None else CompileOptions().cache_root()

    def compute() -> dict[str, Any]:
        # The load when it was measured: a ceiling measured on a busy machine reads low (delete the cache
        # file to measure again).
        load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        return {"gmacs": round(measure_gemm(shape, threads), 2), "isa": isa, "op": op, "threads": threads,
                "runtime": runtime, "loadavg_1min": load}

    value, _ = cached_json(root / "ceiling" / f"{key}.json", compute, "int8 ceiling")
    return value


def efficiency(macs: float, latency_ms: float, ceiling_gmacs: float) -> tuple[float, float]:
    """(GMAC/s, percent of the ceiling) of a model doing ``macs`` multiply-accumulates in ``latency_ms``."""
    if latency_ms <= 0 or ceiling_gmacs <= 0:
        raise ValueError("latency and ceiling must be positive")
    gmacs = macs / (latency_ms / 1000.0) / 1e9
    return round(gmacs, 2), round(100.0 * gmacs / ceiling_gmacs, 1)
