"""Emitter for OpenVINO IR folders (``-o NAME_openvino_model``): ``model.xml``, ``model.bin`` and the
``metadata.yaml`` sidecar that Ultralytics reads, so ``YOLO("NAME_openvino_model")`` loads the result.

Why a folder of its own: OpenVINO's CPU plugin runs the Q/DQ ONNX as FakeQuantize + int8 kernels,
but deploying it means shipping IR (no ONNX frontend at load time, and Ultralytics only recognises
``*_openvino_model/``). The IR is converted from the compiled ONNX (the same graph the report
measured), keeping FP32 weights FP32 (``compress_to_fp16=False``), so the folder runs exactly what
yolocc timed. The OpenVINO target's runtime reuses ``write_ir_folder`` to evaluate accuracy in IR form.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from yolocc.compiler import lowering
from yolocc.compiler.errors import ExportError, UsageError
from yolocc.compiler.interfaces import Emitter
from yolocc.compiler.ir import ModelIR

#: One line, the command that fixes a missing OpenVINO.
INSTALL_HINT = "pip install 'yolocc[openvino]' (or: pip install 'openvino>=2024')"
SUFFIX = "_openvino_model"
XML_NAME = "model.xml"


def openvino_missing() -> str | None:
    """None when OpenVINO can be imported; otherwise why not, with the install command."""
    if importlib.util.find_spec("openvino") is None:
        return f"OpenVINO is not installed; {INSTALL_HINT}"
    return None


def require_openvino(what: str):
    """The ``openvino`` module, or a ``UsageError`` (one line, exit 2) naming ``what`` needs it."""
    missing = openvino_missing()
    if missing is None:
        try:
            import openvino

            return openvino
        except Exception as e:  # installed but broken (missing shared library ...)
            missing = f"OpenVINO fails to import ({type(e).__name__}: {str(e).splitlines()[0]}); {INSTALL_HINT}"
    raise UsageError(f"{what} needs OpenVINO: {missing}")


def ultralytics_metadata(onnx_model) -> dict[str, Any]:
    """The ONNX ``metadata_props`` as typed values (they are stored as ``str(value)``): the dict
    Ultralytics' exporter writes to ``metadata.yaml`` (names, imgsz, stride, task, batch ...)."""
    meta = lowering.read_metadata(onnx_model)
    if "names" in meta:  # an Ultralytics model: what its OpenVINO loader reads beside names/imgsz
        meta.setdefault("batch", 1)
        dynamic = bool(meta.pop("dynamic", False))
        meta.setdefault("args", {"batch": int(meta["batch"]), "dynamic": dynamic, "nms": False})
    return meta


def onnx_to_ov(ov, onnx_bytes: bytes):
    """An ``ov.Model`` read from ONNX bytes (Q/DQ pairs become FakeQuantize, int8 weights stay int8)."""
    try:
        return ov.Core().read_model(onnx_bytes)
    except Exception as e:
        raise ExportError(f"OpenVINO cannot read the compiled ONNX: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e


def write_ir_folder(onnx_bytes: bytes, folder: Path) -> dict[str, Any]:
    """Write ``folder`` (created here) with the IR of ``onnx_bytes`` and its ``metadata.yaml``."""
    import onnx
    import yaml

    ov = require_openvino(f"writing '{folder.name}'")
    onnx_model = onnx.load_from_string(onnx_bytes)
    model = onnx_to_ov(ov, onnx_bytes)
    meta = ultralytics_metadata(onnx_model)
    _stable_names(model)
    _set_model_info(model, meta)
    folder.mkdir(parents=True)
    xml = folder / XML_NAME
    try:
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except Exception as e:
        raise ExportError(f"OpenVINO could not save the IR: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    if meta:
        (folder / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    fq = sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")
    return {"format": "openvino-ir", "openvino": ov.__version__, "xml": XML_NAME, "fake_quantize": fq,
            "inputs": {p.get_any_name(): _shape(p.get_partial_shape()) for p in model.inputs},
            "outputs": {p.get_any_name(): _shape(p.get_partial_shape()) for p in model.outputs}}


def _stable_names(model) -> None:
    """Rename the nodes OpenVINO named itself (``Type_N`` from a process-wide counter, so the same ONNX
    would give different XML on every conversion) by their position: same input, same bytes."""
    ops = model.get_ordered_ops()
    taken = {op.get_friendly_name() for op in ops if op.get_friendly_name() != op.get_name()}
    for i, op in enumerate(ops):
        if op.get_friendly_name() == op.get_name():  # no name of its own: the counter's
            name = f"{op.get_type_name()}_{i}"
            while name in taken:
                name += "_"
            taken.add(name)
            op.set_friendly_name(name)


def _set_model_info(model, meta: dict[str, Any]) -> None:
    """The ``model_info`` runtime facts OpenVINO's model tools read for a YOLO detector (labels,
    letterbox preprocessing); only for Ultralytics models (those with class names)."""
    names = meta.get("names")
    if not isinstance(names, dict):
        return
    model.set_rt_info("YOLO", ["model_info", "model_type"])
    model.set_rt_info([str(v).replace(" ", "_") for _, v in sorted(names.items())], ["model_info", "labels"])
    model.set_rt_info(True, ["model_info", "reverse_input_channels"])
    model.set_rt_info(114, ["model_info", "pad_value"])
    model.set_rt_info([255.0], ["model_info", "scale_values"])
    if meta.get("task") != "classify":
        model.set_rt_info("fit_to_window_letterbox", ["model_info", "resize_type"])


def _shape(shape) -> list:
    return [d.get_length() if d.is_static else "?" for d in shape]


class OpenVinoEmitter(Emitter):
    name = "openvino"
    suffixes = (SUFFIX,)
    writes_folder = True

    def check(self, options: dict[str, Any]) -> None:
        require_openvino(f"-o ...{SUFFIX}")

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        import onnx

        require_openvino(f"-o ...{SUFFIX}")
        if ir.stage == "torch":
            lowering.lower(ir, options.get("opset", lowering.DEFAULT_OPSET), options.get("dynamic_batch", False))
        try:
            onnx.checker.check_model(ir.onnx_model)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the compiled ONNX model is invalid: {str(e).splitlines()[0]}") from e
        return write_ir_folder(ir.onnx_model.SerializeToString(), Path(path))
