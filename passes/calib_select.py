"""``calibrate:method=auto``: the range method chosen by measuring, per model.

Every candidate's ranges (minmax, mean-minmax, entropy, percentiles 99.9/99.99/99.999: ``CANDIDATES``) become a
Q/DQ model with the target's own placement (the ``qdq`` pass that follows, or its defaults); each runs
on the target's runtime on held-out calibration images, never used for its ranges (with cross-fitting,
``score_folds``, every image in turn, scored with ranges from the other folds), and is scored two ways
against the float model's outputs on the same images:

- task agreement (``Frontend.agreement``; the Ultralytics frontend's is ``ultralytics_agreement``): the
  task's own metric of the candidate's predictions with the float model's confident predictions as
  ground truth, e.g. mAP50-95 of the boxes after NMS for a detector, mask mAP50-95 for a segmenter,
  top-1 agreement for a classifier; with paired bootstrap replicates over the held-out images;
- output fidelity: the mean, over images and over each output's named parts (``ir.meta["output_splits"]``:
  boxes, class scores and the task's own part, i.e. a segmenter's mask coefficients, a pose model's
  keypoints, an OBB model's angle; an output without named parts, such as a segmenter's prototypes,
  whole), of the cosine similarity with the float outputs (1.0: identical).

The candidates are ranked by agreement, then fidelity, then ``CANDIDATES`` order (``ranked``); the first
wins. Fidelity alone ranks them where the frontend cannot decode the task or the float model predicts
nothing confident (random weights).

With ``--data`` (``confirm``), the val split settles what the held-out images cannot: when the second
candidate's agreement gap to the first is within its paired standard error (``ties``), both are measured
on val and the better val metric is kept, but only where val can tell them apart too (its gap beyond
its own paired bootstrap SE over the val images; else the held-out order stands); an agreement gap
beyond its SE is not confirmed. Without agreement the best two by fidelity are always confirmed.

With ``calibrate:refit=true`` the chosen candidate's ranges are then refit on all the calibration
images, so that auto's model is the chosen fixed method's; the held-out images only ever choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import onnx

from yolocc.compiler import measure
from yolocc.compiler.analyses import CALIBRATION, OUTPUT_SPLITS
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.metrics import Metrics, drop_se
from yolocc.compiler.passbase import PassContext

#: Candidates in tie-break order: ``"minmax"``, ``"mean-minmax"`` (each image's own min and max, averaged
#: over the images: NNCF's default activation estimator), ``"entropy"``, ``"percentile P"``.
CANDIDATES = ("minmax", "mean-minmax", "entropy", "percentile 99.9", "percentile 99.99", "percentile 99.999")
#: Held-out images the candidates are scored on (a source with fewer than n + this keeps a quarter aside).
HOLDOUT = 32
#: Candidates, the best on the held-out images first, that ``confirm`` may measure on the val split.
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


def stacked(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image (or per-fold) output dicts ``{output: (n_i, ...)}`` joined along the batch axis."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def run_all(ctx: PassContext, model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    """``model``'s outputs on ``images`` (N, C, H, W), one image at a time on the target's runtime,
    stacked along the batch axis: ``{output: (N, ...)}``."""
    session = ctx.runtime.load(model.SerializeToString(), ctx.options.threads)
    return stacked([session.run(x[None]) for x in images])


def fidelity(ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
             splits: dict[str, dict[str, slice]] | None = None) -> float:
    """Mean cosine similarity of ``out`` with ``ref`` over samples and over every output's named parts
    (``measure.output_distance`` is the sum of ``1 - cosine`` over those parts); 1.0 is identical."""
    parts = sum(len((splits or {}).get(name) or {"all": None}) for name in ref)
    return 1.0 - measure.output_distance(ref, out, splits) / parts


@dataclass
class Scores:
    """Every candidate's scores on the held-out images: ``fidelity`` (mean output cosine, see ``fidelity``)
    and, where the frontend can decode the task (``Frontend.agreement``), ``agreement``: the task metric of
    its predictions against the float model's own, with paired bootstrap replicates over the images."""

    fidelity: dict[str, float]
    agreement: dict[str, Metrics] | None = None


def score_folds(ir: ModelIR, ctx: PassContext, folds: Sequence[tuple[dict[str, Ranges], np.ndarray]],
                build: Build, progress=None) -> Scores:
    """Each candidate's fidelity and task agreement (``Scores``) over cross-fitting folds (one fold: a plain
    hold-out): each fold's candidates (ranges from the images outside it) run on that fold's held-out images
    (N_k, C, H, W), and each candidate's outputs over all folds are scored together, every held-out image
    once. Candidates missing from a fold (a calibrator that failed there) are left out; ``agreement`` is
    None unless every candidate has one."""
    splits = ir.meta.get(OUTPUT_SPLITS, {})
    labels = [label for label in folds[0][0] if all(label in c for c, _ in folds)]
    ref = stacked([run_all(ctx, ir.onnx_model, held) for _, held in folds])
    fid: dict[str, float] = {}
    agree: dict[str, Metrics | None] = {}
    for i, label in enumerate(labels, 1):
        out = stacked([run_all(ctx, build(c[label]), held) for c, held in folds])
        fid[label] = fidelity(ref, out, splits)
        agree[label] = ctx.frontend.agreement(ir, ref, out)
        if progress:
            progress(i, len(labels))
    full = all(a is not None for a in agree.values())
    return Scores(fid, {k: a for k, a in agree.items() if a is not None} if full else None)


def fold_indices(total: int, folds: int) -> list[np.ndarray]:
    """``total`` samples' indices in ``folds`` interleaved folds (sample i in fold i % folds)."""
    return [np.arange(k, total, folds) for k in range(folds)]


def ranked(fidelity: dict[str, float], agreement: dict[str, float] | None = None) -> list[str]:
    """The labels best first: by task agreement (when measured), then by fidelity, then in
    ``CANDIDATES`` order."""
    order = {label: i for i, label in enumerate(CANDIDATES)}
    return sorted(fidelity, key=lambda label: (-(agreement or {}).get(label, 0.0), -fidelity[label],
                                               order.get(label, len(order))))


def best(fidelity: dict[str, float], agreement: dict[str, float] | None = None) -> str:
    """The first label of ``ranked``."""
    return ranked(fidelity, agreement)[0]


def ties(order: list[str], agreement: dict[str, Metrics]) -> tuple[dict[str, float | None], list[str]]:
    """Which candidates the held-out images cannot tell from the best (``order[0]``): each one's paired
    standard error (points, ``metrics.drop_se``) of its agreement gap to the best, and the labels whose
    gap is at most that SE (the best itself included), in ``order``."""
    top = agreement[order[0]]
    se = {label: drop_se(top, agreement[label]) for label in order}
    tied = [label for label in order
            if 100 * (top.value - agreement[label].value) <= (se[label] or 0.0) + 1e-9]
    return se, tied


def choose(scores: Scores) -> dict:
    """The choice among scored candidates, as cached and reported: ``{"fidelity", "order", "chosen"}``
    plus, with task agreement, ``{"metric", "agreement", "agreement_se", "tied"}`` (see ``ties``)."""
    values = {k: a.value for k, a in scores.agreement.items()} if scores.agreement else None
    order = ranked(scores.fidelity, values)
    choice = {"fidelity": scores.fidelity, "order": order, "chosen": order[0]}
    if scores.agreement:
        se, tied = ties(order, scores.agreement)
        choice.update(metric=scores.agreement[order[0]].primary, agreement=values, agreement_se=se, tied=tied)
    return choice


def to_confirm(choice: dict) -> list[str]:
    """The labels the val split should settle (``confirm``): the best ``CONFIRM_TOP`` when the held-out
    task agreement cannot tell them apart (or was not measured); none when it can."""
    top = choice["order"][:CONFIRM_TOP]
    if len(top) < 2:
        return []
    if "tied" in choice and not all(label in choice["tied"] for label in top):
        return []
    return top


def confirmed(val: dict[str, float], order: list[str], se: float | None = None) -> str:
    """The label with the best val metric among ``val`` (label -> value, a fraction); a tie, or with ``se``
    (the paired standard error of the two values' gap, in points) a gap within it, keeps the earlier one in
    ``order`` (the labels ranked on the held-out images, best first)."""
    first = min(val, key=order.index)
    top = max(val, key=lambda label: (val[label], -order.index(label)))
    if se is not None and 100 * (val[top] - val[first]) <= se:
        return first
    return top


def summary(choice: dict, held_out: int, folds: int = 1) -> str:
    """The one terminal line: ``calibration: auto chose entropy (agreement mAP50-95 0.9721, fidelity
    0.99922; percentile 99.999 0.9702 tied, minmax 0.9650, ...) on 32 held-out images``; without task
    agreement the others' fidelities."""
    chosen, fid, agree = choice["chosen"], choice["fidelity"], choice.get("agreement")
    if agree:
        tied = set(choice["tied"])
        others = ", ".join(f"{label} {agree[label]:.4f}" + (" tied" if label in tied else "")
                           for label in choice["order"] if label != chosen)
        head = f"{choice['metric']} {agree[chosen]:.4f}, fidelity {fid[chosen]:.5f}"
    else:
        others = ", ".join(f"{label} {fid[label]:.5f}" for label in choice["order"] if label != chosen)
        head = f"fidelity {fid[chosen]:.5f}"
    where = f"{held_out} held-out images" + (f" ({folds} folds)" if folds > 1 else "")
    return f"calibration: auto chose {chosen} ({head}" + (f"; {others}" if others else "") + f") on {where}"
