"""Honest measurements of ONNX stages on a target's runtime.

Latency: every model gets warm-up runs, then the models are timed round-robin (one run each per
round) so that all of them see the same machine conditions; the median per model is reported.
Fidelity: outputs compared with a reference on the same fixed input.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np

from .target import Runtime


def cpu_isa() -> str:
    """The CPU's widest SIMD/int8 features, e.g. "AVX2", "AVX-512 VNNI", "AVX-512 VNNI AMX" (Linux flags).

    INT8 speed-ups differ about 2x between AVX2 and AVX512-VNNI, so every speed figure names this."""
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        import platform

        return platform.machine() or "unknown"
    parts = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE/other"]
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        parts.append("VNNI")
    if "amx_int8" in flags:
        parts.append("AMX")
    return " ".join(parts)


def latencies_ms(runtime: Runtime, models: Sequence[bytes], x: np.ndarray, runs: int = 20, warmup: int = 3,
                 threads: int = 0) -> list[float]:
    """Median latency (ms) of each model on ``runtime``, timed round-robin in one run."""
    sessions = [runtime.load(m, threads) for m in models]
    for s in sessions:
        for _ in range(warmup):
            s.run(x)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            s.run(x)
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


def output_distance(ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
                    splits: dict[str, dict[str, slice]] | None = None) -> float:
    """How far ``out`` moved from ``ref``: per output (and per named part, e.g. boxes and class scores,
    so that large box coordinates do not hide the scores), ``1 - cosine`` of each sample, averaged over
    the batch, summed over outputs and parts."""
    total = 0.0
    for name, r in ref.items():
        o = out[name]
        for sl in ((splits or {}).get(name) or {"all": slice(None)}).values():
            a = r[:, sl].reshape(len(r), -1).astype(np.float64)
            b = o[:, sl].reshape(len(o), -1).astype(np.float64)
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cos = np.where(norms > 0, (a * b).sum(1) / np.where(norms > 0, norms, 1.0), 1.0)
            total += float((1.0 - cos).mean())
    return total


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
