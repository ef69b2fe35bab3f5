"""Helpers on Ultralytics model objects shared by the Ultralytics frontend and its training plugin:
the head, export mode, attention layers, and the checkpoint layout ``YOLO(path)`` reloads."""

from __future__ import annotations

from typing import Any

from yolocc.compiler.ir import ModelIR


def head_of(module):
    """The last layer of an Ultralytics model: Detect/Segment/Pose/OBB/Classify."""
    return module.model[-1]


def set_export_mode(module, on: bool) -> None:
    """Ultralytics heads return a single tensor (plus protos for seg) in export mode."""
    for m in module.modules():
        # any subclass of an Ultralytics head counts too (canonicalize's DetectAnchorMajor)
        if hasattr(m, "export") and any(c.__module__.startswith("ultralytics.nn.modules") for c in type(m).__mro__):
            m.export = on
            if hasattr(m, "format"):
                m.format = "onnx" if on else None


def attention_layers(module) -> set[str]:
    """Top-level layers holding multi-head attention (YOLO11's C2PSA): their reshapes by head
    count cannot be channel-pruned, so they are protected (their input channels still can be)."""
    found = set()
    for i, layer in enumerate(module.model):
        if any(hasattr(m, "num_heads") and hasattr(m, "qkv") for m in layer.modules()):
            found.add(f"model.{i}")
    return found


def task_has_stride(module) -> bool:
    """Classification models carry a dummy stride; detectors carry their real one."""
    return type(head_of(module)).__name__ != "Classify"


def checkpoint_dict(ir: ModelIR, module=None) -> dict[str, Any]:
    """An Ultralytics-style checkpoint of ``module`` (default: the IR's) that ``YOLO(path)`` reloads."""
    import copy

    import ultralytics

    module = copy.deepcopy(ir.module if module is None else module)
    set_export_mode(module, False)
    return {"model": module, "ema": None, "train_args": ir.meta.get("ultralytics", {}).get("train_args", {}),
            "version": ultralytics.__version__, "yolocc": {"source": ir.source, "passes": ir.provenance}}
