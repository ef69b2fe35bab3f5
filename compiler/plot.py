"""Accuracy against latency, one point per stage, as a PNG next to the report."""

from __future__ import annotations

from pathlib import Path

from .fileio import write_with


def write_accuracy_latency_png(report, path: str | Path) -> Path | None:
    """Write the plot if the stages carry both latency and accuracy; return its path."""
    points = [(s.name, s.latency_ms, next(iter(s.metrics.values()))) for s in report.stages
              if s.latency_ms is not None and s.metrics and (s.origin == "input" or s.modified)]
    if not points:
        return None
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
    ax.set_xlabel("latency (ms, onnxruntime CPU, median)")
    ax.set_ylabel(metric)
    ax.set_title(f"{Path(report.model).name}: {metric} vs latency per stage", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return Path(path)
