"""The Python API: ``compile_model(...)`` and the ``Compiler`` it wraps. No global state."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import lowering
from .errors import UsageError
from .fileio import check_writable
from .interfaces import EVAL_SPLITS
from .ir import ModelIR
from .params import PassSpec
from .passbase import Pass, PassResult
from .pipeline import RunOptions, Step, plan, resolve, run
from .registry import Registry, build_registry, get_plugin_manager
from .report import Report, StageRecord

log = logging.getLogger(__name__)


@dataclass
class CompileResult:
    """What ``compile_model`` returns: the artifact path, the report and the final IR."""

    artifact: Path | None
    report: Report
    ir: ModelIR | None  # None when the compile came from the cache
    plan: list[Step] = field(default_factory=list)


class Compiler:
    """One plugin manager + registry; compile as many models as you like with it."""

    def __init__(self, plugin_manager=None):
        self.pm = plugin_manager or get_plugin_manager()
        self.registry: Registry = build_registry(self.pm)

    # ------------------------------------------------------------------ steps
    def load(self, model: Any, imgsz: int | None = None) -> ModelIR:
        """Load a model path (or an in-memory module) with the first frontend that accepts it."""
        if imgsz is not None and not 1 <= int(imgsz) <= 8192:
            raise UsageError(f"--imgsz must be between 1 and 8192, got {imgsz}")
        options = {"imgsz": imgsz}
        frontends = sorted(self.registry.frontends.values(), key=lambda r: r.obj.priority)
        for reg in frontends:
            ir = reg.obj.load(model, options)
            if ir is not None:
                ir.frontend = reg.obj.name
                return ir
        if isinstance(model, (str, os.PathLike)) and not Path(model).exists():
            raise UsageError(f"model file '{model}' does not exist")
        names = ", ".join(r.obj.name for r in frontends)
        raise UsageError(f"cannot load '{model}': no frontend recognises it (frontends: {names})")

    def plan(self, ir: ModelIR, passes: Iterable[str | PassSpec | Pass]) -> list[Step]:
        return plan(self.registry, passes, ir.stage, ir.analyses.keys(), source=f"'{ir.source}'")

    def compile(self, model: Any, passes: Sequence[str | PassSpec | Pass] = (), output: str | Path | None = None,
                imgsz: int | None = None, opset: int = lowering.DEFAULT_OPSET, dynamic_batch: bool = False,
                measure: bool = True, latency_runs: int = 20, threads: int = 0,
                calib: str | None = None, calib_n: int | None = None, target: str = "ort-cpu",
                data: str | None = None, eval_split: str = "val", cache_dir: str | Path | None = None,
                options: dict[str, Any] | None = None, on_stage=None, progress=None) -> CompileResult:
        """Load, plan, run the passes, emit ``output`` (if given) and measure every stage.

        ``calib`` is an image folder, data YAML or .npy/.npz (needed by ``int8``/``calibrate``);
        ``target`` picks the quantization rules (``ort-cpu`` or ``tensorrt``); ``data`` (a labelled
        dataset the frontend can evaluate on) adds accuracy ``metrics`` to every stage, measured on
        its ``eval_split`` (``val``, or a held-out ``test``; training passes still pick checkpoints on val).
        """
        t_start = time.perf_counter()
        emitter = None
        if output is not None:
            emitter = self.registry.emitter_for(output)
            check_writable(output)
        if latency_runs < 0:
            raise UsageError(f"latency runs must be >= 0, got {latency_runs}")
        if data is not None and not Path(data).exists():
            raise UsageError(f"--data '{data}' does not exist")
        if data is not None and not measure:
            raise UsageError("--data needs the per-stage measurements: drop --no-measure")
        if eval_split not in EVAL_SPLITS:
            raise UsageError(f"unknown evaluation split '{eval_split}' (choose from: {', '.join(EVAL_SPLITS)})")
        options = dict(options or {}, calib=calib, calib_n=calib_n, target=target, data=data, eval_split=eval_split,
                       target_obj=self.registry.target(target))
        key = None
        if cache_dir is not None and output is not None and isinstance(model, (str, os.PathLike)):
            from . import cache

            resolved = [{"name": p.name, "args": p.args} for p in resolve(self.registry, passes)]
            settings = {k: v for k, v in options.items() if k != "target_obj"}
            settings.update(imgsz=imgsz, opset=opset, dynamic_batch=dynamic_batch, data=data,
                            measure=measure, latency_runs=latency_runs)
            key = cache.compile_key(model, resolved, settings, Path(output).suffix,
                                    getattr(self.pm, "versions", {}))
            hit = cache.lookup(cache_dir, key)
            if hit is not None:
                cache.restore(hit[0], output)
                report = Report.from_dict(hit[1])
                report.cache = {"hit": True, "key": key, "time_s": round(time.perf_counter() - t_start, 3)}
                report.artifact = dict(report.artifact or {}, path=str(output))
                log.info("cache hit %s: copied the cached artifact", key[:12])
                return CompileResult(Path(output), report, None, [])
        ir = model if isinstance(model, ModelIR) else self.load(model, imgsz)
        steps = self.plan(ir, passes)
        if not calib and any(s.pass_ is not None and "calibration" in s.pass_.provides for s in steps):
            raise UsageError("int8 needs calibration data: pass --calib IMAGES_DIR (an image folder, "
                             "an Ultralytics data YAML, or a .npy/.npz of preprocessed inputs)")
        report = Report(model=ir.source, task=ir.task, imgsz=ir.input.imgsz,
                        plan=[s.as_dict() for s in steps])

        def snapshot(name: str, origin: str, args: dict, result: PassResult | None, elapsed: float) -> None:
            rec = StageRecord(name=name, stage=ir.stage, params=ir.param_count(), args=dict(args),
                              origin=origin, time_s=round(elapsed, 3))
            if result is not None:
                rec.modified, rec.changes, rec.diagnostics = result.modified, result.changes, result.diagnostics
            if measure:
                rec.onnx = lowering.onnx_bytes(ir, opset)
            report.stages.append(rec)
            if on_stage is not None:
                on_stage(rec)

        snapshot("input", "input", {}, None, 0.0)
        run(ir, steps, self.pm.hook, RunOptions(opset, dynamic_batch, options, progress),
            on_pass=lambda step, result, dt: snapshot(step.pass_.name, step.origin, step.pass_.args, result, dt))

        artifact = None
        if emitter is not None:
            info = emitter.emit(ir, Path(output), {"opset": opset, "dynamic_batch": dynamic_batch})
            artifact = Path(output)
            blob = artifact.read_bytes()
            report.artifact = {"path": str(artifact), "emitter": emitter.name, "size_bytes": len(blob),
                               "sha256": hashlib.sha256(blob).hexdigest(), **info}
        if measure:
            report.finalize(latency_runs, threads, splits=ir.meta.get("output_splits"))
        if data:
            frontend = self.registry.frontends[ir.frontend].obj

            def evaluator(onnx_bytes: bytes) -> dict:
                split = {} if eval_split == "val" else {"split": eval_split}
                metrics = frontend.evaluate(ir, onnx_bytes, data, **split)
                if metrics is None:
                    raise UsageError(f"--data: the {ir.frontend} frontend cannot evaluate accuracy")
                return metrics

            report.evaluate(evaluator, progress)
        report.compile_time_s = time.perf_counter() - t_start
        if key is not None and artifact is not None:
            from . import cache

            report.cache = {"hit": False, "key": key}
            cache.store(cache_dir, key, artifact, report.as_dict())
        return CompileResult(artifact, report, ir, steps)


def compile_model(model: Any, passes: Sequence[str | PassSpec | Pass] = (), output: str | Path | None = None,
                  **kwargs: Any) -> CompileResult:
    """Compile ``model`` (a path, or an ``nn.Module``) with ``passes`` and write ``output``.

    ``passes`` takes ``-p`` strings (``"prune:0.25"``) or ``Pass`` objects. Keyword arguments are
    those of ``Compiler.compile`` (``imgsz``, ``opset``, ``dynamic_batch``, ``measure`` ...).
    """
    return Compiler().compile(model, passes, output, **kwargs)
