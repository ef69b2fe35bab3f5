"""Emitter for ``.onnx``: lowers if needed, checks with onnx.checker and an onnxruntime session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolocc.compiler import lowering
from yolocc.compiler.errors import ExportError
from yolocc.compiler.fileio import write_atomic
from yolocc.compiler.interfaces import Emitter
from yolocc.compiler.ir import ModelIR


class OnnxEmitter(Emitter):
    name = "onnx"
    suffixes = (".onnx",)

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        import onnx
        import onnxruntime as ort

        if ir.stage == "torch":
            lowering.lower(ir, options.get("opset", lowering.DEFAULT_OPSET), options.get("dynamic_batch", False))
        model = ir.onnx_model
        try:
            onnx.checker.check_model(model)
            data = model.SerializeToString()
            sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ExportError(f"the compiled ONNX model does not load: {type(e).__name__}: {str(e).splitlines()[0]}") from e
        write_atomic(path, data)
        return {"opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
                "inputs": {i.name: _shape(i.shape) for i in sess.get_inputs()},
                "outputs": {o.name: _shape(o.shape) for o in sess.get_outputs()}}


def _shape(shape) -> list:
    return [d if isinstance(d, int) else str(d) for d in shape]
