"""Accuracy of an ONNX artifact with Ultralytics' own validator (mAP for detectors, top-1 for
classifiers), so every stage, torch or ONNX, FP32 or INT8, is measured the same way."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

from yolocc.compiler.errors import UsageError

log = logging.getLogger(__name__)


def evaluate_onnx(model_bytes: bytes, data: str, imgsz: int, task: str, batch: int = 16,
                  split: str = "val", runtime=None, ir=None) -> dict[str, float]:
    """Validate ONNX ``model_bytes`` on the ``split`` of ``data`` (a data YAML, or a classify folder).

    The model runs where ``runtime.write_for_eval`` puts it (a runtime that has one, such as
    OpenVINO's, writes its own format that Ultralytics loads); otherwise as ONNX in onnxruntime."""
    from ultralytics import YOLO

    if not Path(data).exists():
        raise UsageError(f"--data '{data}' does not exist")
    _check_split(data, split)
    with tempfile.TemporaryDirectory(prefix="yolocc-eval-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        Path(path).write_bytes(model_bytes)
        if runtime is not None and hasattr(runtime, "write_for_eval"):
            path = str(runtime.write_for_eval(model_bytes, Path(tmp), ir))
        logger = logging.getLogger("ultralytics")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model = YOLO(path, task=task)
                res = model.val(data=data, imgsz=imgsz, batch=batch if _dynamic(model_bytes) else 1,
                                device="cpu", plots=False, verbose=False, workers=0,
                                project=tmp, name="val", half=False, split=split)
        except UsageError:
            raise
        except Exception as e:
            raise UsageError(f"evaluation on '{data}' failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
        finally:
            logger.setLevel(level)
    if task == "classify":
        return {"top1": round(float(res.top1), 4), "top5": round(float(res.top5), 4)}
    box = res.box
    return {"mAP50-95": round(float(box.map), 4), "mAP50": round(float(box.map50), 4)}


def _check_split(data: str, split: str) -> None:
    """A clear error when ``data`` has no ``split`` (Ultralytics would fail or silently fall back)."""
    if Path(data).is_dir():
        if not (Path(data) / split).is_dir():
            raise UsageError(f"--data '{data}' has no '{split}' folder to evaluate on")
        return
    import yaml

    try:
        keys = yaml.safe_load(Path(data).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"--data '{data}' is not a readable data YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(keys, dict) or not keys.get(split):
        raise UsageError(f"--data '{data}' has no '{split}:' entry to evaluate on")


def _dynamic(model_bytes: bytes) -> bool:
    import onnx

    m = onnx.load_from_string(model_bytes)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    return not dim.HasField("dim_value")
