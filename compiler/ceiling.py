"""The machine's int8 ceiling: the multiply-accumulates per second a runtime sustains on one large
integer GEMM (u8 x s8, the kernel behind its int8 convolutions), and a model's efficiency against it.

A stage's MACs over its latency, against this ceiling, says how much of the hardware a model uses:
a low percentage means time goes to something other than integer convolutions (float ops, data
movement, small layers). Each runtime measures its own ceiling (``Runtime.int8_ceiling``: onnxruntime
a ``MatMulInteger``, OpenVINO a Q/DQ MatMul it runs in int8); this module caches the measurement
per ISA, runtime version, operation and thread count.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

from .cache import cached_json
from .measure import cpu_isa
from .options import CompileOptions

#: The GEMM shape (M, K, N): large enough that packing and threading overheads vanish.
GEMM_SHAPE = (1024, 1024, 1024)


def machine_measurement(folder: str, key: str, cache_root: str | Path | None, compute: Callable[[], dict[str, Any]],
                        what: str) -> dict[str, Any]:
    """``compute()`` (a measurement of this machine, a JSON dict) on the first call for ``key`` (its ISA,
    runtime, op, threads ...), read from ``cache_root/folder`` afterwards. A value measured while other
    work kept every core busy (``busy_load``) is kept only until a quieter call measures it again."""
    root = Path(cache_root) if cache_root is not None else CompileOptions().cache_root()
    path = root / folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"

    def tagged() -> dict[str, Any]:
        load = busy_load()
        return {**compute(), **({"busy_load": load} if load is not None else {})}

    value, hit = cached_json(path, tagged, what)
    if hit and "busy_load" in value and busy_load() is None:  # measured under load: measure again now
        path.unlink(missing_ok=True)
        value, _ = cached_json(path, tagged, what)
    return value


def measured_ceiling(runtime: str, op: str, threads: int, cache_root: str | Path | None,
                     measure: Callable[[], float]) -> dict[str, Any]:
    """``{"gmacs", "isa", "op", "threads", "runtime"}``: ``measure()`` (GMAC/s of the fastest run) on the
    first call for this ISA/runtime/op/threads, read from the cache (``cache_root/ceiling``) afterwards
    (``machine_measurement``).

    The fastest run, not the median: the ceiling is what the machine can do, and other load only
    slows a run down."""
    isa = cpu_isa()
    return machine_measurement(
        "ceiling", f"{isa}|{runtime}|{threads}|{op}", cache_root,
        lambda: {"gmacs": round(measure(), 2), "isa": isa, "op": op, "threads": threads, "runtime": runtime},
        "int8 ceiling")


def fastest_gmacs(run: Callable[[], Any], macs: float, runs: int = 20, warmup: int = 3) -> float:
    """GMAC/s of the fastest of ``runs`` calls of ``run`` (after ``warmup`` calls) doing ``macs`` each."""
    import time

    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return macs / best / 1e9


def busy_load() -> float | None:
    """The 1-minute load average when other work competes for every core (a ceiling measured then is
    low, so it is kept only until a quieter run measures it again); None when the machine is quiet."""
    import os

    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    return round(load, 2) if load > (os.cpu_count() or 1) else None


def efficiency(macs: float, latency_ms: float, ceiling_gmacs: float) -> tuple[float, float]:
    """(GMAC/s, percent of the ceiling) of a model doing ``macs`` multiply-accumulates in ``latency_ms``."""
    if latency_ms <= 0 or ceiling_gmacs <= 0:
        raise ValueError("latency and ceiling must be positive")
    gmacs = macs / (latency_ms / 1000.0) / 1e9
    return round(gmacs, 2), round(100.0 * gmacs / ceiling_gmacs, 1)
