"""Search strategies and typed trials: the interface between the accuracy budget (``--max-drop``, the
policy's frame: measure, verify, report; see ``budget``) and the strategies that propose models.

A ``Trial`` is a list of ``Pass`` objects with typed parameters applied to a parent trial's model
(None: the input model), with the trial whose model recovery passes distil from (``teacher``; its
measured val metrics are the reference ``epochs=auto`` recovers towards). yolocc never writes a
``-p`` string for itself. A ``SearchStrategy`` (a plugin: ``yolocc_register_strategies``) gets a
``SearchSpace``, runs batches of trials through it and returns the result it chooses, or None.
The built-in strategies are ``ladder`` (the default, ``yolocc.strategies.ladder``) and ``branch``
(``yolocc.strategies.branch``: batches of candidates from the input, successive halving on the epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence

from . import metrics
from .metrics import Metrics
from .options import CompileOptions

if TYPE_CHECKING:
    from .ir import ModelIR
    from .passbase import Pass


@dataclass(eq=False)
class Trial:
    """One model to build and measure: ``passes`` applied to ``parent``'s model (None: the input).

    ``teacher``: the trial whose model recovery passes (``distill``) learn from and whose val metrics
    ``epochs=auto`` recovers towards (None: their defaults, the model before pruning). ``candidate``:
    False for trials measured only for comparison (never chosen). ``compare_as``: a short key under
    which the budget summary reports the final model's speed-up against this trial
    (``speedup_vs_<key>``). ``evaluate``: False builds and sizes the model without measuring its
    accuracy (its result's ``val`` is None): for models whose speed alone is wanted, such as an
    untrained structure and its latency probe (never a candidate)."""

    name: str
    passes: list["Pass"] = field(default_factory=list)
    parent: "Trial | None" = None
    teacher: "Trial | None" = None
    candidate: bool = True
    compare_as: str | None = None
    evaluate: bool = True

    def __post_init__(self) -> None:
        if self.candidate and not self.evaluate:
            raise ValueError(f"trial '{self.name}': a candidate must be evaluated")

    def lineage(self) -> list["Pass"]:
        """Every pass from the input model to this trial's model, in order."""
        return (self.parent.lineage() if self.parent is not None else []) + list(self.passes)

    def spec(self) -> list[str]:
        """The lineage as readable pass specs (for reports; never parsed back)."""
        return [p.spec() for p in self.lineage()]


@dataclass(eq=False)
class TrialResult:
    """What a trial measured: val (and, when the data has a test split, test) metrics (None for a trial
    that is not evaluated, ``Trial.evaluate``), the facts each
    pass reported, and, once the budget has timed every result round-robin on the target's runtime,
    ``latency_ms`` (p50, batch 1). ``size_bytes`` and ``macs`` (of its ONNX model) are known as soon as
    the trial ran. ``ir`` is the built model."""

    trial: Trial
    val: Metrics | None
    test: Metrics | None = None
    facts: list[dict[str, Any]] = field(default_factory=list)
    ir: "ModelIR | None" = field(default=None, repr=False)
    latency_ms: float | None = None
    size_bytes: int | None = None
    macs: int | None = None
    #: The trial's key in the content cache (None: not cached), and whether its result was read back
    #: from there (a resumed or repeated search) instead of being built again.
    key: str | None = None
    reused: bool = False
    #: Seconds it took to build and measure (as stored, for a reused result) and the ``host:pid`` that
    #: built it ("" for the input).
    time_s: float | None = None
    worker: str = ""


class SearchSpace(Protocol):
    """What the budget hands a strategy: the measured input, the budget, and a way to run trials."""

    #: The accuracy budget in points of the primary val metric (``--max-drop``).
    budget: float
    options: CompileOptions
    #: The input model, measured: ``input.val`` is the reference every drop is measured from.
    input: TrialResult

    def run(self, trials: Sequence[Trial]) -> list[TrialResult]:
        """Build and measure ``trials`` (a batch that may run in parallel; parents must have run)."""

    def pass_(self, name: str, **args: Any) -> "Pass":
        """A registered pass with typed arguments (``space.pass_("prune", macs=0.3)``)."""

    def drop(self, result: TrialResult) -> float:
        """Points of the primary val metric ``result`` lost against the input (negative: gained)."""

    def drop_se(self, result: TrialResult) -> float | None:
        """The standard error in points of ``drop(result)`` from val noise (paired bootstrap over the val
        images, ``metrics.drop_se``); None where the evaluation gave no bootstrap replicates."""

    def latency(self, results: Sequence[TrialResult]) -> list[float | None]:
        """Median latency (ms, batch 1) of each result's model on the target's runtime, all timed
        round-robin in one run in the search's own process (so they share the machine's conditions; a
        batch of trials must have finished). None for each where the options turn timing off
        (``latency_runs`` 0); the strategy then falls back to MACs."""

    def progress(self, what: str, done: int, total: int) -> None:
        """Report progress of the search (the CLI shows it)."""


def drop_bound(space: SearchSpace, result: TrialResult, margin: float) -> float:
    """``space.drop(result)`` plus ``margin`` standard errors of its val noise (``space.drop_se``; none
    where unknown): the drop a cautious strategy compares with a share of the budget, so that a model is
    not accepted on a lucky draw of val images."""
    return metrics.drop_bound(space.drop(result), space.drop_se(result), margin)


class SearchStrategy:
    """Proposes trials within an accuracy budget and chooses among their results.

    Subclasses set ``name`` (``--search NAME``) and ``doc`` (one line for ``yolocc strategies``), and
    implement ``search``. A strategy decides on val metrics only (the budget reports test)."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""

    def search(self, space: SearchSpace) -> TrialResult | None:
        """Run trials through ``space`` and return the fastest result within ``space.budget`` that may
        be chosen (``trial.candidate``), or None when no trial fits."""
        raise NotImplementedError
