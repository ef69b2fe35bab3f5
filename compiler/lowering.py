"""Lowering: torch module to ONNX (done once, when the first onnx-stage pass runs or at emit).

``dynamic_batch`` exports what Ultralytics calls a dynamic model: batch, and for image inputs height and
width, are symbolic (``batch``, ``height``, ``width``), as its own ``export(dynamic=True)`` writes them.
Its clients treat any ONNX with a symbolic batch as dynamic in all three (they letterbox to the
smallest stride multiple around each frame), so a batch-only symbolic axis would crash them. The
compile itself traces, calibrates and measures at the fixed input shape.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx
import torch

from . import onnxgraph
from .errors import ExportError
from .ir import ModelIR
from .options import DEFAULT_OPSET  # noqa: F401  (defined once in options; re-exported for emitters)
from .torchgraph import TORCH_GLOBAL_LOCK

log = logging.getLogger(__name__)


def export_onnx(module: torch.nn.Module, ir: ModelIR, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False) -> onnx.ModelProto:
    """Export ``module`` with ``ir``'s input spec and output names; deterministic bytes."""
    if opset < 17:
        raise ExportError(f"opset {opset} is too old: yolocc emits opset 17 or newer")
    x = ir.example_inputs()
    dynamic_axes = dynamic_shape_axes(ir) if dynamic_batch else None
    buf = io.BytesIO()
    was_training = module.training
    module.eval()
    try:
        with TORCH_GLOBAL_LOCK, warnings.catch_warnings(), torch.no_grad(), _shape_dependent(module, dynamic_batch):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, opset_version=opset, dynamo=False,
                              input_names=[ir.input.name], output_names=list(ir.output_names),
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
    except Exception as e:  # torch raises many types here; all mean "cannot export"
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    finally:
        module.train(was_training)
    model = onnxgraph.portable(onnx.load_from_string(buf.getvalue()))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported ONNX fails onnx.checker: {str(e).splitlines()[0]}") from e
    add_metadata(model, ir, dynamic_batch)
    return model


def dynamic_shape_axes(ir: ModelIR) -> dict[str, dict[int, str]]:
    """``torch.onnx.export``'s ``dynamic_axes`` for a dynamic model: batch (and height, width of an NCHW
    input) symbolic on the input, batch on every output (their other sizes follow from the graph)."""
    axes = {0: "batch", **({2: "height", 3: "width"} if len(ir.input.shape) == 4 else {})}
    return {ir.input.name: axes, **{n: {0: "batch"} for n in ir.output_names}}


@contextlib.contextmanager
def _shape_dependent(module: torch.nn.Module, on: bool):
    """While exporting dynamic shapes, set ``dynamic = True`` on submodules that declare a boolean ``dynamic``
    (the convention of Ultralytics' heads, whose exporter does the same): they then compute shape-derived
    tensors (anchors, strides) in the graph instead of baking in the traced size's constants."""
    flagged = [m for m in module.modules() if isinstance(getattr(m, "dynamic", None), bool)] if on else []
    old = [m.dynamic for m in flagged]
    for m in flagged:
        m.dynamic = True
    try:
        yield
    finally:
        for m, v in zip(flagged, old):
            m.dynamic = v


def add_metadata(model: onnx.ModelProto, ir: ModelIR, dynamic_batch: bool = False) -> None:
    """Carry frontend facts (e.g. Ultralytics' names/stride/imgsz) into ``metadata_props``."""
    meta = dict(ir.meta.get("onnx_metadata", {}))
    if meta:
        meta["batch"] = 1
        meta["dynamic"] = dynamic_batch
    meta["producer"] = "yolocc"
    del model.metadata_props[:]
    for key in sorted(meta):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(meta[key])


def read_metadata(model: onnx.ModelProto) -> dict:
    """``metadata_props`` back as typed values (``add_metadata`` stores ``str(value)``)."""
    import ast

    meta: dict = {}
    for prop in model.metadata_props:
        try:
            meta[prop.key] = ast.literal_eval(prop.value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            meta[prop.key] = prop.value
    return meta


def lower(ir: ModelIR, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> None:
    """Move ``ir`` from the torch stage to the onnx stage (in place)."""
    ir.require_stage("torch", "lower")
    log.info("lowering to ONNX (opset %d%s)", opset, ", dynamic batch" if dynamic_batch else "")
    ir.set_onnx(export_onnx(ir.module, ir, opset, dynamic_batch))
    ir.meta["opset"] = opset
    ir.meta["dynamic_batch"] = dynamic_batch
    ir.log_pass("lower", {"opset": opset, "dynamic_batch": dynamic_batch}, {})


def onnx_bytes(ir: ModelIR, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> bytes:
    """The ONNX serialization of ``ir`` at either stage (torch stage: exported on the fly)."""
    if ir.stage == "onnx":
        return ir.onnx_model.SerializeToString()
    return export_onnx(ir.module, ir, opset, dynamic_batch).SerializeToString()
