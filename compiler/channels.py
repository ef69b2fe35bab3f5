"""The channel multiple a runtime likes: the smallest multiple of channels beyond which a convolution's
latency stops having steps on this machine.

CPU kernels work on blocks of channels (oneDNN's AVX-512 layouts block 16 channels, AMX tiles 16 to
64, onnxruntime's MLAS packs its GEMM panels): a layer with 72 channels may cost what one with 80
costs. ``prune`` rounds the channels it keeps to this multiple (``round_to=auto``), so no kept channel
is paid for as padding.

How it is measured (``sweep_latencies`` on the runtime, ``choose_multiple`` on the numbers): one
int8 3x3 convolution (Q/DQ, the kernel pruned int8 models run), stride 1, ``SPATIAL`` x ``SPATIAL``
(a YOLO P4 map at 640), with as many input as output channels, at every count in ``CHANNELS``
(multiples of 8); each count's fastest of 30 runs, the counts timed round-robin. The multiple climbs
the ladder 8, 16, 32, 64 while the channels inside a block of the next rung cost less than
``STEP_RATIO`` of those that start a block (``step_ratio``: mean latency increments over the
sweep, trimmed: ``trimmed_mean``): where they are nearly free, the kernel pays for whole blocks and a count inside one
is padding. The measurement is cached like the int8 ceiling (per ISA, runtime version and thread
count, under ``cache_root/channels``; a sweep taken while other work kept every core busy is taken
again by the next quiet call).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .ceiling import machine_measurement
from .measure import cpu_isa, round_robin_ms
from .target import FALLBACK_CHANNEL_MULTIPLE as FALLBACK
from .target import ChannelMultiple

#: Multiples the measurement chooses from (ascending).
CANDIDATES = (8, 16, 32, 64)
#: Channel counts swept (input = output channels): two spans of the largest candidate, so every
#: candidate has several multiples in the sweep.
CHANNELS = tuple(range(64, 193, 8))
#: Spatial size of the swept convolution's feature map (YOLO's P4 at 640 input).
SPATIAL = 40
#: A block of n channels is taken when the channels inside it cost less than this share of those
#: that start it (``step_ratio``): about 1 for a kernel without such blocks, 0 for one that pads to n.
#: Measured on AVX-512 VNNI (AMD EPYC), trimmed: OpenVINO 2026.4's int8 conv 0.10-0.12 for 16 (16 -> 32:
#: 0.89-1.31), onnxruntime 1.32's QLinearConv 0.41-0.44 (a partial step: 8 stays).
STEP_RATIO = 0.3
#: The decision rule's version, part of the cache key: a changed rule measures again.
RULE = f"trimmed-step-ratio<{STEP_RATIO}"


def step_ratio(latency: dict[int, float], m: int, n: int) -> float | None:
    """How much the ``m`` channels that follow a multiple of ``m`` *inside* a block of ``n`` cost, against
    the ``m`` channels that *start* a block of ``n``: the mean latency increase from ``c`` to ``c + m``
    over counts ``c`` that are multiples of ``m`` but not of ``n``, divided by the same mean over
    multiples of ``n``, both ``trimmed_mean`` (one slow count in a sweep of 17 does not decide: with
    plain means, a single outlier moved OpenVINO's 8 -> 16 ratio from 0.12 to 0.32 and kept 8). About 1 where the kernel has no ``n``-channel blocks (latency grows smoothly);
    near 0 where it pads to ``n`` or more (the channels inside a block are free). None without the
    counts, or where starting a block costs nothing."""
    inside = [latency[c + m] - latency[c] for c in latency if c % m == 0 and c % n and c + m in latency]
    start = [latency[c + m] - latency[c] for c in latency if c % n == 0 and c + m in latency]
    if not inside or not start or trimmed_mean(start) <= 0:
        return None
    return max(trimmed_mean(inside), 0.0) / trimmed_mean(start)


def trimmed_mean(values: Sequence[float]) -> float:
    """The mean without the largest and the smallest value where there are at least 5 (a median would
    lose the rare steps of a large block: a 64-channel kernel steps at 2 of 8 block starts)."""
    v = sorted(values)
    return statistics.fmean(v[1:-1] if len(v) >= 5 else v)


def choose_multiple(latency: dict[int, float], candidates: Sequence[int] = CANDIDATES,
                    step: float = STEP_RATIO) -> tuple[int | None, str]:
    """(multiple, reason) from a sweep ``{channels: latency}``: from the smallest candidate ``m``, climb
    to the next ``n`` (twice ``m``) while ``step_ratio(latency, m, n) < step`` (the channels inside a
    block of ``n`` cost less than ``step`` times those that start one: the kernel pays for whole
    blocks). Trimmed means over the whole sweep, so one noisy count does not move it. None when the sweep is flat
    (the largest count not clearly slower than the smallest: overhead, not compute, sets the latency)."""
    counts = sorted(latency)
    lo, hi = counts[0], counts[-1]
    expected = (hi / lo) ** 2  # MACs grow with in x out channels
    if latency[hi] < latency[lo] * (1 + 0.25 * (expected - 1)):
        return None, (f"latency grows {latency[hi] / latency[lo]:.2f}x from {lo} to {hi} channels "
                      f"(MACs {expected:.2f}x): not compute-bound")
    ladder = sorted(candidates)
    m, seen, taken = ladder[0], [], 0.0
    for n in ladder[1:]:
        r = step_ratio(latency, m, n)
        if r is None:
            break
        seen.append(f"{m}->{n} {r:.2f}")
        if r >= step:
            break
        m, taken = n, r
    why = (f"the channels inside a block of {m} cost {taken:.2f}x what those starting one cost" if m > ladder[0]
           else f"no blocks of {ladder[1]} channels")
    return m, f"{why} (step ratios {', '.join(seen)}; a block is taken below {step})"


def measured_channel_multiple(runtime: str, op: str, threads: int, cache_root: str | Path | None,
                              sweep: Callable[[], dict[int, float]]) -> ChannelMultiple:
    """The runtime's ``ChannelMultiple``: ``sweep()`` (``{channels: fastest latency ms}``) on the first
    call for this ISA/runtime/op/threads, read from the cache (``cache_root/channels``) afterwards."""
    isa = cpu_isa()

    def compute() -> dict[str, Any]:
        lat = sweep()
        m, why = choose_multiple(lat)
        return ChannelMultiple(m or FALLBACK, m is not None,
                               f"measured on {runtime}, {isa}, {threads} thread(s): {why}"
                               + ("" if m else f"; default multiple {FALLBACK}"),
                               runtime, isa, op, threads, {str(c): round(v, 4) for c, v in sorted(lat.items())}).as_dict()

    value = dict(machine_measurement("channels", f"{RULE}|{isa}|{runtime}|{threads}|{op}|{CHANNELS}|{SPATIAL}",
                                     cache_root, compute, "channel multiple"))
    value.pop("busy_load", None)
    return ChannelMultiple(**value)


def fastest_round_robin(runs: dict[int, Callable[[], Any]], rounds: int = 30, warmup: int = 2) -> dict[int, float]:
    """``{key: fastest ms}`` of ``measure.round_robin_ms`` with rotated rounds (each round starting one
    key later, so load that comes and goes touches every count alike)."""
    return {k: min(v) for k, v in round_robin_ms(runs, rounds, warmup, rotate=True).items()}


def qdq_conv_model(channels: int, spatial: int = SPATIAL):
    """An ONNX model: an int8 3x3 convolution in Q/DQ form, ``channels`` in and out, ``spatial``^2 map
    (u8 activations, s8 per-tensor weights, float bias, the output quantized again)."""
    from onnx import TensorProto, helper, numpy_helper

    from .onnxgraph import probe_model

    rng = np.random.default_rng(channels)
    w = rng.integers(-64, 64, size=(channels, channels, 3, 3), dtype=np.int8)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(channels, np.float32), "b"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.uint8), "z"),
             numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
             numpy_helper.from_array(np.array(0, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.05, np.float32), "ys")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "ys", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "z"], ["out"])]
    shape = [1, channels, spatial, spatial]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)], inits)
    return probe_model(graph)


def sweep_latencies(load: Callable[[bytes], Callable[[np.ndarray], Any]], channels: Sequence[int] = CHANNELS,
                    spatial: int = SPATIAL, rounds: int = 30) -> dict[int, float]:
    """``{channels: fastest ms}`` of ``qdq_conv_model(c)`` for every ``c``, each loaded with ``load(bytes)``
    (which returns a callable running one input) and timed round-robin."""
    runs = {}
    for c in channels:
        run = load(qdq_conv_model(c, spatial).SerializeToString())
        x = np.random.default_rng(c).random((1, c, spatial, spatial), dtype=np.float32)
        runs[c] = (lambda r, a: (lambda: r(a)))(run, x)
    return fastest_round_robin(runs, rounds)
