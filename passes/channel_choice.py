"""``prune:round_to=auto`` decided on the model itself: the pruned model timed at a few channel
multiples on the target's runtime, for runtimes whose one-convolution sweep does not predict whole
models (``Runtime.channel_multiple_on_model``: OpenVINO).

Why: OpenVINO chooses its convolution kernel per shape, so the sweep of ``compiler.channels`` (one
int8 3x3 conv against its channel count) has steps that are not blocks, and two sweeps in a row on
one machine (AMD EPYC, AVX-512 VNNI, 1 thread) chose 8 and then 32. Whole models disagree with it:
on yolov8n at 640, ``prune:0.25`` + int8 ran 1.12x int8 alone with 8 and 1.14x with 16 on that CPU,
1.07x and 1.12x on an AMX Xeon, and 1.34x and 1.23x on an AVX2-only CPU (``benchmarks/openvino_profile.py``;
README, "Channel counts the runtime likes").

How (``choose``): the candidates are the sweep's multiple and its neighbours on
``channels.CANDIDATES`` (half and twice it). For each, a copy of the model is pruned as the pass
would prune it with that multiple, then built as the plan will run it: where a quantizing pass follows,
an INT8 latency probe (``int8.LATENCY_PROBE``: the target's placement and grid on minmax ranges of 16
images); otherwise the float ONNX. Copies with the same kept channel counts are built once. The copies
run round-robin on the runtime (``ROUNDS`` rotated rounds after ``WARMUP``, ``--threads``), and
``pick`` keeps the fastest median, or the largest multiple within ``TIE`` of it (at the same speed it
keeps more channels). The choice is cached by content (the model's weights, the pass's arguments, what
follows it, the target, image size, runtime, ISA and threads) under ``cache_root/channels``, so the same
compile chooses the same multiple.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

import onnx

from yolocc.compiler import lowering
from yolocc.compiler.autotarget import quantizes
from yolocc.compiler.cache import cached_json
from yolocc.compiler.channels import CANDIDATES
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.measure import cpu_isa, round_robin_ms, runtime_label, timing_input
from yolocc.compiler.onnxgraph import static_dims
from yolocc.compiler.passbase import PassContext, PassResult
from yolocc.compiler.pipeline import plan, run
from yolocc.compiler.registry import Registry
from yolocc.compiler.torchgraph import hash_weights

from .int8 import LATENCY_PROBE, Int8

#: A larger multiple within this fraction of the fastest's latency is kept instead (more channels for
#: the same speed; round-robin medians of one run differ by about 1% on an idle machine).
TIE = 0.02
#: Timed rounds (each runs every candidate once) and untimed rounds before them.
ROUNDS = 30
WARMUP = 3
#: The rule's version, part of the cache key: a changed rule times again.
RULE = f"model-latency,tie={TIE},rounds={ROUNDS}"

_QUIET = logging.getLogger("yolocc.channel_choice.probe")
_QUIET.setLevel(logging.ERROR)


@dataclass(frozen=True)
class ModelChoice:
    """The multiple timed fastest on the pruned model and the timings behind it."""

    multiple: int
    #: One line for the report and ``prune``'s facts.
    reason: str
    #: Candidate multiple (as a string, JSON keys) -> median latency in ms of its pruned model.
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: The sweep's multiple the candidates were centred on.
    prior: int = 0
    #: What was timed: "int8 probe" or "float".
    built: str = ""
    runtime: str = ""
    isa: str = ""
    threads: int = 0
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def candidates(prior: int) -> list[int]:
    """The multiples timed around the sweep's ``prior``: half, itself and twice, where on ``CANDIDATES``
    (ascending); ``prior`` alone when it is not on the ladder."""
    if prior not in CANDIDATES:
        return [prior]
    i = CANDIDATES.index(prior)
    return list(CANDIDATES[max(i - 1, 0):i + 2])


def pick(latency_ms: dict[int, float], tie: float = TIE) -> int:
    """The largest multiple whose latency is within ``tie`` (a fraction) of the fastest's."""
    fastest = min(latency_ms.values())
    return max(m for m, ms in latency_ms.items() if ms <= fastest * (1 + tie))


def choose(ir: ModelIR, ctx: PassContext, args: dict[str, Any], prior: int,
           prune: Callable[[ModelIR, int], PassResult]) -> ModelChoice | None:
    """Time copies of ``ir`` pruned by ``prune(copy, multiple)`` at ``candidates(prior)`` on
    ``ctx.runtime`` and return the ``pick``; None when fewer than two candidates prune differently
    (nothing to choose). ``args`` are the pass's arguments (they key the cache with the model)."""
    quantized = quantizes(ctx.upcoming)
    runtime_name = runtime_label(ctx.runtime)
    threads = int(ctx.option("threads", 0) or 0)
    isa = cpu_isa()
    h = hashlib.sha256(RULE.encode())
    hash_weights(h, ir.module)
    h.update(json.dumps([{k: v for k, v in sorted(args.items()) if k not in ("round_to", "save")},
                         prior, quantized, ctx.recovery_follows(), LATENCY_PROBE, list(ir.input.shape),
                         ctx.target.name, runtime_name, isa, threads], default=str).encode())

    def measure() -> dict[str, Any] | None:
        built: dict[int, bytes] = {}
        kept: dict[int, str] = {}
        for m in candidates(prior):
            probe = ir.snapshot()
            result = prune(probe, m)
            if not result.modified:
                continue
            signature = json.dumps(result.changes.get("channels", {}), sort_keys=True)
            same = next((k for k, s in kept.items() if s == signature), None)
            kept[m] = signature
            built[m] = built[same] if same is not None else _build(probe, ctx, quantized)
        if len(set(kept.values())) < 2:
            return None
        ctx.log.info("prune: round_to=auto times the pruned model at multiples %s on %s",
                     ", ".join(map(str, built)), runtime_name)
        sessions = {m: ctx.runtime.load(b, threads) for m, b in built.items()}
        x = timing_input(static_dims(onnx.load_model_from_string(built[next(iter(built))]).graph.input[0]))
        times = round_robin_ms({m: (lambda s: (lambda: s.run(x)))(s) for m, s in sessions.items()},
                               ROUNDS, WARMUP, rotate=True)
        return {str(m): round(statistics.median(v), 4) for m, v in times.items()}

    latency, hit = cached_json(ctx.options.cache_root() / "channels" / f"model-{h.hexdigest()}.json", measure,
                               "channel multiple of the pruned model")
    if not latency:
        return None
    timed = {int(m): ms for m, ms in latency.items()}
    chosen = pick(timed)
    fastest = min(timed, key=timed.get)
    numbers = ", ".join(f"{m}: {ms:.2f} ms" for m, ms in sorted(timed.items()))
    why = "the fastest" if chosen == fastest else f"within {TIE:.0%} of the fastest ({fastest}) with more channels"
    built = "int8 probe" if quantized else "float"
    reason = (f"the pruned model timed on {runtime_name}, {isa}, {threads or 'default'} thread(s) ({built}; "
              f"{numbers}): {chosen} is {why}; the one-conv sweep's multiple was {prior}")
    return ModelChoice(chosen, reason, dict(latency), prior, built, runtime_name, isa, threads, hit)


def _build(probe: ModelIR, ctx: PassContext, quantized: bool) -> bytes:
    """The ONNX bytes the plan would run for the pruned ``probe``: an INT8 latency probe or the float model."""
    if not quantized:
        return lowering.onnx_bytes(probe, ctx.options.opset, ctx.options.dynamic_batch)
    steps = plan(Registry(), [Int8(**LATENCY_PROBE)], start_stage=probe.stage, start_analyses=probe.analyses)
    run(probe, steps, dataclasses.replace(ctx, history=[], hook=None, progress=None, upcoming=(), log=_QUIET,
                                         trial=True))
    return probe.onnx_model.SerializeToString()

