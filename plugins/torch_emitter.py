"""Emitter for ``.pt``: the torch-stage model, saved so that it reloads in a fresh process.

Ultralytics models are saved as an Ultralytics checkpoint (``YOLO(path)`` loads it, and so does
yolocc); other models as a full-module pickle (``torch.load(path, weights_only=False)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolocc.compiler.errors import ExportError
from yolocc.compiler.fileio import write_with
from yolocc.compiler.interfaces import Emitter
from yolocc.compiler.ir import ModelIR


class TorchEmitter(Emitter):
    name = "torch"
    suffixes = (".pt", ".pth")

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        if ir.stage != "torch":
            last = next((p["pass"] for p in reversed(ir.provenance) if p["pass"] != "lower"), "lowering")
            raise ExportError(f"cannot write '{path}': the model is ONNX after '{last}'; write a .onnx file instead")
        if "ultralytics" in ir.meta:
            from .ultralytics_frontend import checkpoint_dict

            obj, kind = checkpoint_dict(ir), "ultralytics-checkpoint"
        else:
            obj, kind = ir.module, "torch-module"
        write_with(path, lambda tmp: torch.save(obj, tmp))
        return {"format": kind}
