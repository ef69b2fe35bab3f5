"""``ladder``: the default budget search strategy. It climbs a ladder of MAC reductions, each step
building on the last accepted model:

1. ``int8`` alone on the input (for comparison: the report's "int8 alone" row; never chosen here);
2. prune to the next MAC target with per-group ratios from the sensitivity analysis (head included),
   then distil from the input model until the val metric is back within the pruning share of the
   budget (``epochs=auto``) by ``margin`` standard errors of val noise (the paired bootstrap SE of the
   drop); accept the step if it is, stop climbing at the first step that is not (``--max-macs`` caps
   the deepest step);
3. quantize the most aggressive accepted model with INT8 mixed precision for what is left of the
   budget. Where that needs float layers or is over budget, quantization-aware training (``qat``, all
   layers INT8, the same placement) is tried on the same model: it is chosen when it fits (it runs as
   fast as plain INT8); otherwise the mixed-precision model is, if it fits. If neither does, the next
   milder accepted model is quantized instead. (Without onnx2torch, the ``qat`` extra, QAT is skipped.)
"""

from __future__ import annotations

from dataclasses import dataclass

from yolocc.compiler.search import SearchSpace, SearchStrategy, Trial, TrialResult, drop_bound
from yolocc.compiler.training import MARGIN, MAX_EPOCHS, PATIENCE
from yolocc.passes import fake_quant
from yolocc.passes.finetune import Distill
from yolocc.passes.int8 import Int8
from yolocc.passes.prune import Prune
from yolocc.passes.qat import QAT

#: Cumulative fractions of the input's MACs removed, tried in order (each step builds on the last).
LADDER = (0.3, 0.45, 0.55, 0.65)
#: The share of the budget kept for INT8 (its measured cost on the digits detector is 0.3-0.4 pt).
INT8_SHARE = 0.4


def ladder_steps(ladder: tuple[float, ...]) -> list[float]:
    """Per-step fractions of the *current* model's MACs that reach the cumulative ``ladder``."""
    steps, kept = [], 1.0
    for target in ladder:
        steps.append(round(1 - (1 - target) / kept, 4))
        kept = 1 - target
    return steps


@dataclass
class LadderSearch(SearchStrategy):
    """Prune + distil up a ladder of MAC reductions, then INT8 with mixed precision (see the module)."""

    name = "ladder"
    doc = "prune (sensitivity-allocated) + distill up a ladder of MAC reductions, then int8 with mixed precision"
    ladder: tuple[float, ...] = LADDER
    int8_share: float = INT8_SHARE
    max_epochs: int = MAX_EPOCHS
    patience: int = PATIENCE
    #: Standard errors of val noise a pruning step must clear within its share (0: the val drop alone).
    margin: float = MARGIN

    def search(self, space: SearchSpace) -> TrialResult | None:
        max_macs = space.options.max_macs
        ladder = tuple(m for m in self.ladder if max_macs is None or m <= max_macs + 1e-9)
        budget = space.budget
        prune_budget = budget * (1 - self.int8_share)
        n_steps = len(ladder) + 2
        space.progress("int8 alone", 1, n_steps)
        space.run([Trial("int8 alone", [Int8()], candidate=False, compare_as="int8")])
        accepted: list[TrialResult] = [space.input]
        for i, (cumulative, step) in enumerate(zip(ladder, ladder_steps(ladder)), 1):
            space.progress(f"candidate {i}/{len(ladder)}: -{cumulative:.0%} MACs", i + 1, n_steps)
            parent = accepted[-1]
            trial = Trial(f"-{cumulative:.0%} MACs + distill",
                          [Prune(macs=step, protect_head=False),
                           Distill(epochs="auto", within=round(prune_budget, 4), max_epochs=self.max_epochs,
                                   patience=self.patience, margin=self.margin)],
                          parent=parent.trial, teacher=space.input.trial,
                          candidate=False)
            result, = space.run([trial])
            if drop_bound(space, result, self.margin) > prune_budget:
                break
            accepted.append(result)
        for start in reversed(accepted):  # the most aggressive first
            left = budget - space.drop(start)
            if left <= 0:
                continue
            space.progress(f"int8 with mixed precision on '{start.trial.name}'", n_steps, n_steps)
            name = f"{start.trial.name} + int8" if start is not space.input else "int8 (mixed precision)"
            result, = space.run([Trial(name, [Int8(max_drop=round(left, 4))],
                                       parent=start.trial)])
            trained = None
            if needs_qat(space, result) and fake_quant.available():
                space.progress(f"quantization-aware training on '{start.trial.name}'", n_steps, n_steps)
                qat_name = f"{start.trial.name} + qat" if start is not space.input else "qat"
                trained, = space.run([Trial(qat_name, [QAT()], parent=start.trial)])
            chosen = choose_int8(space, result, trained)
            if chosen is not None:
                return chosen
        return None


def needs_qat(space: SearchSpace, mixed: TrialResult) -> bool:
    """Whether QAT is worth trying on the model ``mixed`` was quantized from: its INT8 mixed precision
    kept float layers, or missed the budget."""
    return space.drop(mixed) > space.budget or bool(float_layers(mixed))


def choose_int8(space: SearchSpace, mixed: TrialResult, qat: TrialResult | None) -> TrialResult | None:
    """The quantized model to keep for one candidate: ``mixed`` (INT8 mixed precision) if it fits the
    budget with every layer INT8; else ``qat`` (None: not run) if it fits; else ``mixed`` if it fits
    with float layers; else None."""
    fits = space.drop(mixed) <= space.budget
    if fits and not float_layers(mixed):
        return mixed
    if qat is not None and space.drop(qat) <= space.budget:
        return qat
    return mixed if fits else None


def float_layers(result: TrialResult) -> list[str]:
    """The layers INT8 mixed precision kept float in ``result`` (none: all quantized)."""
    for step in result.facts:
        mixed = step.get("changes", {}).get("mixed_precision")
        if mixed:
            return list(mixed.get("float_layers") or [])
    return []
