"""``calibrate:method=auto``: the range method chosen by measuring, per model.

Every candidate's ranges (minmax, entropy, percentiles 99.9/99.99/99.999: ``CANDIDATES``) become a
Q/DQ model with the target's own placement (the ``qdq`` pass that follows, or its defaults); each runs
on the target's runtime on held-out calibration images, never used for the ranges, and is scored by
its output fidelity against the float model: the mean, over images and over each output's named parts
(``ir.meta["output_splits"]``: boxes, class scores and the task's own part, i.e. a segmenter's mask
coefficients, a pose model's keypoints, an OBB model's angle; an output without named parts, such as a
segmenter's prototypes, whole), of the cosine similarity with the float outputs (1.0: identical). The highest fidelity wins; ties go to the earlier candidate.

With ``--data`` (``confirm``), the best ``CONFIRM_TOP`` by fidelity are also measured on the val split
and the one with the better val metric is kept (ties: the better fidelity): the held-out fidelity
ranks the candidates, the task metric settles the close ones.

With ``calibrate:refit=true`` the chosen candidate's ranges are then refit on all the calibration
images, so that auto's model is the chosen fixed method's; the held-out images only ever choose.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx

from yolocc.compiler import measure
from yolocc.compiler.analyses import CALIBRATION, OUTPUT_SPLITS
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.passbase import PassContext

#: Candidates in tie-break order: ``"minmax"``, ``"entropy"``, ``"percentile P"``.
CANDIDATES = ("minmax", "entropy", "percentile 99.9", "percentile 99.99", "percentile 99.999")
#: Held-out images the candidates are scored on (a source with fewer than n + this keeps a quarter aside).
HOLDOUT = 32
#: Candidates, the best by fidelity first, that ``confirm`` measures on the val split.
CONFIRM_TOP = 2

Ranges = dict[str, list[float]]  # tensor -> [min, max]
Build = Callable[..., onnx.ModelProto]  # (ranges, bias shifts or None) -> Q/DQ model


def parse(label: str) -> tuple[str, float | None]:
    """A candidate label as (onnxruntime method, percentile or None): ``"percentile 99.99"`` ->
    ``("percentile", 99.99)``."""
    method, _, pct = label.partition(" ")
    return method, float(pct) if pct else None


def by_method(labels: Sequence[str]) -> dict[str, list[float | None]]:
    """Labels grouped by the calibrator that collects them (percentiles share one histogram)."""
    groups: dict[str, list[float | None]] = {}
    for label in labels:
        method, pct = parse(label)
        groups.setdefault(method, []).append(pct)
    return groups


def qdq_builder(ir: ModelIR, ctx: PassContext, what: str = "method=auto") -> tuple[Build, dict]:
    """A function from activation ranges (and, optionally, bias correction's shifts ``{layer: [C]}``)
    to the Q/DQ model the plan's ``qdq`` pass would build (the first ``qdq`` among the passes still to
    run, else one with default arguments) for ``ctx.target``, and that pass's placement arguments (for
    cache keys); the models of the same ``ranges`` object are built once. ``UsageError`` when the target does
    not quantize (``what`` names the asking feature)."""
    from .qdq import QDQ, require_integer_rules

    target = require_integer_rules(ctx.target, f"calibrate:{what} measures by quantizing for the target "
                                               f"(or choose a fixed method=)")
    qdq = next((p for p in ctx.upcoming if isinstance(p, QDQ)), None) or QDQ()
    saved = ir.analyses.get(CALIBRATION)
    built: dict[int, tuple[Ranges, onnx.ModelProto]] = {}  # uncorrected models by ranges (scoring, confirm, bias)

    def build(ranges: Ranges, shifts: dict[str, list[float]] | None = None) -> onnx.ModelProto:
        if not shifts and id(ranges) in built and built[id(ranges)][0] is ranges:
            return built[id(ranges)][1]
        ir.analyses[CALIBRATION] = {"activations": ranges, **({"bias_shifts": shifts} if shifts else {})}
        try:
            model = qdq.build(ir, target, set())[0]
            if not shifts:
                built[id(ranges)] = (ranges, model)
            return model
        finally:
            if saved is None:
                ir.analyses.pop(CALIBRATION, None)
            else:
                ir.analyses[CALIBRATION] = saved

    return build, {k: v for k, v in qdq.args.items() if k != "max_drop"}


def run_all(ctx: PassContext, model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    """``model``'s outputs on ``images`` (N, C, H, W), one image at a time on the target's runtime,
    stacked along the batch axis: ``{output: (N, ...)}``."""
    session = ctx.runtime.load(model.SerializeToString(), ctx.options.threads)
    outs = [session.run(x[None]) for x in images]
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}


def fidelity(ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
             splits: dict[str, dict[str, slice]] | None = None) -> float:
    """Mean cosine similarity of ``out`` with ``ref`` over samples and over every output's named parts
    (``measure.output_distance`` is the sum of ``1 - cosine`` over those parts); 1.0 is identical."""
    parts = sum(len((splits or {}).get(name) or {"all": None}) for name in ref)
    return 1.0 - measure.output_distance(ref, out, splits) / parts


def score(ir: ModelIR, ctx: PassContext, candidates: dict[str, Ranges], held: np.ndarray, build: Build,
          progress=None) -> dict[str, float]:
    """Each candidate's fidelity (see ``fidelity``) on the held-out images ``held`` (N, C, H, W)."""
    splits = ir.meta.get(OUTPUT_SPLITS, {})
    ref = run_all(ctx, ir.onnx_model, held)
    scores = {}
    for i, (label, ranges) in enumerate(candidates.items(), 1):
        scores[label] = fidelity(ref, run_all(ctx, build(ranges), held), splits)
        if progress:
            progress(i, len(candidates))
    return scores


def ranked(scores: dict[str, float]) -> list[str]:
    """The labels by fidelity, the highest first; among equal ones the first in ``CANDIDATES`` order."""
    order = {label: i for i, label in enumerate(CANDIDATES)}
    return sorted(scores, key=lambda label: (-scores[label], order.get(label, len(order))))


def best(scores: dict[str, float]) -> str:
    """The label with the highest fidelity; among equal ones the first in ``CANDIDATES`` order."""
    return ranked(scores)[0]


def confirmed(val: dict[str, float], by_fidelity: list[str]) -> str:
    """The label with the best val metric among ``val`` (label -> value); ties go to the earlier one
    in ``by_fidelity`` (the labels ranked by fidelity, best first)."""
    return max(val, key=lambda label: (val[label], -by_fidelity.index(label)))


def summary(chosen: str, scores: dict[str, float], held_out: int) -> str:
    """The one terminal line: ``calibration: auto chose percentile 99.99 (fidelity 0.99712; minmax
    0.99431, ...) on 32 held-out images``."""
    others = ", ".join(f"{label} {f:.5f}" for label, f in scores.items() if label != chosen)
    return (f"calibration: auto chose {chosen} (fidelity {scores[chosen]:.5f}"
            + (f"; {others}" if others else "") + f") on {held_out} held-out images")
