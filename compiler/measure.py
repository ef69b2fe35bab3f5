"""Honest measurements of ONNX artifacts with onnxruntime on the CPU.

Latency: every model gets warm-up runs, then the models are timed round-robin (one run each per
round) so that all of them see the same machine conditions; the median per model is reported.
Sessions run with thread spinning off (see ``session``).
Fidelity: outputs compared with a reference on the same fixed input.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np
import onnxruntime as ort


def session(model_bytes: bytes, threads: int = 0) -> ort.InferenceSession:
    """A CPU onnxruntime session with full graph optimisation.

    Thread spinning is off: with several sessions alive, idle sessions' spinning threads would
    steal the cores from the one being timed (measured here: 87 ms instead of 45 ms on 2 cores).
    """
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def feed(sess: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    """``x`` as the session's input, cast to float16 for models that take float16."""
    inp = sess.get_inputs()[0]
    return {inp.name: x.astype(np.float16 if "float16" in inp.type else np.float32)}


def run_outputs(sess: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    outs = sess.run(None, feed(sess, x))
    return {o.name: np.asarray(v, dtype=np.float32) for o, v in zip(sess.get_outputs(), outs)}


def latencies_ms(models: Sequence[bytes], x: np.ndarray, runs: int = 20, warmup: int = 3,
                 threads: int = 0) -> list[float]:
    """Median latency (ms) of each model, timed round-robin in one run."""
    sessions = [session(m, threads) for m in models]
    feeds = [feed(s, x) for s in sessions]
    for s, f in zip(sessions, feeds):
        for _ in range(warmup):
            s.run(None, f)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            t0 = time.perf_counter()
            s.run(None, f)
            times[i].append((time.perf_counter() - t0) * 1000.0)
    return [round(statistics.median(t), 3) for t in times]


def compare(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Max abs error, that error relative to the reference's scale, and cosine similarity."""
    if ref.shape != out.shape:
        return {"shape_mismatch": True}
    ref64, out64 = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    max_err = float(np.max(np.abs(ref64 - out64))) if ref64.size else 0.0
    scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    denom = float(np.linalg.norm(ref64) * np.linalg.norm(out64))
    cosine = float(ref64 @ out64 / denom) if denom > 0 else float(ref64.size == 0 or max_err == 0)
    return {"max_abs_err": max_err, "rel_err": max_err / scale if scale > 0 else max_err,
            "cosine": round(cosine, 6)}


def fidelity(ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
             splits: dict[str, dict[str, slice]] | None = None) -> dict[str, dict[str, float]]:
    """Per-output comparison; ``splits`` adds named sub-tensors (e.g. boxes/scores along dim 1)."""
    result = {}
    for name, r in ref.items():
        if name not in out:
            result[name] = {"missing": True}
            continue
        result[name] = compare(r, out[name])
        for part, sl in (splits or {}).get(name, {}).items():
            if r.shape == out[name].shape:
                result[f"{name}[{part}]"] = compare(r[:, sl], out[name][:, sl])
    return result
