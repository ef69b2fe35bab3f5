"""``calibrate``: activation ranges from onnxruntime's calibrators, cached by content hash.

The result is the IR analysis ``calibration``: ``{"method", "activations": {tensor: [min, max]},
"weights": {initializer: [per-channel max |w|]}, "n", "key"}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from yolocc.compiler.cache import cached_json
from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.interfaces import Frontend
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult

from .calib_data import DEFAULT_N, fingerprint, load_calibration


METHODS = ("minmax", "entropy", "percentile", "distribution")
#: Op types whose inputs/outputs are calibrated (everything a target may quantize).
CALIBRATED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Concat",
                  "MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "Relu", "Clip", "LeakyRelu",
                  "Sub", "Split", "Slice", "Reshape", "Transpose", "Softmax")
CHUNK = 16  # samples per calibrator call: bounds the memory of intermediate outputs


def cache_dir(ctx: PassContext) -> Path:
    """Where calibration results are cached: ``calibration/`` under the run's content cache."""
    return ctx.options.cache_root() / "calibration"


class Calibrate(Pass):
    """Collect activation ranges with onnxruntime's calibrators (cached by content hash)."""

    name = "calibrate"
    stage = "onnx"
    provides = ("calibration",)
    rejects = {"fp16": "int8 quantizes the float32 graph: choose one of int8 and fp16 (or put int8 first)",
               "quantized": "quantize once (drop the second int8/qdq)"}
    params = (
        Param("method", "choice", "minmax", "range estimator", choices=METHODS),
        Param("n", "int", None, f"calibration images (default: --calib-n, else {DEFAULT_N})", low=1, high=100000),
        Param("percentile", "float", 99.999, "percentile kept by method=percentile", low=90.0, high=100.0),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        source = ctx.option("calib")
        if not source:
            raise UsageError("int8/calibrate needs calibration data: pass --calib IMAGES_DIR "
                             "(or a data YAML, or a .npy/.npz of preprocessed inputs)")
        n = self.args["n"] or ctx.option("calib_n") or DEFAULT_N
        frontend = ctx.frontend or Frontend()
        data = load_calibration(str(source), int(n), ir.input.shape, lambda image: frontend.preprocess(ir, image),
                                ctx.progress_for("calibration images"))
        model_bytes = ir.onnx_model.SerializeToString()
        key = hashlib.sha256(b"|".join([
            hashlib.sha256(model_bytes).digest(), fingerprint(data).encode(),
            json.dumps(self.args, sort_keys=True).encode(), b"v1"])).hexdigest()
        cached, hit = cached_json(cache_dir(ctx) / f"{key}.json", lambda: {
            "method": self.args["method"], "n": int(len(data)),
            "activations": _collect(model_bytes, ir.input.name, data, self.args, ctx)}, "calibration")
        bad = [t for t, (lo, hi) in cached["activations"].items() if not (np.isfinite(lo) and np.isfinite(hi))]
        if bad:
            raise PassError(f"calibration produced NaN/Inf ranges for {len(bad)} tensors (first: '{bad[0]}'); "
                            f"check the calibration inputs")
        ir.analyses["calibration"] = {**cached, "key": key, "weights": _weight_ranges(ir.onnx_model)}
        return PassResult(False, {"method": cached["method"], "images": cached["n"],
                                  "tensors": len(cached["activations"]), "cache": "hit" if hit else "miss"})


def _collect(model_bytes: bytes, input_name: str, data: np.ndarray, args: dict, ctx: PassContext) -> dict:
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution}[args["method"]]
    extra = {"percentile": args["percentile"]} if args["method"] == "percentile" else {}

    class Reader(CalibrationDataReader):
        def __init__(self, rows):
            self.rows = iter(rows)

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {input_name: row[None]}

    progress = ctx.progress_for("calibrating")
    with tempfile.TemporaryDirectory(prefix="yolocc-calib-") as tmp:
        model_path = os.path.join(tmp, "model.onnx")
        Path(model_path).write_bytes(model_bytes)
        calibrator = create_calibrator(model_path, list(CALIBRATED_OPS), os.path.join(tmp, "augmented.onnx"),
                                       calibrate_method=method, extra_options=extra,
                                       providers=["CPUExecutionProvider"])
        # onnxruntime's histogram calibrators print to stdout, which belongs to --json output.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                for start in range(0, len(data), CHUNK):
                    calibrator.collect_data(Reader(data[start:start + CHUNK]))
                    if progress:
                        progress(min(start + CHUNK, len(data)), len(data))
                ranges = calibrator.compute_data()
            except ValueError as e:  # onnxruntime's histogram collectors reject near-constant tensors
                raise PassError(f"onnxruntime's {args['method']} calibrator failed ({str(e).splitlines()[0]}); "
                                f"some activation is nearly constant on these inputs: try method=minmax") from e
    return {name: [float(np.asarray(td.range_value[0]).min()), float(np.asarray(td.range_value[1]).max())]
            for name, td in ranges.items()}


def _weight_ranges(model) -> dict[str, list[float]]:
    """Per-output-channel max |w| of every Conv/Gemm weight initializer."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            axis = 1 if node.op_type == "ConvTranspose" else 0
            out[node.input[1]] = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(1).tolist()
    return out
