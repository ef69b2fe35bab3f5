"""``--target auto``: measure the input model on every installed CPU runtime and compile for the fastest.

Which CPU runtime is fastest depends on the machine (OpenVINO's oneDNN kernels against onnxruntime's
MLAS, AVX2 against AVX-512 VNNI or AMX) and on the model, so yolocc measures instead of guessing. The
candidates are the registered targets that declare ``Target.auto_candidate`` and are installed here
(``available()`` is None). For each, the model is lowered (FP32) and, when the plan quantizes, given a
quick int8 (``int8`` on ``QUICK_CALIB_N`` calibration images, the target's own placement); then every
candidate's models run round-robin in one process on their own runtimes, ``ROUNDS`` rounds, and the
target with the lowest median latency of the model the plan produces (int8 when it quantizes, else
FP32) wins. The choice and the numbers behind it are one line (``Choice.line``) that the compile log
and the report carry.

Not the default: it costs two to four extra lowerings and a calibration per candidate (seconds on a
small detector, a minute or more at 640), the artifact's format follows the winner (an ``.onnx`` file
or an OpenVINO IR folder), and a compile whose output depends on a timing race is not reproducible
across machines. ``ort-cpu`` stays the default; ``auto`` is for users who deploy where they compile.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .measure import cpu_isa, round_robin_ms, runtime_label, timing_input

AUTO_TARGET = "auto"
#: Calibration images for the quick int8 each candidate gets.
QUICK_CALIB_N = 16
#: Timed rounds (each runs every candidate's models once).
ROUNDS = 15
#: Passes that make the plan's model integer: with one of them, candidates compete on their int8.
QUANTIZING_PASSES = ("int8", "qdq", "calibrate")


@dataclass(frozen=True)
class Choice:
    """The target ``--target auto`` chose and why."""

    target: str
    #: Per candidate: {"fp32_ms": ..., "int8_ms": ...} (int8 only when the plan quantizes).
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    metric: str = "fp32_ms"
    isa: str = ""
    threads: int = 0
    line: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "latency_ms": self.latency_ms, "metric": self.metric, "isa": self.isa,
                "threads": self.threads, "line": self.line}


def choose(latency_ms: Mapping[str, Mapping[str, float]], quantized: bool, isa: str = "", threads: int = 0,
           runtimes: Mapping[str, str] | None = None) -> Choice:
    """The candidate with the lowest latency of the model the plan produces (``int8_ms`` when
    ``quantized``, else ``fp32_ms``; ties go to the first candidate, the default target when it is one),
    and a one-line reason naming every candidate's numbers."""
    if not latency_ms:
        raise ValueError("no candidate targets to choose from")
    metric = "int8_ms" if quantized else "fp32_ms"
    names = list(latency_ms)
    best = min(names, key=lambda n: (latency_ms[n][metric], names.index(n)))
    others = [n for n in names if n != best]

    def numbers(n: str) -> str:
        lat = latency_ms[n]
        what = "int8 {:.2f} ms, fp32 {:.2f} ms".format(lat["int8_ms"], lat["fp32_ms"]) if quantized \
            else "fp32 {:.2f} ms".format(lat["fp32_ms"])
        rt = (runtimes or {}).get(n)
        return f"{n}{f' ({rt})' if rt else ''}: {what}"

    ratio = min(latency_ms[n][metric] for n in others) / latency_ms[best][metric] if others else 0.0
    margin = (f", {ratio:.2f}x faster than the next" + (" (a near tie: under 5%)" if ratio < 1.05 else "")
              if others else ", the only installed CPU runtime")
    line = (f"--target auto chose {best}: fastest {'int8' if quantized else 'fp32'} model on this machine"
            f"{margin} ({'; '.join(numbers(n) for n in names)}; {isa or cpu_isa()}, "
            f"{threads or 'default'} thread(s), median of round-robin runs)")
    return Choice(best, {n: dict(v) for n, v in latency_ms.items()}, metric, isa or cpu_isa(), threads, line)


def candidates(registry) -> list[str]:
    """Registered targets that take part in ``--target auto`` and are installed here, default first."""
    from .options import DEFAULT_TARGET

    names = []
    for name, reg in registry.targets.items():
        target = reg.obj
        if not getattr(target, "auto_candidate", False):
            continue
        available = getattr(target, "available", None)
        if available is not None and available() is not None:
            continue
        names.append(name)
    return sorted(names, key=lambda n: (n != DEFAULT_TARGET, n))


def quantizes(passes: Sequence[Any]) -> bool:
    """Whether a plan (pass names, specs or instances) makes the model integer."""
    def name(p: Any) -> str:
        return str(getattr(p, "name", p)).split(":")[0]

    return any(name(p) in QUANTIZING_PASSES for p in passes)


def measure_candidates(compiler, model: Any, passes: Sequence[Any], opts, names: Sequence[str]) -> Choice:
    """Lower ``model`` (and, when ``passes`` quantize, a quick int8) for every target in ``names``, time
    them round-robin on each target's runtime, and ``choose``."""
    quantized = quantizes(passes)
    quick_calib = min(opts.calib_n or QUICK_CALIB_N, QUICK_CALIB_N)
    rows = {"fp32_ms": ["simplify"], **({"int8_ms": ["int8"]} if quantized else {})}
    runs: dict[str, Callable[[], Any]] = {}
    described: dict[str, str] = {}
    x = None
    for name in names:
        _, runtime = compiler.target(name)
        described[name] = runtime_label(runtime)
        for metric, plan in rows.items():
            settings = {k: getattr(opts, k) for k in ("imgsz", "calib", "opset", "trust_model")}
            source = model.snapshot() if hasattr(model, "snapshot") else model  # an IR: leave the caller's alone
            res = compiler.compile(source, plan, None, target=name, calib_n=quick_calib, measure=False, **settings)
            session = runtime.load(res.ir.onnx_model.SerializeToString(), opts.threads)
            if x is None:
                shape = [d.dim_value or 1 for d in res.ir.onnx_model.graph.input[0].type.tensor_type.shape.dim]
                x = timing_input(shape)
            runs[f"{name}|{metric}"] = (lambda s: (lambda: s.run(x)))(session)
    times = round_robin_ms(runs, ROUNDS, warmup=2, turn=opts.latency_turn)
    medians = {k: statistics.median(v) for k, v in times.items()}
    latency = {n: {m: round(medians[f"{n}|{m}"], 3) for m in rows} for n in names}
    return choose(latency, quantized, cpu_isa(), opts.threads, described)


def resolve(compiler, model: Any, passes: Sequence[Any], opts, log=None) -> tuple[Any, Choice | None]:
    """``opts`` with ``target`` set to the chosen one when it is ``auto`` (and the ``Choice``), else as given."""
    if opts.target != AUTO_TARGET:
        return opts, None
    from .errors import UsageError

    names = candidates(compiler.registry)
    if not names:
        raise UsageError("--target auto found no installed CPU runtime (install onnxruntime or openvino)")
    if len(names) == 1:
        choice = choose({names[0]: {"fp32_ms": 0.0, "int8_ms": 0.0}}, quantizes(passes), threads=opts.threads)
        choice = Choice(names[0], {}, choice.metric, choice.isa, opts.threads,
                        f"--target auto chose {names[0]}: the only installed CPU runtime")
    else:
        choice = measure_candidates(compiler, model, passes, opts, names)
    if log is not None:
        log.info(choice.line)
    return opts.merged({"target": choice.target}, "--target auto"), choice
