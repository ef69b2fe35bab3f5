"""``Metrics``: one stage's accuracy on labelled data, with the metric that decides (``primary``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Metrics:
    """Accuracy values of one evaluation, e.g. ``Metrics("mAP50-95", {"mAP50-95": 0.61, "mAP50": 0.82})``.

    ``primary`` names the value that budgets, recovery targets and plots use (a fraction in [0, 1];
    a "point" is 0.01 of it). ``values`` holds every value the frontend measured, ``primary`` included.
    """

    primary: str
    values: Mapping[str, float] = field(default_factory=dict)

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
