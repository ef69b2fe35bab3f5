"""The compile report: one entry per stage (the input model, then each pass), as JSON or Markdown.

Schema (``schema: yolocc.report/2``) is documented in the README.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, ceiling, measure, onnxgraph, report_render
from .errors import UsageError
from .fileio import write_atomic

SCHEMA = "yolocc.report/2"
BUDGET_ORIGIN = report_render.BUDGET_ORIGIN


@dataclass
class StageRecord:
    """Measurements of the model after one stage."""

    name: str
    stage: str
    params: int
    args: dict[str, Any] = field(default_factory=dict)
    origin: str = "input"
    modified: bool = False
    changes: dict[str, Any] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)
    time_s: float = 0.0
    onnx: bytes | None = None  # the stage's ONNX serialization (not written to the report)
    macs: int | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None  # p50 at batch 1
    latency_p95_ms: float | None = None
    latency_min_ms: float | None = None
    throughput_ips: float | None = None  # images/s at batch 1
    batch_throughput_ips: float | None = None  # images/s at ``latency.batch`` (dynamic-batch models)
    memory_bytes: int | None = None  # resident memory of the runtime session (see measure.LatencyStats)
    gmacs_per_s: float | None = None  # MACs / p50 latency
    ceiling_pct: float | None = None  # gmacs_per_s as a percentage of the machine's int8 GEMM ceiling
    fidelity: dict[str, Any] | None = None
    metrics: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "onnx"}
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class Report:
    """Everything a compile measured."""

    model: str
    task: str
    imgsz: int | list[int]  # the side of a square input, else [h, w] (Ultralytics' convention)
    plan: list[dict[str, Any]] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    artifact: dict[str, Any] | None = None
    compile_time_s: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] | None = None
    written: list[str] = field(default_factory=list)  # files written for this report (not serialized)
    budget: dict[str, Any] | None = None  # --max-drop: the search's candidates and verdict
    accuracy: dict[str, Any] | None = None  # with --data: {"data": path, "split": the split measured}
    target_choice: dict[str, Any] | None = None  # --target auto: the chosen target and why (autotarget.Choice)

    def __post_init__(self) -> None:
        if isinstance(self.imgsz, (tuple, list)):  # an InputSpec's (h, w): a list, as JSON reads it back
            self.imgsz = [int(v) for v in self.imgsz] if len(set(self.imgsz)) > 1 else int(self.imgsz[0])

    def input_shape(self, model_bytes: bytes) -> list[int]:
        """The shape stages are measured at: the ONNX input's, a symbolic batch read as 1 and symbolic
        height/width (a dynamic model) as the compile's ``imgsz``."""
        import onnx

        inp = onnx.load_from_string(model_bytes).graph.input[0]
        dims, shape = inp.type.tensor_type.shape.dim, onnxgraph.static_dims(inp)
        if len(shape) == 4:
            h, w = self.imgsz if isinstance(self.imgsz, list) else (self.imgsz, self.imgsz)
            shape[2:] = [d.dim_value if d.HasField("dim_value") else v for d, v in zip(dims[2:], (h, w))]
        return shape

    @property
    def imgsz_text(self) -> str:
        """The input size for people: ``160``, or ``96x160`` (height x width)."""
        return "x".join(str(v) for v in self.imgsz) if isinstance(self.imgsz, list) else str(self.imgsz)

    def evaluate(self, evaluator, progress=None) -> None:
        """Fill ``metrics`` of every stage with ``evaluator(onnx_bytes) -> Metrics`` (same bytes: same
        result) and record the primary metric's name in ``accuracy["metric"]``."""
        import hashlib

        done: dict[str, Any] = {}
        with_onnx = [s for s in self.stages if s.onnx is not None]
        for i, s in enumerate(with_onnx, 1):
            key = hashlib.sha256(s.onnx).hexdigest()
            if key not in done:
                done[key] = evaluator(s.onnx)
            s.metrics = done[key].as_dict()
            self.accuracy = {**(self.accuracy or {}), "metric": done[key].primary}
            if progress:
                progress("evaluating stages", i, len(with_onnx))

    def finalize(self, runtime, latency_runs: int = 20, threads: int = 0, splits: dict | None = None,
                 batch: int = 1, cache_root: str | Path | None = None, turn: int = 1) -> None:
        """Fill MACs, size, latency (round-robin on the target's ``runtime``) and fidelity per stage."""
        import onnx

        with_onnx = [s for s in self.stages if s.onnx is not None]
        if not with_onnx:
            return
        shape = self.input_shape(with_onnx[0].onnx)
        for s in with_onnx:
            s.size_bytes = len(s.onnx)
            s.macs = onnxgraph.macs(onnxgraph.fixed_input(onnx.load_from_string(s.onnx), shape))
        x = measure.timing_input(shape)
        ref = runtime.load(with_onnx[0].onnx, threads).run(x)
        for s in with_onnx[1:]:
            s.fidelity = measure.fidelity(ref, runtime.load(s.onnx, threads).run(x), splits)
        if latency_runs > 0:
            self.measure_latency(runtime, with_onnx, x, latency_runs, threads, batch, turn)
            self.measure_efficiency(runtime, with_onnx, threads, cache_root)

    def measure_efficiency(self, runtime, stages: list[StageRecord], threads: int, cache_root) -> None:
        """Each stage's GMAC/s and its share of ``runtime``'s int8 GEMM ceiling on this machine (measured
        once, cached; a runtime without one leaves the column out): how much of the hardware the model
        uses, next to its latency."""
        peak = runtime.int8_ceiling(threads, Path(cache_root) if cache_root is not None else None)
        if not peak:
            return
        self.latency["int8_ceiling"] = peak
        for s in stages:
            if s.macs and s.latency_ms:
                s.gmacs_per_s, s.ceiling_pct = ceiling.efficiency(s.macs, s.latency_ms, peak["gmacs"])

    def measure_latency(self, runtime, stages: list[StageRecord], x: np.ndarray, runs: int, threads: int,
                        batch: int, turn: int = 1) -> None:
        """p50/p95/min, throughput and memory of ``stages``, all timed round-robin in one run (``turn``:
        runs in a row per stage and round, the last timed; ``measure.latency_stats``)."""
        skipped = None
        if batch > 1 and not all(_dynamic_batch(s.onnx) for s in stages):
            skipped = (f"batch {batch} skipped: the model's batch dimension is fixed at 1 "
                       f"(export with --dynamic-batch to measure it)")
            batch = 1
        self.latency = {**runtime.describe(), "isa": measure.cpu_isa(), "runs": runs, "warmup": 3,
                        "statistic": "p50 (latency_ms), p95, min of the batch-1 runs",
                        "threads": threads or "default", "order": "round-robin", "turn": turn, "batch": batch,
                        "memory": "resident memory added by the session from loading through warm-up",
                        **({"batch_skipped": skipped} if skipped else {})}
        for s, st in zip(stages, measure.latency_stats(runtime, [s.onnx for s in stages], x, runs,
                                                       threads=threads, batch=batch, turn=turn)):
            s.latency_ms, s.latency_p95_ms, s.latency_min_ms = st.p50_ms, st.p95_ms, st.min_ms
            s.throughput_ips, s.batch_throughput_ips, s.memory_bytes = (st.throughput_ips, st.batch_throughput_ips,
                                                                        st.memory_bytes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        """A report read back from its JSON form (no ONNX bytes)."""
        stages = [StageRecord(**{k: v for k, v in s.items() if k in StageRecord.__dataclass_fields__})
                  for s in d.get("stages", [])]
        return cls(model=d["model"], task=d["task"], imgsz=d["imgsz"], plan=d.get("plan", []), stages=stages,
                   artifact=d.get("artifact"), compile_time_s=d.get("compile_time_s", 0.0),
                   latency=d.get("latency", {}), cache=d.get("cache"), budget=d.get("budget"),
                   accuracy=d.get("accuracy"), target_choice=d.get("target_choice"))

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "yolocc": __version__, "model": self.model, "task": self.task,
                "imgsz": self.imgsz, "plan": self.plan, "stages": [s.as_dict() for s in self.stages],
                "artifact": self.artifact, "latency": self.latency,
                "compile_time_s": round(self.compile_time_s, 3),
                **({"cache": self.cache} if self.cache else {}),
                **({"accuracy": self.accuracy} if self.accuracy else {}),
                **({"budget": self.budget} if self.budget else {}),
                **({"target_choice": self.target_choice} if self.target_choice else {})}

    def to_markdown(self) -> str:
        return report_render.markdown(self)

    def render(self, path: str | Path) -> str:
        """The report as JSON, or as Markdown for a ``.md`` path."""
        suffix = Path(path).suffix.lower()
        if suffix == ".md":
            return self.to_markdown()
        if suffix == ".json":
            return json.dumps(self.as_dict(), indent=2) + "\n"
        raise UsageError(f"report path '{path}' must end in .json or .md")

    def write(self, path: str | Path) -> Path:
        """Write JSON, or Markdown for a ``.md`` path, atomically."""
        written = write_atomic(path, self.render(path))
        self.written.append(str(written))
        return written


def _dynamic_batch(model_bytes: bytes) -> bool:
    import onnx

    dims = onnx.load_from_string(model_bytes).graph.input[0].type.tensor_type.shape.dim
    return bool(dims) and not dims[0].HasField("dim_value")


