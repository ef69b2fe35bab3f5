"""How much a split can tell two models apart: bootstrap replicates of a task's metric from the per-image
results of one Ultralytics validation.

``PerImage`` is hooked into a validator before it runs (``on_val_start``) and keeps what the validator
accumulates per image: for detect, segment, pose and OBB the matches of each image's predictions at IoU
0.50:0.95 (``tp``, the mask's ``tp_m``, the keypoints' ``tp_p``), confidences and classes, keyed by image
name; for classify each image's top-1 hit. ``replicates`` recomputes the metric on resamples of the
images (with replacement, ``metrics.BOOTSTRAP`` of them, seeded by ``metrics.BOOTSTRAP_SEED``), with
Ultralytics' own ``ap_per_class`` for mAP50-95. Images are sorted by name first, so two models validated
on the same split are resampled on the same images whatever order their batches ran in (paired).

Cost: about 1.5 s for 200 resamples of 200 digits images at 160 px (2 cores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yolocc.compiler.metrics import BOOTSTRAP, BOOTSTRAP_SEED

#: The per-image match array behind each task's budget metric (``ultralytics_eval.TASK_METRIC``).
MATCHES = {"detect": "tp", "obb": "tp", "segment": "tp_m", "pose": "tp_p"}


class PerImage:
    """Per-image results of one validation of ``task``; ``hook(validator)`` before it runs."""

    def __init__(self, task: str):
        self.task = task
        self.images: dict[str, dict[str, np.ndarray]] = {}
        self.hits: np.ndarray | None = None  # classify: top-1 hit per image, in loader order

    def hook(self, validator) -> None:
        """Wrap ``validator.metrics`` so each image's statistics are kept as the validator records them."""
        metrics = validator.metrics
        if self.task == "classify":
            process = metrics.process

            def keep_hits(targets, pred, *args, **kwargs):
                t = np.concatenate([np.asarray(x).reshape(-1) for x in targets])
                p = np.concatenate([np.asarray(x)[:, 0] for x in pred])
                self.hits = (t == p).astype(np.float64)
                return process(targets, pred, *args, **kwargs)

            metrics.process = keep_hits
            return
        key = MATCHES.get(self.task, "tp")
        update = metrics.update_stats

        def keep_image(stat: dict[str, Any], *args, **kwargs):
            self.images[str(stat.get("im_name", len(self.images)))] = {
                k: np.asarray(stat[k]) for k in (key, "conf", "pred_cls", "target_cls")}
            return update(stat, *args, **kwargs)

        metrics.update_stats = keep_image

    def record(self, name: str, stats: dict[str, np.ndarray]) -> None:
        """Keep one image's statistics as the validator produces them (``MATCHES[task]``, ``conf``,
        ``pred_cls``, ``target_cls``), for results computed outside a validation run (``ultralytics_agreement``)."""
        self.images[name] = {k: np.asarray(v) for k, v in stats.items()}

    def value(self) -> float | None:
        """The task's metric (a fraction) on all the recorded images; None when nothing was recorded."""
        if self.task == "classify":
            return None if self.hits is None or not len(self.hits) else float(self.hits.mean())
        return self._metric(self._sorted(), range(len(self.images))) if self.images else None

    def replicates(self, n: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> list[float]:
        """The task's metric (a fraction: mAP50-95 of its own output, or top-1) on ``n`` resamples of the
        images; empty when nothing was recorded."""
        if self.task == "classify":
            if self.hits is None or not len(self.hits):
                return []
            idx = np.random.default_rng(seed).integers(0, len(self.hits), size=(n, len(self.hits)))
            return [float(v) for v in self.hits[idx].mean(1)]
        if not self.images:
            return []
        idx = np.random.default_rng(seed).integers(0, len(self.images), size=(n, len(self.images)))
        per = self._sorted()
        return [self._metric(per, row) for row in idx]

    def _sorted(self) -> list[dict[str, np.ndarray]]:
        """The images' statistics in name order (the order resamples index)."""
        return [self.images[name] for name in sorted(self.images)]

    def _metric(self, per: list[dict[str, np.ndarray]], rows) -> float:
        """mAP50-95 (Ultralytics' ``ap_per_class``) of the images at positions ``rows`` of ``per`` (repeats
        allowed); 0.0 when they hold no target."""
        from ultralytics.utils.metrics import ap_per_class

        key = MATCHES.get(self.task, "tp")
        parts = [per[i] for i in rows]
        cat = {k: np.concatenate([p[k] for p in parts], 0) for k in (key, "conf", "pred_cls", "target_cls")}
        if not len(cat["target_cls"]):
            return 0.0
        ap = ap_per_class(cat[key], cat["conf"], cat["pred_cls"], cat["target_cls"])[5]
        return float(ap.mean()) if len(ap) else 0.0
