"""The names of IR analyses (``ModelIR.analyses``) and frontend facts (``ModelIR.meta``) that more than
one module reads or writes, with the type each holds. Use these constants, never the bare strings.

Analyses are produced by passes and dropped when a pass changes the model (unless it preserves
them); snapshots (``SNAPSHOTS``) describe an earlier model and survive every change.
"""

from __future__ import annotations

#: ``True`` once the frontend's canonical rewrites ran (``canonicalize``).
CANONICAL = "canonical"
#: ``{"method", "activations": {tensor: [min, max]}, "weights": {...}, "n", "key"}`` (``calibrate``).
CALIBRATION = "calibration"
#: The per-group pruning sensitivity (``sensitivity``; see ``passes/sensitivity.py``).
SENSITIVITY = "sensitivity"
#: The ``nn.Module`` before the first pass that changed what the model computes: the default
#: distillation teacher (``prune``, ``act``; or given by a search trial).
TEACHER = "pre_prune"
#: ``Metrics`` of ``TEACHER`` on the val split: what ``epochs=auto`` recovers towards.
REFERENCE_METRICS = "pre_prune_metrics"

#: Analyses that are snapshots of an earlier model, not facts about the current one.
SNAPSHOTS = (TEACHER, REFERENCE_METRICS)

# ---- ModelIR.meta keys a frontend sets and generic code reads
#: ``{output name: {part name: slice along dim 1}}``: how an output tensor splits into boxes, scores and
#: each task's own part (mask coefficients, keypoints, angle), weighed apart by output fidelity
#: (``measure.output_distance``); an output it does not name is compared whole.
OUTPUT_SPLITS = "output_splits"
#: Qualnames of modules the frontend says must stay float under INT8 (e.g. RT-DETR's transformer
#: decoder): ``qdq`` keeps every ONNX node exported under ``/<qualname>/`` float.
FLOAT_SCOPES = "float_scopes"
#: ``{state: who made it}`` of an input model (e.g. an already quantized ONNX).
STATES = "states"
