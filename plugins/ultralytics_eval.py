"""Accuracy of an ONNX artifact with Ultralytics' own validator (mAP for detectors, top-1 for
classifiers), so every stage, torch or ONNX, FP32 or INT8, is measured the same way."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from yolocc.compiler.datasets import check_channels, check_split
from yolocc.compiler.errors import UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.metrics import Metrics
from yolocc.compiler.target import Runtime
from yolocc.plugins.ultralytics_bootstrap import PerImage

log = logging.getLogger(__name__)


def evaluate_onnx(model_bytes: bytes, data: str, imgsz: int | tuple[int, int], task: str, runtime: Runtime,
                  batch: int = 16, split: str = "val", ir: ModelIR | None = None) -> Metrics:
    """Validate ONNX ``model_bytes`` on the ``split`` of ``data`` (a data YAML, or a classify folder),
    run on ``runtime``: Ultralytics loads the runtime's native artifact by path (ONNX for onnxruntime,
    an IR folder for OpenVINO); a runtime without one is run in process through its sessions
    (``RuntimeModule``). ``imgsz``: a side or (h, w) (a model with a fixed input size is validated at its
    own, from its metadata); images are read with ``ir``'s input channels (``data_for_channels``).
    Returns ``task_metrics``: the task's own mAP50-95 (primary, ``TASK_METRIC``) and mAP50, or top1
    (primary) and top5, with bootstrap replicates of the primary over the split's images
    (``ultralytics_bootstrap``; ``metrics.drop_se`` of two such results is their paired noise)."""
    from ultralytics import YOLO

    check_split(data, split)
    with tempfile.TemporaryDirectory(prefix="yolocc-eval-") as tmp:
        if ir is not None:
            data = data_for_channels(data, ir.input.channels, task, Path(tmp))
        path = runtime.native_artifact(model_bytes, Path(tmp))
        logger = logging.getLogger("ultralytics")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                kwargs = dict(data=data, imgsz=list(imgsz) if isinstance(imgsz, tuple) else imgsz, batch=batch if _dynamic(model_bytes) else 1, device="cpu",
                              plots=False, verbose=False, workers=0, project=tmp, name="val", half=False,
                              split=split)
                per_image = PerImage(task)
                if path is not None:
                    model = YOLO(str(path), task=task)
                    model.add_callback("on_val_start", per_image.hook)
                    res = model.val(**kwargs)
                else:
                    res = _validate_in_process(RuntimeModule(runtime, model_bytes, ir, task), task, kwargs,
                                               per_image.hook)
        except UsageError:
            raise
        except Exception as e:
            raise UsageError(f"evaluation on '{data}' failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
        finally:
            logger.setLevel(level)
    return task_metrics(res, task).with_replicates(per_image.replicates())


#: Each task's budget metric: the value that budgets, recovery targets and the report's accuracy column
#: use. A segmentation user cares about masks and a pose user about keypoints, so for those the box
#: metrics are reported beside it but do not decide.
TASK_METRIC = {"detect": "mAP50-95", "segment": "mask mAP50-95", "pose": "pose mAP50-95",
               "obb": "OBB mAP50-95", "classify": "top1"}


def task_metrics(res, task: str) -> Metrics:
    """``Metrics`` of an Ultralytics validator result for ``task`` (``TASK_METRIC`` names the primary):
    top-1/top-5 for classify; mAP50-95/mAP50 of the task's own output (mask, keypoints, oriented box,
    box), then, for segment and pose, of its boxes."""
    if task == "classify":
        return Metrics("top1", {"top1": round(float(res.top1), 4), "top5": round(float(res.top5), 4)})
    values = {}
    own = {"segment": ("mask ", "seg"), "pose": ("pose ", "pose"), "obb": ("OBB ", "box")}.get(task)
    if own is not None:
        prefix, attr = own
        part = getattr(res, attr)
        values.update({f"{prefix}mAP50-95": round(float(part.map), 4), f"{prefix}mAP50": round(float(part.map50), 4)})
    if task != "obb":
        values.update({"mAP50-95": round(float(res.box.map), 4), "mAP50": round(float(res.box.map50), 4)})
    return Metrics(TASK_METRIC.get(task, "mAP50-95"), values)


class RuntimeModule(torch.nn.Module):
    """A module whose forward runs one session of ``runtime``: how a runtime without a native artifact
    is validated by Ultralytics (its PyTorch backend calls ``forward`` on a (B, C, H, W) float batch and
    gets the ONNX outputs, in order, as tensors)."""

    def __init__(self, runtime: Runtime, model_bytes: bytes, ir: ModelIR | None, task: str):
        super().__init__()
        self.session = runtime.load(model_bytes)
        meta = (ir.meta.get("onnx_metadata") or {}) if ir is not None else {}
        self.probe = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # Ultralytics reads a parameter's dtype
        self.names = dict(meta.get("names") or {})
        self.stride = torch.tensor([float(meta.get("stride", 32))])
        self.task = task
        self.eval()

    def __deepcopy__(self, memo):  # Ultralytics copies the model it validates; a session is not copyable
        return self

    def forward(self, x, *args, **kwargs):
        outs = self.session.run(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))
        tensors = [torch.from_numpy(v) for v in outs.values()]
        return tensors[0] if len(tensors) == 1 else tensors


def validator_class(task: str):
    """Ultralytics' validator class for ``task`` (detect for any other)."""
    from ultralytics.models import yolo

    return {"classify": yolo.classify.ClassificationValidator, "segment": yolo.segment.SegmentationValidator,
            "pose": yolo.pose.PoseValidator, "obb": yolo.obb.OBBValidator}.get(task, yolo.detect.DetectionValidator)


def _validate_in_process(module, task: str, kwargs: dict, on_val_start=None):
    """Ultralytics' validator for ``task`` on an in-memory module (its PyTorch backend); ``on_val_start``
    (validator) is hooked in before it runs."""
    validator_cls = validator_class(task)
    args = {k: v for k, v in kwargs.items() if k not in ("project", "name")}
    validator = validator_cls(args=dict(args, mode="val", task=task))
    if on_val_start is not None:
        validator.add_callback("on_val_start", on_val_start)
    validator(model=module)
    return validator.metrics


def data_for_channels(data: str, channels: int, task: str, folder: Path) -> str:
    """The data to validate a ``channels``-channel model on: ``data`` itself, or for a grayscale model whose
    data YAML has no ``channels`` key a copy in ``folder`` with ``channels: 1`` (its paths as Ultralytics'
    ``check_det_dataset`` resolves them), so Ultralytics reads its images as the model takes them. A YAML
    declaring other channels than the model's is a ``UsageError``."""
    import yaml

    if Path(data).suffix.lower() not in (".yaml", ".yml") or task == "classify":
        return data
    if check_channels(data, channels) is not None or channels == 3:
        return data
    from ultralytics.data.utils import check_det_dataset

    resolved = check_det_dataset(data)
    keep = {k: (str(v) if isinstance(v, Path) else v) for k, v in resolved.items()
            if k in ("path", "train", "val", "test", "names", "nc", "kpt_shape", "flip_idx")}
    out = folder / f"{Path(data).stem}-{channels}ch.yaml"
    out.write_text(yaml.safe_dump({**keep, "channels": channels}, sort_keys=False), encoding="utf-8")
    return str(out)


def _dynamic(model_bytes: bytes) -> bool:
    import onnx

    m = onnx.load_from_string(model_bytes)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    return not dim.HasField("dim_value")
