"""Honest measurements of ONNX stages on a target's runtime.

Latency: every model gets warm-up runs, then the models are timed round-robin (one run each per
round) so that all of them see the same machine conditions; p50/p95/min, throughput and the
session's memory are reported.
Fidelity: outputs compared with a reference on the same fixed input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence, TypeVar

import numpy as np

from .target import Runtime, Session

K = TypeVar("K", bound=Hashable)


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


@dataclass(frozen=True)
class LatencyStats:
    """One model's timing on a runtime: batch-1 latency percentiles, throughput, and memory.

    ``memory_bytes`` is the resident memory the session added from loading through its warm-up
    runs: weights, the runtime's arena at its batch-1 peak and kernel buffers (RSS growth, Linux)."""

    p50_ms: float
    p95_ms: float
    min_ms: float
    runs: int
    throughput_ips: float  # images/s at batch 1: runs / total timed seconds
    batch: int = 1
    batch_throughput_ips: float | None = None  # images/s at ``batch`` (None: batch 1 only)
    memory_bytes: int | None = None


def summarize(times_ms: Sequence[float], images_per_run: int = 1) -> dict[str, float]:
    """p50/p95/min of run times (linear-interpolated percentiles) and the sustained images/s."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timed runs")
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3),
            "min_ms": round(float(t.min()), 3),
            "throughput_ips": round(images_per_run * 1000.0 * t.size / float(t.sum()), 2)}


def rss_bytes() -> int | None:
    """This process's resident memory (None where /proc is missing); freed heap is returned first."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def round_robin_ms(runs: Mapping[K, Callable[[], Any]], rounds: int, warmup: int = 0,
                   rotate: bool = False, turn: int = 1) -> dict[K, list[float]]:
    """Every run's times (ms) over ``rounds`` rounds in which each callable has one turn (round-robin,
    so that all see the same machine conditions), after ``warmup`` untimed rounds. ``rotate``: each
    round starts one key later, so load that comes and goes touches every key alike (with three or
    more keys no callable runs twice in a row; with two, rotating is alternating). ``turn``: runs in a
    row per turn, of which the last is kept (``round_robin_blocks_ms``)."""
    return {k: [block[-1] for block in v] for k, v in round_robin_blocks_ms(runs, rounds, turn, warmup, rotate).items()}


def round_robin_blocks_ms(runs: Mapping[K, Callable[[], Any]], rounds: int, block: int, warmup: int = 0,
                          rotate: bool = False) -> dict[K, list[list[float]]]:
    """``round_robin_ms`` where each turn runs a callable ``block`` times in a row: per key, one list
    of ``block`` times (ms) per round, in the order they ran. The first run of a turn follows another
    model (its cache and the cores' state are the other model's); the later ones show the model run
    back to back, as a loop over one model (a video pipeline, OpenVINO's benchmark_app) runs it.

    Raises ``ValueError`` when ``block`` < 1."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    for _ in range(warmup):
        for run in runs.values():
            run()
    keys = list(runs)
    times: dict[K, list[list[float]]] = {k: [] for k in keys}
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)] if rotate and keys else keys
        for k in order:
            turn = []
            for _ in range(block):
                t0 = time.perf_counter()
                runs[k]()
                turn.append((time.perf_counter() - t0) * 1000.0)
            times[k].append(turn)
    return times


def _round_robin(sessions: Sequence[Session], x: np.ndarray, runs: int, turn: int = 1) -> list[list[float]]:
    """Per session, ``runs`` times (ms): the last run of each turn of ``turn`` runs in a row."""
    times = round_robin_ms({i: (lambda s=s: s.run(x)) for i, s in enumerate(sessions)}, runs, turn=turn)
    return [times[i] for i in range(len(sessions))]


def runtime_label(runtime: Runtime) -> str:
    """The runtime's name and version from ``describe`` (e.g. "onnxruntime 1.32.0"), for one-line reasons."""
    info = runtime.describe()
    return f"{info.get('runtime', runtime.name)} {info.get('version', '')}".strip()


def timing_input(shape: Sequence[int]) -> np.ndarray:
    """The input every latency measurement runs on: float32 uniform in [0, 1) of ``shape``, seed 0
    (content does not change a CNN's latency; a fixed one keeps runs comparable)."""
    return np.random.default_rng(0).random(tuple(shape), dtype=np.float32)


def latency_stats(runtime: Runtime, models: Sequence[bytes], x: np.ndarray, runs: int = 20, warmup: int = 3,
                  threads: int = 0, batch: int = 1, turn: int = 1) -> list[LatencyStats]:
    """Time every model on ``runtime`` round-robin in one run (one turn each per round, so that all
    see the same machine conditions), after warm-up; with ``batch`` > 1 also a round-robin pass at
    that batch size (the models must take a dynamic batch). A turn is ``turn`` runs in a row of
    which the last is timed (the batch pass too): with 1 and several models each timed run follows
    another model's; with more, the model runs back to back, as a loop over it runs (on small inputs
    much faster: README, How the timing schedule moves a latency). ``runs`` x ``turn`` runs per model."""
    sessions, memory = [], []
    for m in models:
        before = rss_bytes()
        s = runtime.load(m, threads)
        for _ in range(warmup):
            s.run(x)
        after = rss_bytes()
        memory.append(None if before is None or after is None else max(0, after - before))
        sessions.append(s)
    single = _round_robin(sessions, x, runs, turn)
    batched: list[list[float]] = [[] for _ in sessions]
    if batch > 1:
        xb = np.repeat(x[:1], batch, axis=0)
        for s in sessions:
            s.run(xb)
        batched = _round_robin(sessions, xb, max(3, runs // 2), turn)
    out = []
    for t, tb, mem in zip(single, batched, memory):
        stats = summarize(t)
        out.append(LatencyStats(**stats, runs=len(t), batch=batch, memory_bytes=mem,
                                batch_throughput_ips=summarize(tb, batch)["throughput_ips"] if tb else None))
    return out


def latencies_ms(runtime: Runtime, models: Sequence[bytes], x: np.ndarray, runs: int = 20, warmup: int = 3,
                 threads: int = 0, turn: int = 1) -> list[float]:
    """Median latency (ms) of each model on ``runtime``, timed round-robin in one run (``turn``: as
    ``latency_stats``)."""
    return [s.p50_ms for s in latency_stats(runtime, models, x, runs, warmup, threads, turn=turn)]


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


def splits_key(splits: dict[str, dict[str, slice]] | None) -> str:
    """``splits`` as canonical JSON (each slice as ``[start, stop, step]``), for cache keys: a result
    measured with other named parts (e.g. before a task's part was named) is not reused."""
    import json

    return json.dumps({out: {part: [sl.start, sl.stop, sl.step] for part, sl in parts.items()}
                       for out, parts in sorted((splits or {}).items())}, sort_keys=True)


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
