"""Accuracy against latency, one point per stage, as a PNG next to the report."""

from __future__ import annotations

from pathlib import Path

def plot_points(report) -> list[tuple[str, float, float]]:
    """(stage, latency, accuracy) of the stages that carry both and changed the model."""
    return [(s.name, s.latency_ms, next(iter(s.metrics.values()))) for s in report.stages
            if s.latency_ms is not None and s.metrics and (s.origin == "input" or s.modified)]


def accuracy_latency_png(report, path: str | Path) -> None:
    """Write the plot of ``plot_points(report)`` (there must be some) to ``path``."""
    points = plot_points(report)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(iter(next(s.metrics for s in report.stages if s.metrics)))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    ax.plot(xs, ys, "-", color="#bbbbbb", zorder=1)
    ax.scatter(xs, ys, zorder=2)
    for i, (name, x, y) in enumerate(points):
        ax.annotate(f"{i}: {name}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"latency (ms, {report.latency.get('runtime', 'runtime')}, median)")
    ax.set_ylabel(metric)
    ax.set_title(f"{Path(report.model).name}: {metric} vs latency per stage", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def sensitivity_png(analysis: dict, path: str | Path, title: str = "") -> None:
    """Horizontal bars: each prunable group's proxy drop at every measured ratio, most sensitive on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ratios = analysis["ratios"]
    groups = sorted(analysis["groups"], key=lambda g: g["drop"][str(ratios[-1])])
    fig, ax = plt.subplots(figsize=(7, max(3, 0.18 * len(groups) + 1)), dpi=110)
    y = np.arange(len(groups))
    height = 0.8 / len(ratios)
    for i, r in enumerate(ratios):
        ax.barh(y + i * height, [g["drop"][str(r)] for g in groups], height, label=f"ratio {r}")
    ax.set_yticks(y + height * (len(ratios) - 1) / 2, [g["root"] for g in groups], fontsize=5)
    ax.set_xlabel("proxy drop: 1 - cosine of the outputs, on calibration images")
    ax.set_title(f"pruning sensitivity per group {Path(title).name}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
