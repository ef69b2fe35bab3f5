"""Emitter for ``.pt``: the torch-stage model, saved so that it reloads in a fresh process.

The model's frontend says what to save (``Frontend.checkpoint``): Ultralytics models become an
Ultralytics checkpoint (``YOLO(path)`` loads it, and so does yolocc); plain torch models a
full-module pickle (``torch.load(path, weights_only=False)``).
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
        frontend = options.get("frontend")
        obj = frontend.checkpoint(ir) if frontend is not None else ir.module
        kind = "torch-module" if obj is ir.module else f"{frontend.name}-checkpoint"
        write_with(path, lambda tmp: torch.save(obj, tmp))
        return {"format": kind}
