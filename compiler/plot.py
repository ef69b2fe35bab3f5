"""Accuracy against latency, one point per stage, as a PNG next to the report."""

from __future__ import annotations

from pathlib import Path

from .metrics import primary_metric

def plot_points(report) -> list[tuple[str, float, float]]:
    """(decision, latency, accuracy) of the input and every decision that carries both (see
    ``report_render.decisions``: automatic steps are folded into the pass that needed them)."""
    from .report_render import decisions

    metric = primary_metric(report)
    points = []
    for d in decisions(report.stages):
        s = d.result
        if s.latency_ms is not None and s.metrics and (s.origin == "input" or any(x.modified for x in d.stages)):
            points.append((d.name, s.latency_ms, s.metrics[metric]))
    return points


def coincident_groups(points: list[tuple[str, float, float]], tol: float = 0.01) -> list[list[int]]:
    """Indices of points that would be drawn on top of each other: within ``tol`` of the plotted
    range on both axes (a point alone is a group of one)."""
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    dx, dy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    groups: list[list[int]] = []
    for i, (_, x, y) in enumerate(points):
        for g in groups:
            _, gx, gy = points[g[0]]
            if abs(x - gx) <= tol * dx and abs(y - gy) <= tol * dy:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


#: Label offsets (points) tried in order around a marker until the label overlaps nothing.
_OFFSETS = [(6, 6), (6, -12), (-14, 6), (-14, -12), (0, 12), (0, -18), (12, 0), (-20, 0)]


def draw_accuracy_latency(report):
    """The figure and its point labels: each point numbered (coinciding points share one marker,
    labelled "2=3"), the names in a legend under the axes, every label placed where it overlaps no
    other label and no marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = plot_points(report)
    groups = coincident_groups(points)
    metric = primary_metric(report)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    chosen = (report.budget or {}).get("final", {}) or {}
    if not report.budget:  # a pipeline's decisions follow each other; budget candidates are alternatives
        ax.plot(xs, ys, "-", color="#cccccc", zorder=1)
    ax.scatter([points[g[0]][1] for g in groups], [points[g[0]][2] for g in groups], zorder=2,
               s=[28 if len(g) == 1 else 70 for g in groups],
               facecolors=["C0" if len(g) == 1 else "none" for g in groups], edgecolors="C0")
    lat = report.latency
    ax.set_xlabel(f"latency p50, ms, batch 1 ({lat.get('runtime', 'runtime')} {lat.get('version', '')}, "
                  f"{lat.get('isa', '?')})".replace(" ,", ","), fontsize=8)
    split = (report.accuracy or {}).get("split", "val")
    ax.set_ylabel(f"{metric} ({split} split)", fontsize=8)
    ax.set_title(f"{Path(report.model).name}: {metric} against latency", fontsize=9)
    ax.grid(alpha=0.3)
    legend = [f"{'='.join(str(i + 1) for i in g)}: {' = '.join(points[i][0] for i in g)}"
              + (" (same latency and accuracy)" if len(g) > 1 else "")
              + (" (chosen)" if any(points[i][0] == chosen.get("name") for i in g) else "") for g in groups]
    fig.text(0.02, 0.02, "\n".join(legend), fontsize=7, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.03 + 0.028 * len(legend), 1, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = [ax.transData.transform((points[g[0]][1], points[g[0]][2])) for g in groups]
    boxes = [(x - 5, y - 5, x + 5, y + 5) for x, y in taken]  # the markers
    labels = []
    for g, (px, py) in zip(groups, taken):
        text = "=".join(str(i + 1) for i in g)
        for k, off in enumerate(_OFFSETS * 3):
            scale = 1 + k // len(_OFFSETS)  # all eight taken: try further out
            t = ax.annotate(text, (points[g[0]][1], points[g[0]][2]), textcoords="offset points",
                            xytext=(off[0] * scale, off[1] * scale), fontsize=8)
            bb = t.get_window_extent(renderer)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            if not any(_overlap(box, other) for other in boxes):
                break
            t.remove()
        boxes.append(box)
        labels.append(t)
    return fig, labels


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def accuracy_latency_png(report, path: str | Path) -> None:
    """Write ``draw_accuracy_latency(report)`` (``plot_points`` must not be empty) to ``path``."""
    import matplotlib.pyplot as plt

    fig, _ = draw_accuracy_latency(report)
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
