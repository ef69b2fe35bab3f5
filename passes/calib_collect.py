"""Activation ranges from onnxruntime's calibrators: one method on one image set (``collect``), or every
``calibrate:method=auto`` candidate on several image subsets from a single pass over the images
(``collect_subsets``).

A range is ``{tensor: [min, max]}`` (floats) for every float input and output of the ops in
``CALIBRATED_OPS`` (onnxruntime's ``select_tensors_to_calibrate``). The histogram methods (entropy,
percentile, distribution) are onnxruntime's own ``HistogramCollector`` and thresholds; minmax is the
extreme over the images and mean-minmax the mean of each image's own min and max (NNCF's default
estimator), as onnxruntime's ``MinMaxCalibrater`` computes them with ``moving_average``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from yolocc.compiler.errors import PassError

from . import calib_select

#: Op types whose inputs/outputs are calibrated (everything a target may quantize).
CALIBRATED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Concat",
                  "MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "Relu", "Clip", "LeakyRelu",
                  "Sub", "Split", "Slice", "Reshape", "Transpose", "Softmax")
CHUNK = 16  # samples per calibrator call: bounds the memory of intermediate outputs
#: The methods computed from each image's own min and max, without a histogram.
EXTREMES = ("minmax", "mean-minmax")

Ranges = dict[str, list[float]]  # tensor -> [min, max]


def _calibrator(model_path: str, folder: str, method: str, extra: dict | None = None):
    """onnxruntime's calibrator for ``method`` on the model at ``model_path``, its augmented graph and
    inference session built (``create_calibrator``)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    kind = {"minmax": CalibrationMethod.MinMax, "mean-minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "distribution": CalibrationMethod.Distribution}[method]
    return create_calibrator(model_path, list(CALIBRATED_OPS), os.path.join(folder, f"augmented-{method}.onnx"),
                             calibrate_method=kind, extra_options=extra or {}, providers=["CPUExecutionProvider"])


def _as_ranges(tensors_data) -> Ranges:
    """onnxruntime's ``TensorsData`` as ``{tensor: [min, max]}`` (a per-channel range is widened to one)."""
    return {name: [float(np.asarray(td.range_value[0]).min()), float(np.asarray(td.range_value[1]).max())]
            for name, td in tensors_data.items()}


def _failed(method: str, e: ValueError) -> str:
    """Why onnxruntime's ``method`` calibrator rejected the data, in one line."""
    return f"onnxruntime's {method} calibrator failed ({str(e).splitlines()[0]})"


def collect(model_bytes: bytes, input_name: str, data: np.ndarray, method: str,
            percentiles: Sequence[float | None] = (None,), progress=None) -> list[Ranges]:
    """Activation ranges ``{tensor: [min, max]}`` of ``data`` (N, C, H, W) from onnxruntime's calibrator
    for ``method``, one dict per entry of ``percentiles`` (``method=percentile``: every percentile is
    read off one collected histogram; other methods: one entry). Raises ``PassError`` when a histogram
    calibrator rejects a nearly constant activation."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    extra = {"percentile": percentiles[0]} if method == "percentile" else {}
    if method == "mean-minmax":  # onnxruntime's moving average, weighted per chunk below into the plain mean
        extra = {"moving_average": True}

    class Reader(CalibrationDataReader):
        def __init__(self, rows):
            self.rows = iter(rows)

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {input_name: row[None]}

    results = []
    with tempfile.TemporaryDirectory(prefix="yolocc-calib-") as tmp:
        model_path = os.path.join(tmp, "model.onnx")
        Path(model_path).write_bytes(model_bytes)
        calibrator = _calibrator(model_path, tmp, method, extra)
        # onnxruntime's histogram calibrators print to stdout, which belongs to --json output.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                for start in range(0, len(data), CHUNK):
                    chunk = data[start:start + CHUNK]
                    if method == "mean-minmax":  # this chunk's share of the images seen so far
                        calibrator.averaging_constant = len(chunk) / (start + len(chunk))
                    calibrator.collect_data(Reader(chunk))
                    if progress:
                        progress(min(start + CHUNK, len(data)), len(data))
                for i, p in enumerate(percentiles if method == "percentile" else (None,)):
                    if i:  # the same histogram, read at another percentile
                        calibrator.collector.percentile = p
                    results.append(_as_ranges(calibrator.compute_data()))
            except ValueError as e:  # onnxruntime's histogram collectors reject near-constant tensors
                raise PassError(f"{_failed(method, e)}; some activation is nearly constant on these inputs: "
                                f"try method=minmax") from e
    return results


@dataclass(frozen=True)
class Subset:
    """Some of ``collect_subsets``' images (``indices`` into them, increasing) and the candidate labels
    (``calib_select.CANDIDATES`` entries) wanted on them."""

    indices: np.ndarray
    labels: tuple[str, ...]


def collect_subsets(model_bytes: bytes, input_name: str, images: Sequence[np.ndarray], subsets: Sequence[Subset],
                    progress=None) -> list[dict]:
    """Every subset's candidate ranges from a single pass over ``images`` (a sequence of (C, H, W)
    float32 arrays): each image runs once through onnxruntime's augmented graph (every calibrated
    tensor an output), and its tensors feed each subset that holds it, in chunks of ``CHUNK`` of the
    subset's own images as ``collect`` cuts them: onnxruntime's ``HistogramCollector`` per subset and
    histogram method, configured as that method's calibrator configures its own, and each image's min
    and max, merged by onnxruntime's ``MinMaxCalibrater`` (``EXTREMES``). So ``collect`` on a subset's
    images gives the same ranges.

    Cross-fitting's folds share one pass: ``method=auto`` ran every image through four calibrators for
    each fold before. Returns, per subset, ``{"n", "ranges": {label: {tensor: [min, max]}},
    "failed": {label: why}}``: a histogram method that rejects the subset's data (a nearly constant
    tensor) leaves its labels out of that subset's ranges."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    groups = [calib_select.by_method(s.labels) for s in subsets]
    histogram_methods = sorted({m for g in groups for m in g if m not in EXTREMES})
    wants_extremes = any(m in EXTREMES for g in groups for m in g)
    member = np.zeros((len(subsets), len(images)), bool)
    for k, s in enumerate(subsets):
        if not len(s.indices):
            raise PassError("calibration: an image subset to calibrate on is empty")
        member[k, s.indices] = True

    with tempfile.TemporaryDirectory(prefix="yolocc-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        model_path = os.path.join(tmp, "model.onnx")
        Path(model_path).write_bytes(model_bytes)
        calibrators = {m: _calibrator(model_path, tmp, m) for m in histogram_methods}
        # Any histogram calibrator's session outputs every calibrated tensor (the percentile one otherwise).
        runner = next(iter(calibrators.values()), None) or _calibrator(model_path, tmp, "percentile")
        session, tensors = runner.infer_session, sorted(runner.tensors_to_calibrate)
        names = [o.name for o in session.get_outputs()]

        def collector(method: str):
            c = calibrators[method]
            return HistogramCollector(method=c.method, symmetric=c.symmetric, num_bins=c.num_bins,
                                      num_quantized_bins=c.num_quantized_bins, percentile=c.percentile,
                                      scenario=c.scenario)

        collectors = [{m: collector(m) for m in g if m not in EXTREMES} for g in groups]
        failed: list[dict[str, str]] = [{} for _ in subsets]
        lows = np.zeros((len(images), len(tensors)), np.float32)
        highs = np.zeros_like(lows)
        outputs: dict[int, dict[str, np.ndarray]] = {}
        pending: list[list[int]] = [[] for _ in subsets]  # each subset's images not yet in a chunk
        chunks: list[list[list[int]]] = [[] for _ in subsets]  # each subset's chunks, as collect cuts them
        last = [int(s.indices[-1]) for s in subsets]
        for i in range(len(images)):
            outputs[i] = dict(zip(names, session.run(None, {input_name: np.asarray(images[i])[None]})))
            if wants_extremes:
                lows[i] = [outputs[i][t].min() for t in tensors]
                highs[i] = [outputs[i][t].max() for t in tensors]
            for k, per_method in enumerate(collectors):
                if not member[k, i]:
                    continue
                pending[k].append(i)
                if len(pending[k]) < CHUNK and i != last[k]:
                    continue
                chunks[k].append(pending[k])
                for method, c in per_method.items():
                    if method in failed[k]:
                        continue
                    try:
                        c.collect({t: [outputs[j][t] for j in pending[k]] for t in tensors})
                    except ValueError as e:  # a nearly constant tensor: this method fails on this subset
                        failed[k][method] = _failed(method, e)
                pending[k] = []
            waiting = {j for p in pending for j in p}  # an image's outputs are kept until every chunk has it
            for j in [j for j in outputs if j not in waiting]:
                del outputs[j]
            if progress and ((i + 1) % CHUNK == 0 or i + 1 == len(images)):
                progress(i + 1, len(images))

        extremes = _calibrator(model_path, tmp, "minmax") if wants_extremes else None
        results = []
        for k, (s, group) in enumerate(zip(subsets, groups)):
            ranges: dict[str, Ranges] = {}
            for method, pcts in group.items():
                labels = [label for label in s.labels if calib_select.parse(label)[0] == method]
                if method in EXTREMES:
                    ranges[labels[0]] = _merged_extremes(extremes, tensors, lows, highs, chunks[k],
                                                         method == "mean-minmax")
                    continue
                if method in failed[k]:
                    continue
                calibrator = calibrators[method]
                calibrator.collector = collectors[k][method]
                try:
                    for label, p in zip(labels, pcts):
                        if p is not None:  # the same histogram, read at each percentile
                            calibrator.collector.percentile = p
                        ranges[label] = _as_ranges(calibrator.compute_data())
                except ValueError as e:
                    failed[k][method] = _failed(method, e)
                    for label in labels:
                        ranges.pop(label, None)
            why = {label: failed[k][calib_select.parse(label)[0]] for label in s.labels
                   if calib_select.parse(label)[0] in failed[k]}
            results.append({"n": int(len(s.indices)), "ranges": ranges, "failed": why})
    return results


def _merged_extremes(calibrator, tensors: list[str], lows: np.ndarray, highs: np.ndarray, chunks: list[list[int]],
                     moving_average: bool) -> Ranges:
    """The ranges onnxruntime's ``MinMaxCalibrater`` (``calibrator``, its graph augmented with a
    ReduceMin and a ReduceMax per tensor) computes from each image's min and max (``lows``/``highs``,
    (N, len(tensors)) float32, columns in ``tensors`` order), fed chunk by chunk as ``collect`` feeds
    it: the extremes, or with ``moving_average`` the mean (each chunk weighted by its images)."""
    column = {t: j for j, t in enumerate(tensors)}
    names = [o.name for o in calibrator.infer_session.get_outputs()]
    slots = [(None, None) if name in calibrator.model_original_outputs else
             (column[name.rpartition("_")[0]], name.endswith("_ReduceMin")) for name in names]
    calibrator.moving_average, calibrator.calibrate_tensors_range = moving_average, None
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        calibrator.averaging_constant = len(chunk) / seen  # this chunk's share of the images seen so far
        calibrator.intermediate_outputs = [
            [None if j is None else (lows if is_min else highs)[i, j:j + 1] for j, is_min in slots] for i in chunk]
        calibrator.compute_data()
        calibrator.clear_collected_data()
    return _as_ranges(calibrator.calibrate_tensors_range)
