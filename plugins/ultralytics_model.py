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


#: Where the classes of a portable checkpoint may come from (``YOLO(path)`` without yolocc installed).
PORTABLE_PACKAGES = ("torch.", "torchvision.", "ultralytics.")

#: Raised by Ultralytics' ``parse_model`` (as a ``KeyError``) when its trainer tries to rebuild a model
#: that its YAML cannot describe: the one line a user reads instead of a silently unpruned model.
REBUILD_REFUSED = ("yolocc: this pruned model's widths cannot be rebuilt from its model YAML, so Ultralytics' "
                   "train() would silently undo the pruning; fine-tune it with 'yolocc MODEL.pt -p finetune "
                   "--data DATA -o OUT.pt', or in Python with a trainer whose get_model returns the loaded "
                   "model (train(..., trainer=KeepPruned): 'Fine-tuning a yolocc checkpoint' in yolocc's README)")


def checkpoint_dict(ir: ModelIR, module=None) -> dict[str, Any]:
    """An Ultralytics checkpoint of ``module`` (default: the IR's) that ``YOLO(path)`` loads, predicts,
    validates and exports with Ultralytics alone: yolocc's rewrites are undone (``decanonicalize``), so
    only torch, torchvision and Ultralytics classes are pickled. Its ``yaml`` is the model's own when
    Ultralytics rebuilds exactly this network from it (unpruned); otherwise it makes Ultralytics' trainer
    stop with ``REBUILD_REFUSED`` (``model_yaml``). ``yolocc.rewrites_undone`` counts what was undone.

    Raises ``ExportError`` when a module of another package (a plugin's rewrite) is left."""
    import copy

    import ultralytics

    from yolocc.compiler.errors import ExportError

    from .ultralytics_canonical import decanonicalize

    module = copy.deepcopy(ir.module if module is None else module)
    set_export_mode(module, False)
    try:
        undone = decanonicalize(module)
    except ValueError as e:
        raise ExportError(f"cannot write an Ultralytics checkpoint: {e}") from e
    foreign = next(((n, type(m)) for n, m in module.named_modules()
                    if not type(m).__module__.startswith(PORTABLE_PACKAGES)), None)
    if foreign is not None:
        name, cls = foreign
        raise ExportError(f"cannot write an Ultralytics checkpoint: '{name or 'model'}' is a "
                          f"{cls.__module__}.{cls.__qualname__}, which Ultralytics cannot load without its "
                          f"package; write .onnx instead")
    if getattr(module, "yaml", None) is not None:
        module.yaml = model_yaml(module)
    h, w = ir.input.shape[-2:]
    # Ultralytics reads the task from the training arguments (missing: "detect", so a segment model would
    # predict with the detect predictor); a model built from a YAML has none of its own.
    train_args = {"imgsz": h if h == w else [h, w], **ir.meta.get("ultralytics", {}).get("train_args", {}),
                  "task": ir.task}
    return {"model": module, "ema": None, "train_args": train_args,
            "version": ultralytics.__version__,
            "yolocc": {"source": ir.source, "passes": ir.provenance, "rewrites_undone": undone}}


def model_yaml(module) -> dict[str, Any]:
    """The model YAML to store with ``module``: its own when Ultralytics' ``parse_model`` rebuilds a
    network of exactly these parameter names and shapes (what its trainer does before training),
    otherwise a copy whose ``scale`` makes that rebuild raise ``KeyError(REBUILD_REFUSED)``."""
    import copy

    cfg = copy.deepcopy(module.yaml)
    if rebuilds_exactly(module, cfg):
        return cfg
    scales = cfg.get("scales") or {"n": [cfg.get("depth_multiple", 1.0), cfg.get("width_multiple", 1.0), 1024]}
    return {**cfg, "scales": scales, "scale": REBUILD_REFUSED}


def rebuilds_exactly(module, cfg: dict[str, Any]) -> bool:
    """Whether Ultralytics builds, from model YAML ``cfg``, a model with ``module``'s parameter and
    buffer names and shapes (its trainer rebuilds from the YAML, then copies matching tensors)."""
    import copy
    import logging

    import torch

    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.random.fork_rng():
            nc = int(getattr(head_of(module), "nc", 0) or cfg.get("nc") or 0) or None
            rebuilt = type(module)(copy.deepcopy(cfg), ch=int(cfg.get("channels", 3) or 3), nc=nc, verbose=False)
    except Exception:  # noqa: BLE001 - any failure to rebuild means "not exactly"
        return False
    finally:
        logger.setLevel(level)

    def shapes(m) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    return shapes(rebuilt) == shapes(module)
