"""The compile report: one entry per stage (the input model, then each pass), as JSON or Markdown.

Schema (``schema: yolocc.report/1``) is documented in the README.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, measure, onnxgraph
from .errors import UsageError
from .fileio import write_atomic

SCHEMA = "yolocc.report/1"
BUDGET_ORIGIN = "budget candidate"


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
    latency_ms: float | None = None
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
    imgsz: int
    plan: list[dict[str, Any]] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    artifact: dict[str, Any] | None = None
    compile_time_s: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] | None = None
    written: list[str] = field(default_factory=list)  # files written for this report (not serialized)
    budget: dict[str, Any] | None = None  # --max-drop: the search's candidates and verdict

    def evaluate(self, evaluator, progress=None) -> None:
        """Fill ``metrics`` of every stage with ``evaluator(onnx_bytes)`` (same bytes: same result)."""
        import hashlib

        done: dict[str, dict] = {}
        with_onnx = [s for s in self.stages if s.onnx is not None]
        for i, s in enumerate(with_onnx, 1):
            key = hashlib.sha256(s.onnx).hexdigest()
            if key not in done:
                done[key] = evaluator(s.onnx)
            s.metrics = done[key]
            if progress:
                progress("evaluating stages", i, len(with_onnx))

    def finalize(self, runtime, latency_runs: int = 20, threads: int = 0, splits: dict | None = None) -> None:
        """Fill MACs, size, latency (round-robin on the target's ``runtime``) and fidelity per stage."""
        import onnx

        with_onnx = [s for s in self.stages if s.onnx is not None]
        for s in with_onnx:
            s.size_bytes = len(s.onnx)
            s.macs = onnxgraph.macs(onnx.load_from_string(s.onnx))
        if not with_onnx:
            return
        x = np.random.default_rng(0).random(_input_shape(with_onnx[0].onnx), dtype=np.float32)
        ref = runtime.load(with_onnx[0].onnx, threads).run(x)
        for s in with_onnx[1:]:
            s.fidelity = measure.fidelity(ref, runtime.load(s.onnx, threads).run(x), splits)
        if latency_runs > 0:
            self.latency = {**runtime.describe(), "isa": measure.cpu_isa(), "runs": latency_runs, "warmup": 3,
                            "statistic": "median",
                            "threads": threads or "default", "order": "round-robin"}
            for s, ms in zip(with_onnx, measure.latencies_ms(runtime, [s.onnx for s in with_onnx], x,
                                                             latency_runs, threads=threads)):
                s.latency_ms = ms

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        """A report read back from its JSON form (no ONNX bytes)."""
        stages = [StageRecord(**{k: v for k, v in s.items() if k in StageRecord.__dataclass_fields__})
                  for s in d.get("stages", [])]
        return cls(model=d["model"], task=d["task"], imgsz=d["imgsz"], plan=d.get("plan", []), stages=stages,
                   artifact=d.get("artifact"), compile_time_s=d.get("compile_time_s", 0.0),
                   latency=d.get("latency", {}), cache=d.get("cache"), budget=d.get("budget"))

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "yolocc": __version__, "model": self.model, "task": self.task,
                "imgsz": self.imgsz, "plan": self.plan, "stages": [s.as_dict() for s in self.stages],
                "artifact": self.artifact, "latency": self.latency,
                "compile_time_s": round(self.compile_time_s, 3),
                **({"cache": self.cache} if self.cache else {}),
                **({"budget": self.budget} if self.budget else {})}

    def rows(self) -> list[dict[str, str]]:
        """Table rows (strings) with deltas against the input stage."""
        base = self.stages[0] if self.stages else None
        rows = []
        for s in self.stages:
            rows.append({
                "stage": s.name if s.origin in ("input", "user", BUDGET_ORIGIN) else f"{s.name} ({s.origin.split(':')[0]})",
                "params": _with_delta(s.params, base.params if base else None, _count),
                "MACs": _with_delta(s.macs, base.macs if base else None, _count),
                "size": _with_delta(s.size_bytes, base.size_bytes if base else None, _bytes),
                "latency": _with_delta(s.latency_ms, base.latency_ms if base else None, lambda v: f"{v:.2f} ms"),
                "fidelity": _fidelity_cell(s.fidelity),
            })
            if base is not None and base.metrics and s.metrics:
                key = next(iter(base.metrics))
                rows[-1][key] = _with_delta(s.metrics.get(key), base.metrics.get(key), lambda v: f"{v:.4f}",
                                            absolute=True)
        return rows

    def to_markdown(self) -> str:
        rows = self.rows()
        head = list(rows[0]) if rows else []
        lines = [f"# yolocc report: {self.model}", "",
                 f"task: {self.task}, imgsz: {self.imgsz}, compile time: {self.compile_time_s:.1f} s", ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rows:
            lines.append("| " + " | ".join(r.values()) + " |")
        if self.latency:
            lines += ["", f"Latency: {self.latency['runtime']} on {self.latency.get('isa', '?')}, median of "
                          f"{self.latency['runs']} runs "
                          f"after {self.latency['warmup']} warm-up runs, stages timed round-robin in one run."]
        lines += ["", "Fidelity: cosine similarity of the outputs with the input model's on one fixed input."]
        if self.budget:
            lines += ["", *budget_markdown(self.budget)]
        if self.artifact:
            lines += ["", f"Artifact: `{self.artifact.get('path')}` ({_bytes(self.artifact.get('size_bytes', 0))}, "
                          f"sha256 {self.artifact.get('sha256', '')[:16]}...)"]
        return "\n".join(lines) + "\n"

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


def budget_markdown(b: dict[str, Any]) -> list[str]:
    """The --max-drop section: verdict, then every candidate (val, test, drop, latency, MACs, size)."""
    m = b["metric"]
    lines = [f"## Accuracy budget: --max-drop {b['max_drop']} pt ({m}; chosen on val, test reported)", ""]
    if b.get("final"):
        f = b["final"]
        test_drop = "" if f["drop_pts_test"] is None else f" ({-f['drop_pts_test']:+.2f} pt)"
        passes = " ".join(f"-p {p}" for p in f["passes"])
        lines.append(f"Chosen: **{f['name']}** (`{passes}`): val {f['val']:.4f} ({-f['drop_pts_val']:+.2f} pt), "
                     f"test {_opt(f['test'])}{test_drop}; {f['speedup_vs_input']:.2f}x faster than the input, "
                     f"{f['speedup_vs_int8']:.2f}x than int8 alone.")
    else:
        lines.append("No candidate met the budget.")
    lines += ["", "| candidate | val | test | change (val) | within | latency | MACs | size |",
              "|---|---|---|---|---|---|---|---|"]
    for c in b["candidates"]:
        latency = "-" if c["latency_ms"] is None else f"{c['latency_ms']:.2f} ms"
        lines.append(f"| {c['name']} | {c['val']:.4f} | {_opt(c['test'])} | {-c['drop_pts']:+.2f} pt | "
                     f"{'yes' if c['within'] else 'no'} | {latency} | {_count(c['macs'] or 0)} | "
                     f"{_bytes(c['size_bytes'] or 0)} |")
    lines += ["", f"Search wall time: {b['wall_s']:.0f} s."]
    return lines


def _opt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _input_shape(model_bytes: bytes) -> list[int]:
    import onnx

    return onnxgraph.static_dims(onnx.load_from_string(model_bytes).graph.input[0])


def _count(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return str(int(v))


def _bytes(v: float) -> str:
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f} {unit}"
    return f"{int(v)} B"


def _with_delta(v, base, fmt, absolute: bool = False) -> str:
    if v is None:
        return "-"
    if base in (None, 0) or v == base:
        return fmt(v)
    if absolute:  # accuracy: the change in points, not percent of itself
        return f"{fmt(v)} ({(v - base) * 100:+.1f} pt)"
    return f"{fmt(v)} ({(v - base) / base * 100:+.1f}%)"


def _fidelity_cell(fid: dict | None) -> str:
    if not fid:
        return "-"
    # Prefer the class-score slice of a detector's output: boxes (0-640) would dominate the rest.
    key = next((k for k in fid if k.endswith("[scores]")), next(iter(fid)))
    entry = fid[key]
    if "cosine" not in entry:
        return "shape mismatch"
    label = "scores " if key.endswith("[scores]") else ""
    return f"{label}cos {entry['cosine']:.4f}"
