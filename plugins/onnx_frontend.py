"""Frontend for ``.onnx`` files: the IR starts at the onnx stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolocc.compiler.errors import UsageError
from yolocc.compiler.interfaces import Frontend
from yolocc.compiler.ir import InputSpec, ModelIR
from yolocc.compiler.onnxgraph import static_dims


class OnnxFrontend(Frontend):
    name = "onnx"
    priority = 20

    def load(self, model: Any, options: dict[str, Any]) -> ModelIR | None:
        import onnx

        if not isinstance(model, (str, Path)) or Path(model).suffix.lower() != ".onnx":
            return None
        p = Path(model)
        if not p.is_file():
            raise UsageError(f"model file '{p}' does not exist")
        try:
            proto = onnx.load(str(p))
            onnx.checker.check_model(proto)
        except Exception as e:
            raise UsageError(f"cannot read model file '{p}': not a valid ONNX model "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from e
        inits = {t.name for t in proto.graph.initializer}
        inp = next(i for i in proto.graph.input if i.name not in inits)
        meta = {m.key: m.value for m in proto.metadata_props}
        shape = tuple(static_dims(inp))
        dims = inp.type.tensor_type.shape.dim
        if len(shape) == 4 and not all(d.HasField("dim_value") for d in dims[2:]):
            shape = shape[:2] + _size(options.get("imgsz"), meta.get("imgsz"), p)
        task = meta.get("task", "generic")
        ir = ModelIR(source=str(p), task=task, input=InputSpec(inp.name, shape),
                     output_names=[o.name for o in proto.graph.output], onnx_model=proto)
        ir.meta["onnx_metadata"] = meta
        ir.meta["states"] = input_states(proto)
        return ir


def _size(imgsz, meta_imgsz: str | None, path: Path) -> tuple[int, int]:
    """(h, w) to trace a model with symbolic height/width at: ``--imgsz``, else the ``imgsz`` its
    Ultralytics metadata records (``[h, w]``); neither is a ``UsageError``."""
    import ast

    if imgsz is not None:
        return tuple(imgsz) if isinstance(imgsz, tuple) else (imgsz, imgsz)
    try:
        h, w = ast.literal_eval(meta_imgsz or "")
        return int(h), int(w)
    except (ValueError, SyntaxError, TypeError):
        raise UsageError(f"'{path}' has a symbolic height/width: give the size to compile at with --imgsz") from None


def input_states(proto) -> dict[str, str]:
    """What the planner must know about an ONNX input: already quantized, or float16."""
    import onnx

    states = {}
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node):
        states["quantized"] = "the input model"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        states["fp16"] = "the input model"
    return states
