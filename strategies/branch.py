"""``branch``: a budget search strategy that branches from the input model into several structures,
times each one's INT8 model on the target's runtime, and trains those that can be the fastest in
batches, stopping weak ones early (successive halving on the recovery epochs), so that ``--workers N``
and ``--executor ray`` run several trainings at once. The objective is the latency measured on the
target's runtime; MACs only say which structures to try (and stand in where timing is off).

All drops are points of the primary val metric below the input model (``space.drop``); the choice is
made on val only (the budget measures test and reports it, never uses it). ``share`` below is the
pruning share of the budget: ``--max-drop`` x (1 - ``int8_share``), 60% of it by default; the rest
is kept for INT8, as in ``ladder``.

0. **Structures, timed.** One batch: for every MAC target (fractions of the input's MACs removed;
   ``--max-macs`` caps them) and every entry of ``activations`` (None: the model's own SiLU; ``relu``:
   ``act:to=relu`` first, which the target's integer kernels may fold), the untrained structure
   ``[act,] prune:macs=T,protect_head=false`` (per-group ratios from the sensitivity analysis) on the
   *input*, and ``int8`` alone on the input (the report's "int8 alone" row; never chosen). Then each
   structure's *latency probe* (``int8:method=minmax`` on a few images, no bias correction or
   confirmation: its accuracy does not matter, its graph is the one the final INT8 model has).
   Structures and probes are built, not evaluated (``Trial.evaluate``: nobody reads their accuracy);
   the probes and int8 alone are timed round-robin in one run (``space.latency``). A structure is
   trained only if its probe is at least ``min_gain`` (5%) faster than int8 alone and than the milder
   structures kept with the same activation, and, for a swapped activation, ``min_gain`` faster than
   the same MAC target with the model's own: pruning deeper and swapping the activation cost accuracy,
   so each must buy speed on this runtime (on OpenVINO at 160 px, -65% MACs ran no faster than -55%).
1. **Rung 1.** Every kept structure is distilled from the input model for at most ``rung_epochs[0]``
   epochs (``epochs=auto``: it stops as soon as the val drop is within ``share`` by ``margin``
   standard errors of val noise, the paired bootstrap SE of the drop), all in one batch.
2. **Successive halving.** After each rung, on the val drop each candidate measured:

   - a candidate whose drop plus ``margin`` standard errors is within ``share`` is *settled*: it joins
     the INT8 pool and trains no further (as the ladder accepts a step);
   - a candidate that is not within ``share`` and is no faster than a settled one (its probe's
     latency) is dropped: it can no longer be the fastest;
   - of the others, per activation (a swapped one starts further from the teacher, so it recovers on
     its own schedule), half of them (``k = ceil(n * keep)``) train on: the ``k - 1`` fastest (ties:
     the smaller val drop) and, of the rest, the one with the smallest val drop (``k`` = 1: the fastest
     alone). The objective is known before training (each probe's latency), only whether a candidate
     recovers is not, so the epochs go to the candidates that would be the answer if they do, with the
     best-recovering one kept as insurance; a candidate slower than a settled one stops anyway. Each
     survivor is a child trial of its last rung's trial (so the cache and
     a resumed search reuse every finished rung) with ``distill`` for at most ``rung_epochs[i]`` more
     epochs, all survivors in one batch. The rest stop. After the last rung, what is not within
     ``share`` is dropped, except the *fastest near miss*: the fastest candidate still faster than
     every settled one whose last rung closed more of its drop than the gap to ``share`` that remains
     (it was still recovering fast enough to make it) trains ``extra_rungs`` more rungs of
     ``rung_epochs[-1]`` epochs, alone, until it settles or stops closing its gap (on the digits
     detector on OpenVINO, ReLU -65% closed 6.7 pt in rung 3 and stood 0.37 pt over the share; a
     fourth rung of 16 epochs recovered it, 1.5x the speed of the SiLU -55% the search fell back to).
3. **INT8.** The pool, fastest probe first, is quantized ``quantize`` candidates per batch, then the
   input model alone (the last resort), with ``int8:max_drop=`` what the candidate leaves of the
   budget (mixed precision). As in the ladder, the first candidate in that order whose INT8 model
   fits the budget wins: all-INT8 at once; where mixed precision kept float layers or missed the
   budget, its QAT model (``qat``: every layer INT8) if that fits, else the mixed-precision model if
   that fits; else the next candidate. QAT runs (one batch) only for candidates ahead of the first
   all-INT8 fit. Nothing over the budget is returned (the budget verifies again).

Latency is measured in the search's own process between batches (no trial trains meanwhile), on the
machine that runs yolocc, which is the deployment CPU this is meant for; with ``--latency-runs 0``
nothing is timed and the fewest MACs order the structures instead. ``rung_epochs`` are the most epochs
*added* at each rung, so a candidate that survives every rung trains at most ``sum(rung_epochs)``
epochs (28 by default; the ladder allows 30 per step).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from yolocc.compiler.search import SearchSpace, SearchStrategy, Trial, TrialResult, drop_bound
from yolocc.compiler.training import MARGIN, PATIENCE
from yolocc.passes import fake_quant
from yolocc.passes.act import ACTIVATIONS as SWAPS, Act
from yolocc.passes.finetune import Distill
from yolocc.passes.int8 import LATENCY_PROBE, Int8
from yolocc.passes.prune import Prune
from yolocc.passes.qat import QAT

from .ladder import INT8_SHARE, LADDER, choose_int8, needs_qat

log = logging.getLogger(__name__)

#: The most recovery epochs added at each rung of the successive halving.
RUNG_EPOCHS = (4, 8, 16)
#: The activations a structure may have: None keeps the model's own (SiLU), "relu" swaps it (``act``).
ACTIVATIONS: tuple[str | None, ...] = (None, "relu")
#: How much faster (a fraction of its latency) a structure's probe must be than int8 alone, than the
#: milder structures kept with its activation and, for a swapped activation, than the same MAC target
#: with the model's own, to be trained.
MIN_GAIN = 0.05


@dataclass(eq=False)
class _Branch:
    """One structure's lineage (its MAC target and activation): its latest (deepest rung) result and its
    latency probe's measured ms (None: not timed)."""

    target: float
    act: str | None
    result: TrialResult
    latency: float | None = None
    closed: float = 0.0  # points of val drop its latest rung gained (0 at rung 1: no earlier val)

    @property
    def label(self) -> str:
        return structure_name(self.target, self.act)

    @property
    def name(self) -> str:
        return f"{self.label} + distill"

    def macs(self) -> float:
        """Its MACs as measured on its ONNX (1 - target where unmeasured: the same order)."""
        return self.result.macs if self.result.macs is not None else 1.0 - self.target

    def cost(self) -> float:
        """What the search minimises: its probe's latency where timed, else its MACs."""
        return self.latency if self.latency is not None else self.macs()


def structure_name(target: float, act: str | None) -> str:
    """A structure's trial name: "-45% MACs", "relu, -45% MACs"."""
    return f"{act + ', ' if act else ''}-{target:.0%} MACs"


@dataclass
class BranchSearch(SearchStrategy):
    """Branch into structures (MAC targets x activations) timed as INT8 on the target's runtime, distil
    those that can be the fastest with successive halving on the recovery epochs, then INT8 with mixed
    precision (see the module for the rule).

    Knobs: ``targets`` (fractions of the input's MACs removed; ``--max-macs`` caps them);
    ``activations`` (None: the model's own; ``relu``, ``relu6``, ``hardswish``: ``act:to=``);
    ``min_gain`` (how much faster, a fraction, a structure's probe must be than int8 alone, the milder
    structures kept and, swapped, the model's own activation); ``rung_epochs``
    (the most distillation epochs added at each rung); ``auto`` (True: ``distill:epochs=auto,
    max_epochs=E`` stops a rung early once within the pruning share; False: exactly ``epochs=E``);
    ``patience`` (``epochs=auto``'s); ``keep`` (fraction of the open candidates of an activation that
    train on after a rung, rounded up); ``int8_share`` (fraction of ``--max-drop`` kept for INT8);
    ``quantize`` (candidates quantized per batch); ``margin`` (standard errors of val noise, the paired
    bootstrap SE of the drop, that a candidate must clear within the share to settle); ``extra_rungs``
    (the most rungs of ``rung_epochs[-1]`` epochs added for the fastest near miss, 0: none)."""

    name = "branch"
    doc = ("time structures (MAC targets x activations) as int8 on the target, distill the fastest with "
           "successive halving on the epochs (batches for --workers/ray), then int8 with mixed precision")
    targets: tuple[float, ...] = LADDER
    activations: tuple[str | None, ...] = ACTIVATIONS
    min_gain: float = MIN_GAIN
    rung_epochs: tuple[int, ...] = RUNG_EPOCHS
    auto: bool = True
    patience: int = PATIENCE
    keep: float = 0.5
    int8_share: float = INT8_SHARE
    quantize: int = 2
    margin: float = MARGIN
    extra_rungs: int = 1

    def __post_init__(self) -> None:
        if not self.targets or not all(0 < t < 1 for t in self.targets):
            raise ValueError(f"branch: targets must be fractions in (0, 1), got {self.targets}")
        if not self.rung_epochs or min(self.rung_epochs) < 1:
            raise ValueError(f"branch: rung_epochs must be >= 1, got {self.rung_epochs}")
        if not self.activations or any(a is not None and a not in SWAPS for a in self.activations):
            raise ValueError(f"branch: activations must be None or one of {', '.join(SWAPS)}, "
                             f"got {self.activations}")
        if not 0 < self.keep <= 1 or not 0 <= self.int8_share < 1 or self.quantize < 1 or self.patience < 1 \
                or self.margin < 0 or not 0 <= self.min_gain < 1 or self.extra_rungs < 0:
            raise ValueError("branch: keep must be in (0, 1], int8_share and min_gain in [0, 1), quantize and "
                             "patience >= 1, margin and extra_rungs >= 0")

    # ------------------------------------------------------------------ the search
    def search(self, space: SearchSpace) -> TrialResult | None:
        max_macs = space.options.max_macs
        targets = sorted({t for t in self.targets if max_macs is None or t <= max_macs + 1e-9})
        share = space.budget * (1 - self.int8_share)
        total = len(self.rung_epochs) + 2
        if not targets:
            space.run([Trial("int8 alone", [Int8()], candidate=False, compare_as="int8")])
            pool = []
        else:
            pool = self.halve(space, self.structures(space, targets, total), share, total)
        space.progress("int8 with mixed precision", total, total)
        return self.quantize_pool(space, pool)

    def distill(self, epochs: int, share: float) -> Distill:
        if self.auto:
            return Distill(epochs="auto", within=round(share, 4), max_epochs=epochs, patience=self.patience,
                           margin=self.margin)
        return Distill(epochs=epochs)

    def structures(self, space: SearchSpace, targets: list[float], total: int) -> list[_Branch]:
        """Step 0: every structure built untrained and timed by its INT8 probe, with int8 alone; the
        ones worth training (see the module), fewest MACs removed first."""
        shapes = [(t, a) for a in self.activations for t in targets]
        space.progress(f"structures: {len(shapes)}, timed as int8", 0, total)
        trials = [Trial(structure_name(t, a), ([Act(to=a)] if a else []) + [Prune(macs=t, protect_head=False)],
                        parent=space.input.trial, candidate=False, evaluate=False) for t, a in shapes]
        *built, alone = space.run([*trials, Trial("int8 alone", [Int8()], candidate=False, compare_as="int8")])
        probes = space.run([Trial(f"{b.trial.name} + int8 (latency probe)", [Int8(**LATENCY_PROBE)], parent=b.trial,
                                  candidate=False, evaluate=False) for b in built])
        *timed, alone_ms = space.latency([*probes, alone])
        branches = [_Branch(t, a, b, ms) for (t, a), b, ms in zip(shapes, built, timed)]
        kept = worth_training(branches, alone_ms, self.min_gain)
        if alone_ms is not None:
            log.info("branch: int8 alone %.2f ms; structures as int8: %s", alone_ms, ", ".join(
                f"{b.label} {b.latency:.2f} ms{'' if b in kept else ' (not trained)'}" for b in branches
                if b.latency is not None))
        return kept

    def halve(self, space: SearchSpace, structures: list[_Branch], share: float, total: int) -> list[TrialResult]:
        """Rungs of training with successive halving (see the module); the settled results, fastest
        first."""
        teacher = space.input.trial
        settled: list[_Branch] = []
        unsettled: list[_Branch] = []
        open_ = structures
        rungs = len(self.rung_epochs)
        for rung, epochs in enumerate([*self.rung_epochs, *[self.rung_epochs[-1]] * self.extra_rungs], 1):
            if rung > rungs:  # past the last rung: only the fastest near miss goes on
                near = near_miss(unsettled, settled, space, share, self.margin)
                if near is None:
                    break
                open_ = [near]
            if not open_:
                break
            more = "" if rung == 1 else " more"
            what = f"{len(open_)} candidates" if rung <= rungs else "the fastest near miss"
            space.progress(f"rung {rung}: {what}, up to {epochs}{more} epochs", min(rung, rungs), total)
            trials = [Trial(b.name + (f" (rung {rung})" if rung > 1 else ""), [self.distill(epochs, share)],
                            parent=b.result.trial, teacher=teacher, candidate=False) for b in open_]
            trained = [_Branch(b.target, b.act, r, b.latency, space.drop(b.result) - space.drop(r) if rung > 1 else 0.0)
                       for b, r in zip(open_, space.run(trials))]
            settled += [b for b in trained if drop_bound(space, b.result, self.margin) <= share]
            unsettled = [b for b in trained if drop_bound(space, b.result, self.margin) > share]
            open_ = [b for a in self.activations
                     for b in survivors([u for u in unsettled if u.act == a], settled, space, self.keep)]
        return [b.result for b in sorted(settled, key=_Branch.cost)]

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


def worth_training(branches: list[_Branch], alone_ms: float | None, min_gain: float) -> list[_Branch]:
    """The structures worth training (step 0 of the module): per activation, in order of MAC target,
    each at least ``min_gain`` (a fraction) faster than int8 alone and than the last one kept; a swapped
    activation also ``min_gain`` faster than the same target with the model's own. Untimed structures
    are all kept."""
    own = {b.target: b.latency for b in branches if b.act is None}
    kept: list[_Branch] = []
    for act in dict.fromkeys(b.act for b in branches):
        best = alone_ms if alone_ms is not None else math.inf
        for b in sorted((b for b in branches if b.act == act), key=lambda b: b.target):
            if b.latency is None:
                kept.append(b)
                continue
            slower = [best] + ([own[b.target]] if act is not None and own.get(b.target) is not None else [])
            if b.latency > (1 - min_gain) * min(slower):
                continue
            best = b.latency
            kept.append(b)
    return kept


def survivors(open_: list[_Branch], settled: list[_Branch], space: SearchSpace, keep: float) -> list[_Branch]:
    """The open (not yet within the pruning share) candidates that train on, of those faster than every
    settled one (``_Branch.cost``): ``k = ceil(n * keep)`` of them, the ``k - 1`` fastest (ties: the
    smaller val drop) and the one with the smallest val drop of the rest (``k`` = 1: the fastest), in
    order of speed."""
    if settled:
        frontier = min(b.cost() for b in settled)
        open_ = [b for b in open_ if b.cost() < frontier]
    ranked = sorted(open_, key=lambda b: (b.cost(), space.drop(b.result)))
    k = math.ceil(len(ranked) * keep)
    if k < 2:
        return ranked[:k]
    safest = min(ranked[k - 1:], key=lambda b: (space.drop(b.result), b.cost()))
    return [b for b in ranked if b in ranked[:k - 1] or b is safest]


def near_miss(unsettled: list[_Branch], settled: list[_Branch], space: SearchSpace, share: float,
              margin: float) -> _Branch | None:
    """After the last rung: the fastest candidate that is faster than every settled one and whose last
    rung closed more points of its drop (``_Branch.closed``) than the gap to ``share`` it still has
    (``drop_bound`` - ``share``), or None."""
    frontier = min((b.cost() for b in settled), default=math.inf)
    for b in sorted(unsettled, key=_Branch.cost):
        if b.cost() >= frontier:
            break
        if b.closed > drop_bound(space, b.result, margin) - share:
            return b
    return None


def _named(space: SearchSpace, start: TrialResult, suffix: str, on_input: str) -> str:
    return on_input if start is space.input else f"{start.trial.name} + {suffix}"
