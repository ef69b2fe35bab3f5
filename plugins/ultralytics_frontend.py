"""Frontend for Ultralytics models: checkpoints (``.pt``), model YAMLs (``yolov8n.yaml``) and
in-memory ``YOLO``/``BaseModel`` objects. Works for any family built from Ultralytics' modules
(YOLOv8, YOLO11, v5u; detect, segment, pose, obb, classify)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from yolocc.compiler.analyses import FLOAT_SCOPES, OUTPUT_SPLITS
from yolocc.compiler.errors import UsageError
from yolocc.compiler.interfaces import Frontend, HeadParts
from yolocc.compiler.ir import InputSpec, ModelIR
from yolocc.compiler.metrics import Metrics
from yolocc.compiler.target import Capability, Runtime
from yolocc.compiler.training import TrainSettings

from .torchfile import count_outputs, is_torch_path, read_torch_file
from .ultralytics_model import attention_layers, checkpoint_dict, head_of, set_export_mode, task_has_stride  # noqa: F401

DEFAULT_IMGSZ = 640
YAML_SUFFIXES = (".yaml", ".yml")


def _quiet_ultralytics() -> None:
    """Keep Ultralytics offline and from installing packages at run time."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def _import_ultralytics():
    _quiet_ultralytics()
    try:
        import ultralytics  # noqa: F401
        from ultralytics.nn import tasks
    except ImportError as e:
        raise UsageError("this model needs Ultralytics: pip install 'yolocc[ultralytics]'") from e
    return tasks


@contextlib.contextmanager
def _ultralytics_logs_off(level: int = logging.WARNING):
    """Ultralytics prints model summaries even with verbose=False for some tasks (``level``: the
    lowest record still shown)."""
    logger = logging.getLogger("ultralytics")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


class UltralyticsFrontend(Frontend):
    name = "ultralytics"
    priority = 10

    def load(self, model: Any, options: dict[str, Any]) -> ModelIR | None:
        imgsz = options.get("imgsz")
        if isinstance(model, (str, os.PathLike)):
            suffix = Path(model).suffix.lower()
            if suffix in YAML_SUFFIXES:
                return self._from_yaml(str(model), imgsz)
            if is_torch_path(model):
                obj = read_torch_file(model, bool(options.get("trust_model")))
                return self._from_checkpoint(obj, str(model), imgsz)
            return None
        if type(model).__name__ == "YOLO" and hasattr(model, "model"):
            model = model.model
        if _is_ultralytics_model(model):
            return build_ir(model, "<module>", imgsz or DEFAULT_IMGSZ, {})
        return None

    def evaluate(self, ir: ModelIR, onnx_bytes: bytes, data: str, runtime: Runtime, split: str = "val") -> Metrics:
        from .ultralytics_eval import evaluate_onnx

        return evaluate_onnx(onnx_bytes, data, ir.input.imgsz, ir.task, runtime, split=split, ir=ir)

    def agreement(self, ir: ModelIR, reference, outputs) -> Metrics | None:
        from .ultralytics_agreement import agreement

        return agreement(ir, reference, outputs)

    def preprocess(self, ir: ModelIR, image):
        """Ultralytics' letterbox to the input's (h, w) (pad 114, RGB, /255), or its classify transforms for
        classifiers. ``image``: HWC uint8 with the input's channels, BGR (3) or grayscale (1, or 2-D), as
        Ultralytics' loaders read it for the model's ``channels``; returns (C, H, W) float32."""
        import numpy as np

        h, w = ir.input.hw
        if image.ndim == 2:
            image = image[..., None]
        gray = image.shape[-1] == 1
        if ir.task == "classify":
            import cv2
            from PIL import Image
            from ultralytics.data.augment import classify_transforms

            pil = Image.fromarray(image[..., 0]) if gray else Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            return classify_transforms(ir.input.imgsz)(pil).numpy().astype(np.float32)
        from ultralytics.data.augment import LetterBox

        boxed = LetterBox((h, w), auto=False, stride=32)(image=image)
        boxed = boxed.reshape(h, w, -1) if gray else boxed[..., ::-1]  # cv2 drops a single channel; BGR -> RGB
        return np.ascontiguousarray(boxed.transpose(2, 0, 1)).astype(np.float32) / 255.0

    def canonicalize(self, ir: ModelIR, capabilities: frozenset[str] = Capability.ALL) -> dict[str, int]:
        from .ultralytics_canonical import canonicalize

        return canonicalize(ir.module, capabilities)

    def layers(self, ir: ModelIR):
        return list(ir.module.model)

    def head(self, ir: ModelIR) -> HeadParts:
        """Detect-type heads: box branch ``cv2`` then class branch ``cv3``; their last convs and
        every other child (DFL, ...) stay protected."""
        index = len(ir.module.model) - 1
        head = ir.module.model[index]
        branches = {name: getattr(head, name) for name in ("cv2", "cv3") if getattr(head, name, None) is not None}
        keep = [branch[-1] for branch in branches.values()]
        keep += [child for name, child in head.named_children() if name not in branches]
        return HeadParts(index=index, module=head, branches=branches, keep=keep)

    def conv_bn_blocks(self, ir: ModelIR) -> list[tuple[str, str]]:
        """Ultralytics' ``Conv`` blocks (and subclasses that keep its ``act(bn(conv(x)))`` forward, such as
        DWConv): the pairs its own ``fuse()`` folds. Blocks with another forward (Conv2, RepConv) are left."""
        from ultralytics.nn.modules.conv import Conv

        return [(f"{name}.conv", f"{name}.bn") for name, m in ir.module.named_modules()
                if isinstance(m, Conv) and type(m).forward is Conv.forward
                and isinstance(getattr(m, "bn", None), nn.BatchNorm2d) and isinstance(getattr(m, "conv", None), nn.Conv2d)]

    def adopt_fused_conv(self, parent, conv_attr: str, bn_attr: str, fused) -> bool:
        """Ultralytics' Conv: its fused form has no ``bn`` and runs ``forward_fuse``. The module becomes
        a ``FusedConv`` (a class, so the saved checkpoint loads with the safe unpickler; Ultralytics'
        own ``fuse()`` assigns a bound method, which only a full pickle can restore)."""
        from .ultralytics_canonical import fused_class

        if not (hasattr(parent, "forward_fuse") and (conv_attr, bn_attr) == ("conv", "bn")):
            return False
        parent.conv = fused
        delattr(parent, "bn")
        cls = fused_class(type(parent))
        if cls is not None:
            parent.__class__ = cls
        else:
            parent.forward = parent.forward_fuse
        return True

    def check_train(self, ir: ModelIR, distill: bool) -> None:
        """The task has a trainer; with ``distill``, the head is one Ultralytics can distil (a Detect
        subclass, not RT-DETR's decoder). Reads the model only, so the planner calls it."""
        from .ultralytics_training import check_task

        check_task(ir.task, distill, getattr(ir.module, "model", [None])[-1])

    def train(self, ir: ModelIR, data: str, settings: TrainSettings, teacher=None):
        from .ultralytics_training import recover

        return recover(ir, data, settings, teacher)

    def checkpoint(self, ir: ModelIR, module=None):
        return checkpoint_dict(ir, module)

    def _from_yaml(self, cfg: str, imgsz: int | tuple[int, int] | None) -> ModelIR:
        tasks = _import_ultralytics()
        import torch

        try:
            with _ultralytics_logs_off(logging.ERROR):  # e.g. "no model scale passed" for rtdetr-l.yaml
                spec = tasks.yaml_model_load(cfg)
        except FileNotFoundError as e:
            raise UsageError(f"model file '{cfg}' does not exist and is not an Ultralytics model YAML") from e
        if is_rtdetr_yaml(spec):  # Ultralytics' task guess does not know its decoder head
            cls = tasks.RTDETRDetectionModel
        else:
            task = tasks.guess_model_task(spec)
            cls = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel,
                   "pose": tasks.PoseModel, "obb": tasks.OBBModel,
                   "classify": tasks.ClassificationModel}.get(task)
            if cls is None:
                raise UsageError(f"'{cfg}' is an Ultralytics model YAML of a kind yolocc does not know "
                                 f"(task '{task}'; known: detect, segment, pose, obb, classify, RT-DETR)")
        from yolocc.compiler.torchgraph import TORCH_GLOBAL_LOCK

        with TORCH_GLOBAL_LOCK, torch.random.fork_rng():
            torch.manual_seed(0)  # deterministic random weights for the same YAML
            try:
                with _ultralytics_logs_off(logging.ERROR):
                    module = cls(cfg, verbose=False)
            except Exception as e:
                raise UsageError(f"cannot build model from '{cfg}': {type(e).__name__}: {e}") from e
        return build_ir(module, cfg, imgsz or DEFAULT_IMGSZ, {})

    def _from_checkpoint(self, obj: Any, path: str, imgsz: int | tuple[int, int] | None) -> ModelIR | None:
        if isinstance(obj, dict) and ("model" in obj or "ema" in obj):
            module = obj.get("ema") or obj.get("model")
            if not _is_ultralytics_model(module):
                return None
            train_args = dict(obj.get("train_args") or {})
        elif _is_ultralytics_model(obj):
            module, train_args = obj, dict(getattr(obj, "args", {}) or {})
        else:
            return None
        ck_imgsz = train_args.get("imgsz")
        if isinstance(ck_imgsz, (list, tuple)):
            ck_imgsz = max(ck_imgsz)  # Ultralytics trains square: a list here is a square side twice
        return build_ir(module, path, imgsz or ck_imgsz or DEFAULT_IMGSZ, train_args)


def is_rtdetr_yaml(spec: dict) -> bool:
    """Whether an Ultralytics model YAML (as ``yaml_model_load`` reads it) ends in RT-DETR's decoder."""
    head = spec.get("head") or []
    return bool(head) and isinstance(head[-1], (list, tuple)) and len(head[-1]) > 2 and head[-1][2] == "RTDETRDecoder"


def _is_ultralytics_model(obj: Any) -> bool:
    return any(c.__module__.startswith("ultralytics.") and c.__name__ == "BaseModel" for c in type(obj).__mro__)


def build_ir(module, source: str, imgsz: int | tuple[int, int], train_args: dict) -> ModelIR:
    """Wrap an Ultralytics model: export mode, float, eval; head protected; ONNX metadata (Ultralytics'
    keys: ``imgsz`` as ``[h, w]``, ``channels`` ...). ``imgsz``: a side or ``(h, w)``, each a multiple of
    the model stride (else ``UsageError``)."""
    tasks = _import_ultralytics()
    import ultralytics

    stride = getattr(module, "stride", None)
    stride = int(max(stride)) if stride is not None and task_has_stride(module) else 32
    h, w = imgsz if isinstance(imgsz, tuple) else (imgsz, imgsz)
    if h % stride or w % stride:
        shown = imgsz if h == w else f"{h},{w}"
        raise UsageError(f"--imgsz must be a multiple of the model stride {stride}, got {shown}")
    module = module.float().eval()
    set_export_mode(module, True)
    task = tasks.guess_model_task(module)
    head = head_of(module)
    head_index = len(module.model) - 1
    channels = int(getattr(module, "yaml", {}).get("channels", 3) or 3)
    ir = ModelIR(source=source, task=task, input=InputSpec("images", (1, channels, h, w)),
                 output_names=[], module=module)
    n_out = count_outputs(module, ir.example_inputs())
    ir.output_names = [f"output{i}" for i in range(n_out)]
    ir.protected = {f"model.{head_index}"} | attention_layers(module)
    names = getattr(module, "names", None) or {i: f"class{i}" for i in range(int(getattr(head, "nc", 0) or 0))}
    meta = {"description": f"yolocc-compiled Ultralytics {task} model from {Path(source).name}",
            "author": "yolocc", "version": ultralytics.__version__, "task": task,
            "imgsz": [h, w], "names": dict(names), "channels": channels}
    if task != "classify":
        meta["stride"] = stride
    if task == "pose":
        meta["kpt_shape"] = list(head.kpt_shape)
    nc = int(getattr(head, "nc", 0) or 0)
    ir.meta = {"onnx_metadata": meta, "ultralytics": {"train_args": train_args},
               "names": dict(names)}
    if type(head).__name__ == "RTDETRDecoder":  # transformer decoder: INT8 collapses its queries' scores
        ir.meta[FLOAT_SCOPES] = [f"model.{head_index}"]
    if task in ("detect", "segment", "pose", "obb") and nc:
        ir.meta[OUTPUT_SPLITS] = {"output0": {"boxes": slice(0, 4), "scores": slice(4, 4 + nc),
                                              **task_output_parts(task, head, 4 + nc)}}
    return ir


def task_output_parts(task: str, head, start: int) -> dict[str, slice]:
    """The named parts of ``output0`` after the boxes and class scores (which end at ``start``), so that
    output fidelity (calibration, sensitivity, mixed precision) also weighs each task's own outputs:
    a segmentation head's mask coefficients (``nm``), a pose head's keypoints (``nk`` values) and an
    OBB head's angle (1). Segmentation's prototypes are ``output1``, compared whole."""
    width = {"segment": ("mask_coefficients", int(getattr(head, "nm", 0) or 0)),
             "pose": ("keypoints", int(getattr(head, "nk", 0) or 0)), "obb": ("angle", 1)}.get(task)
    if not width or width[1] <= 0:
        return {}
    return {width[0]: slice(start, start + width[1])}
