"""``branch``: a budget search strategy that branches from the input model and trains its candidates
in batches, stopping weak ones early (successive halving on the recovery epochs), so that
``--workers N`` and ``--executor ray`` run several trainings at once.

All drops are points of the primary val metric below the input model (``space.drop``); the choice is
made on val only (the budget measures test and reports it, never uses it). ``share`` below is the
pruning share of the budget: ``--max-drop`` x (1 - ``int8_share``), 60% of it by default; the rest
is kept for INT8, as in ``ladder``.

1. **Branch.** One batch: ``int8`` alone on the input (the report's "int8 alone" row, for comparison;
   never chosen) and, for every MAC target (fractions of the input's MACs removed; ``--max-macs``
   caps them), ``prune:macs=T,protect_head=false`` (per-group ratios from the sensitivity analysis)
   on the *input* model, then ``distill`` from the input model for at most ``rung_epochs[0]``
   epochs (``epochs=auto``: it stops as soon as the val drop is within ``share`` by ``margin``
   standard errors of val noise, the paired bootstrap SE of the drop).
2. **Successive halving.** After each rung, on the val drop each candidate measured:

   - a candidate whose drop plus ``margin`` standard errors is within ``share`` is *settled*: it joins
     the INT8 pool and trains no further (as the ladder accepts a step);
   - a candidate that is not within ``share`` and has at least as many MACs as a settled one is
     dropped: it can no longer be the fastest;
   - of the others, the better half (``ceil(n * keep)``) by the smallest val drop (ties: fewer MACs)
     train on: each survivor is a child trial of its last rung's trial (so the cache and a resumed
     search reuse every finished rung) with ``distill`` for at most ``rung_epochs[i]`` more epochs,
     all survivors in one batch. The rest stop. After the last rung, what is not within ``share`` is
     dropped.
3. **INT8.** The pool, fewest MACs first, is quantized ``quantize`` candidates per batch, then the
   input model alone (the last resort), with ``int8:max_drop=`` what the candidate leaves of the
   budget (mixed precision). As in the ladder, the first candidate in that order whose INT8 model
   fits the budget wins: all-INT8 at once; where mixed precision kept float layers or missed the
   budget, its QAT model (``qat``: every layer INT8) if that fits, else the mixed-precision model if
   that fits; else the next candidate. QAT runs (one batch) only for candidates ahead of the first
   all-INT8 fit. Nothing over the budget is returned (the budget verifies again).

The objective is the fewest MACs, counted on each trial's ONNX model (the search cannot time models:
the budget measures every candidate's latency on the target's runtime for the report, after the
search). ``rung_epochs`` are the most epochs *added* at each rung, so a candidate that survives
every rung trains at most ``sum(rung_epochs)`` epochs (28 by default; the ladder allows 30 per step);
with four targets the rungs train at most 4, 2 and 1 candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from yolocc.compiler.search import SearchSpace, SearchStrategy, Trial, TrialResult, drop_bound
from yolocc.compiler.training import MARGIN, PATIENCE
from yolocc.passes import fake_quant
from yolocc.passes.finetune import Distill
from yolocc.passes.int8 import Int8
from yolocc.passes.prune import Prune
from yolocc.passes.qat import QAT

from .ladder import INT8_SHARE, LADDER, choose_int8, needs_qat

#: The most recovery epochs added at each rung of the successive halving.
RUNG_EPOCHS = (4, 8, 16)


@dataclass
class _Branch:
    """One MAC target's lineage: its latest (deepest rung) result."""

    target: float
    result: TrialResult

    @property
    def name(self) -> str:
        return f"-{self.target:.0%} MACs + distill"

    def macs(self) -> float:
        """Its MACs as measured on its ONNX (1 - target where unmeasured: the same order)."""
        return self.result.macs if self.result.macs is not None else 1.0 - self.target


@dataclass
class BranchSearch(SearchStrategy):
    """Prune to several MAC targets at once from the input, distil them with successive halving on
    the recovery epochs, then INT8 with mixed precision (see the module for the rule).

    Knobs: ``targets`` (fractions of the input's MACs removed, one branch each; ``--max-macs`` caps
    them); ``rung_epochs`` (the most distillation epochs added at each rung); ``auto`` (True:
    ``distill:epochs=auto,max_epochs=E`` stops a rung early once within the pruning share; False: exactly
    ``epochs=E``); ``patience`` (``epochs=auto``'s); ``keep`` (fraction of the open candidates that
    train on after a rung, rounded up); ``int8_share`` (fraction of ``--max-drop`` kept for INT8);
    ``quantize`` (candidates quantized per batch); ``margin`` (standard errors of val noise, the paired
    bootstrap SE of the drop, that a candidate must clear within the share to settle)."""

    name = "branch"
    doc = ("prune to several MAC targets at once + distill with successive halving on the epochs (batches for "
           "--workers/ray), then int8 with mixed precision")
    targets: tuple[float, ...] = LADDER
    rung_epochs: tuple[int, ...] = RUNG_EPOCHS
    auto: bool = True
    patience: int = PATIENCE
    keep: float = 0.5
    int8_share: float = INT8_SHARE
    quantize: int = 2
    margin: float = MARGIN

    def __post_init__(self) -> None:
        if not self.targets or not all(0 < t < 1 for t in self.targets):
            raise ValueError(f"branch: targets must be fractions in (0, 1), got {self.targets}")
        if not self.rung_epochs or min(self.rung_epochs) < 1:
            raise ValueError(f"branch: rung_epochs must be >= 1, got {self.rung_epochs}")
        if not 0 < self.keep <= 1 or not 0 <= self.int8_share < 1 or self.quantize < 1 or self.patience < 1 \
                or self.margin < 0:
            raise ValueError("branch: keep must be in (0, 1], int8_share in [0, 1), quantize and patience >= 1, "
                             "margin >= 0")

    # ------------------------------------------------------------------ the search
    def search(self, space: SearchSpace) -> TrialResult | None:
        max_macs = space.options.max_macs
        targets = sorted({t for t in self.targets if max_macs is None or t <= max_macs + 1e-9})
        share = space.budget * (1 - self.int8_share)
        total = len(self.rung_epochs) + 1
        pool = self.halve(space, targets, share, total) if targets else []
        if not targets:
            space.run([Trial("int8 alone", [Int8()], candidate=False, compare_as="int8")])
        space.progress("int8 with mixed precision", total, total)
        return self.quantize_pool(space, pool)

    def distill(self, epochs: int, share: float) -> Distill:
        if self.auto:
            return Distill(epochs="auto", within=round(share, 4), max_epochs=epochs, patience=self.patience,
                           margin=self.margin)
        return Distill(epochs=epochs)

    def halve(self, space: SearchSpace, targets: list[float], share: float, total: int) -> list[TrialResult]:
        """Rungs of training with successive halving (see the module); the settled results, fewest MACs
        first."""
        teacher = space.input.trial
        settled: list[_Branch] = []
        open_: list[_Branch] = []
        for rung, epochs in enumerate(self.rung_epochs, 1):
            if rung == 1:
                space.progress(f"rung 1: {len(targets)} candidates, up to {epochs} epochs", 1, total)
                trials = [Trial(f"-{t:.0%} MACs + distill",
                                [Prune(macs=t, protect_head=False), self.distill(epochs, share)],
                                parent=space.input.trial, teacher=teacher, candidate=False) for t in targets]
                comparison = Trial("int8 alone", [Int8()], candidate=False, compare_as="int8")
                *results, _ = space.run([*trials, comparison])  # int8 alone runs alongside the training
                trained = [_Branch(t, r) for t, r in zip(targets, results)]
            else:
                space.progress(f"rung {rung}: {len(open_)} candidates, up to {epochs} more epochs", rung, total)
                trials = [Trial(f"{b.name} (rung {rung})", [self.distill(epochs, share)], parent=b.result.trial,
                                teacher=teacher, candidate=False) for b in open_]
                trained = [_Branch(b.target, r) for b, r in zip(open_, space.run(trials))]
            settled += [b for b in trained if drop_bound(space, b.result, self.margin) <= share]
            open_ = survivors([b for b in trained if drop_bound(space, b.result, self.margin) > share], settled,
                              space, self.keep)
            if not open_:
                break
        return [b.result for b in sorted(settled, key=_Branch.macs)]

    def quantize_pool(self, space: SearchSpace, pool: list[TrialResult]) -> TrialResult | None:
        """INT8 on ``pool``, ``quantize`` per batch, then on the input alone; the first that fits (see the module)."""
        budget = space.budget
        groups = [pool[i:i + self.quantize] for i in range(0, len(pool), self.quantize)] + [[space.input]]
        for group in groups:
            group = [s for s in group if budget - space.drop(s) > 0]
            if not group:
                continue
            mixed = space.run([Trial(_named(space, s, "int8", "int8 (mixed precision)"),
                                     [Int8(max_drop=round(budget - space.drop(s), 4))], parent=s.trial)
                               for s in group])
            qat_for: list[TrialResult] = []
            if fake_quant.available():
                for s, m in zip(group, mixed):  # the ladder's order: QAT only ahead of the first candidate
                    if not needs_qat(space, m):  # whose mixed precision fits all-INT8 ...
                        break
                    qat_for.append(s)
                    if space.drop(m) <= budget:  # ... or fits at all (a later one would not be chosen)
                        break
            trained = dict(zip(map(id, qat_for), space.run([Trial(_named(space, s, "qat", "qat"), [QAT()],
                                                                  parent=s.trial) for s in qat_for])
                               if qat_for else []))
            for s, m in zip(group, mixed):
                chosen = choose_int8(space, m, trained.get(id(s)))
                if chosen is not None:
                    return chosen
        return None


def survivors(open_: list[_Branch], settled: list[_Branch], space: SearchSpace, keep: float) -> list[_Branch]:
    """The open (not yet within the pruning share) candidates that train on: those with fewer MACs than
    every settled one, the better ``ceil(n * keep)`` of them by the smallest val drop (ties: fewer MACs)."""
    if settled:
        frontier = min(b.macs() for b in settled)
        open_ = [b for b in open_ if b.macs() < frontier]
    ranked = sorted(open_, key=lambda b: (space.drop(b.result), b.macs()))
    return ranked[:math.ceil(len(ranked) * keep)]


def _named(space: SearchSpace, start: TrialResult, suffix: str, on_input: str) -> str:
    return on_input if start is space.input else f"{start.trial.name} + {suffix}"
