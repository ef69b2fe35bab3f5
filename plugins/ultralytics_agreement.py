"""Task agreement: how closely a changed model (INT8, pruned ...) reproduces the float model's own
predictions, measured with the task's metric and Ultralytics' own decoding and matching.

The float model's confident predictions (confidence >= ``GT_CONF``, after Ultralytics' NMS) are taken as
the ground truth of each image, and the changed model's predictions (at the validator's own confidence
floor, 0.001) are matched against them exactly as a validation matches labels: boxes by IoU for detect,
masks by mask IoU for segment, keypoints by OKS for pose, rotated boxes by probabilistic IoU for OBB
(``DetectionValidator``/``SegmentationValidator``/``PoseValidator``/``OBBValidator`` ``postprocess`` and
``_process_batch``), then mAP50-95 over the images with ``ap_per_class``. A classifier's agreement is the
share of images whose top-1 class is the float model's. The float model against itself scores 1.0.

This is the measure the calibration issue used on a real YOLOv8n-OBB model (minmax 0.821, percentile
0.902): unlike the outputs' cosine similarity it weighs what the task keeps, the boxes that survive NMS
and their classes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from yolocc.compiler.ir import ModelIR
from yolocc.compiler.metrics import Metrics

from .ultralytics_bootstrap import PerImage
from .ultralytics_eval import TASK_METRIC, validator_class

#: The float model's predictions at or above this confidence are the ground truth (Ultralytics' predict default).
GT_CONF = 0.25
#: The keys of a ground-truth "batch" each task's ``_process_batch`` reads, besides ``cls`` and ``bboxes``.
TASK_KEYS = {"segment": ("masks",), "pose": ("keypoints",)}


def agreement(ir: ModelIR, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Metrics | None:
    """Agreement of ``outputs`` with ``reference``: both the model's ONNX outputs ``{name: (N, ...)}`` on the
    same N images, in ``ir.output_names`` order (``reference``: the float model's). Returns ``Metrics`` whose
    primary value is ``"agreement <the task's metric>"`` (a fraction; 1.0: the same predictions), with
    bootstrap replicates over the N images (``metrics.BOOTSTRAP`` resamples, seeded, so two calls on the
    same images are paired). None when the float model predicts nothing confident on any image (e.g.
    random weights): there is nothing to agree with."""
    task = ir.task or "detect"
    per = PerImage(task)
    if task == "classify":
        ref, out = _first(reference), _first(outputs)
        per.hits = (ref.reshape(len(ref), -1).argmax(1) == out.reshape(len(out), -1).argmax(1)).astype(np.float64)
    else:
        with tempfile.TemporaryDirectory(prefix="yolocc-agree-") as tmp:
            validator = _validator(ir, task, Path(tmp))
            truth = validator.postprocess(_tensors(reference, task))
            preds = validator.postprocess(_tensors(outputs, task))
        for i, (gt, pred) in enumerate(zip(truth, preds)):
            keep = gt["conf"] >= GT_CONF
            batch = {k: gt[k][keep] for k in ("cls", "bboxes", *TASK_KEYS.get(task, ()))}
            if task == "segment":
                batch["masks"] = batch["masks"].float()
            stats = validator._process_batch(pred, batch)
            stats = {k: v for k, v in stats.items() if k in ("tp", "tp_m", "tp_p")}
            per.record(f"{i:06d}", {**stats, "conf": pred["conf"].numpy(), "pred_cls": pred["cls"].numpy(),
                                    "target_cls": batch["cls"].numpy()})
        if not sum(len(s["target_cls"]) for s in per.images.values()):
            return None
    name = f"agreement {TASK_METRIC.get(task, 'mAP50-95')}"
    return Metrics(name, {name: round(per.value(), 6)}).with_replicates(per.replicates())


def _first(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(next(iter(outputs.values())))


def _tensors(outputs: dict[str, np.ndarray], task: str):
    """The raw outputs as the validator's ``postprocess`` takes them: one tensor, or (predictions,
    prototypes) for a segmenter."""
    arrays = [torch.from_numpy(np.ascontiguousarray(v)) for v in outputs.values()]
    return arrays if task == "segment" else arrays[0]


def _validator(ir: ModelIR, task: str, save_dir: Path):
    """The task's Ultralytics validator, set up as its ``init_metrics`` would for this model (classes,
    end-to-end head, keypoint shape and OKS sigmas, mask decoding) without a dataset; writes nothing
    outside ``save_dir``."""
    from ultralytics.utils import ops
    from ultralytics.utils.metrics import OKS_SIGMA

    from .ultralytics_model import head_of

    cls = validator_class(task)
    # Every argument postprocess and matching read, given: Ultralytics' defaults can be changed in process.
    args = {"task": task, "mode": "val", "plots": False, "verbose": False, "conf": 0.001, "iou": 0.7,
            "max_det": 300, "single_cls": False, "agnostic_nms": False, "save_txt": False, "save_json": False,
            "overlap_mask": True}
    validator = cls(save_dir=save_dir, args=args)
    validator.names = dict(ir.meta.get("names") or {})
    validator.nc = len(validator.names)
    validator.end2end = bool(getattr(head_of(ir.module), "end2end", False)) if ir.module is not None else False
    if task == "segment":
        validator.process = ops.process_mask
    if task == "pose":
        kpt_shape = list((ir.meta.get("onnx_metadata") or {}).get("kpt_shape") or [17, 3])
        validator.kpt_shape = kpt_shape
        validator.sigma = OKS_SIGMA if kpt_shape == [17, 3] else np.ones(kpt_shape[0]) / kpt_shape[0]
    return validator
