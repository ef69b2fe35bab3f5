"""``Metrics``: one stage's accuracy on labelled data, with the metric that decides (``primary``) and
how much of a difference between two models the split can resolve (bootstrap replicates, ``drop_se``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

#: Bootstrap resamples of a split's images behind ``Metrics.replicates``.
BOOTSTRAP = 200
#: Seed of those resamples: every model measured on the same split is resampled on the same images.
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Metrics:
    """Accuracy values of one evaluation, e.g. ``Metrics("mAP50-95", {"mAP50-95": 0.61, "mAP50": 0.82})``.

    ``primary`` names the value that budgets, recovery targets and plots use (a fraction in [0, 1];
    a "point" is 0.01 of it). ``values`` holds every value the frontend measured, ``primary`` included.
    ``replicates`` (empty: not measured) is the primary metric recomputed on ``BOOTSTRAP`` resamples, with
    replacement, of the split's images, drawn with ``BOOTSTRAP_SEED``: two models measured on the same
    split are resampled on the same images, so ``drop_se`` of the pair is a paired standard error.
    """

    primary: str
    values: Mapping[str, float] = field(default_factory=dict)
    replicates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.primary not in self.values:
            raise ValueError(f"primary metric '{self.primary}' is not among {sorted(self.values)}")

    @property
    def value(self) -> float:
        """The primary metric's value."""
        return float(self.values[self.primary])

    def as_dict(self) -> dict[str, float]:
        """The values with the primary metric first (the report's per-stage ``metrics`` layout)."""
        return {self.primary: self.values[self.primary], **{k: v for k, v in self.values.items() if k != self.primary}}

    def with_replicates(self, replicates) -> "Metrics":
        """These values with bootstrap ``replicates`` of the primary metric (rounded to 1e-5)."""
        return Metrics(self.primary, dict(self.values), tuple(round(float(r), 5) for r in replicates))

    @classmethod
    def from_dict(cls, values: Mapping[str, float], primary: str | None = None) -> "Metrics":
        """From a report's ``metrics`` dict: ``primary`` if given, else its first key (the report
        writes the primary metric first)."""
        if not values:
            raise ValueError("no metric values")
        return cls(primary or next(iter(values)), dict(values))


def primary_metric(report: Any) -> str | None:
    """The primary metric's name of a ``Report``: recorded in ``report.accuracy["metric"]``; reports
    written before it was recorded have it as the first key of a stage's ``metrics``."""
    name = (getattr(report, "accuracy", None) or {}).get("metric")
    if name:
        return name
    first = next((s.metrics for s in getattr(report, "stages", []) if s.metrics), None)
    return next(iter(first)) if first else None


def drop_se(reference: Metrics, candidate: Metrics) -> float | None:
    """The standard error, in points, of ``candidate``'s drop against ``reference`` on the split both were
    measured on: the standard deviation of the paired bootstrap differences (``Metrics.replicates``).
    None when either lacks replicates, they differ in number, or the metrics differ. On the digits pose
    fixture's 200 val images a pruned and distilled model's drop has an SE of 0.85-0.9 pt: the budget's
    own size."""
    a, b = reference.replicates, candidate.replicates
    if not a or len(a) != len(b) or reference.primary != candidate.primary or len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    return round(100 * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)), 3)


def drop_bound(drop: float, se: float | None, margin: float) -> float:
    """A drop (points) plus ``margin`` of its standard errors (``se``, points; None: unknown, no margin):
    the drop a cautious decision compares with its budget."""
    return drop + margin * (se or 0.0)
