"""The Python API: ``compile_model(...)`` and the ``Compiler`` it wraps. No global state."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import autotarget, lowering
from .errors import GraphError, PipelineError, UsageError
from .fileio import artifact_facts, check_report_path, check_writable, refuse_input_overwrite, staged
from .analyses import CALIBRATION, OUTPUT_SPLITS, STATES
from .interfaces import Frontend
from .ir import ModelIR
from .metrics import Metrics
from .options import DEFAULT_TARGET, CompileOptions
from .params import PassSpec
from .passbase import Pass, PassContext, PassResult
from .pipeline import Step, plan, resolve, run
from .registry import Registry, build_registry, get_plugin_manager
from .report import Report, StageRecord
from .target import Runtime

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
    def load(self, model: Any, imgsz: int | tuple[int, int] | None = None, trust_model: bool = False) -> ModelIR:
        """Load a model path (or an in-memory module) with the first frontend that accepts it.

        ``imgsz``: a side, ``(h, w)`` or ``"H,W"`` (frontends get an int side or an ``(h, w)`` tuple).
        ``.pt`` files load with the safe unpickler; ``trust_model`` allows a full pickle (it can run code)."""
        if imgsz is not None:
            imgsz = CompileOptions(imgsz=imgsz).imgsz  # range check, normalised
        options = {"imgsz": imgsz, "trust_model": trust_model}
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

    def context(self, ir: ModelIR, opts: CompileOptions, progress=None) -> PassContext:
        """The ``PassContext`` passes get for ``ir``: options, event hooks, target, runtime, frontend."""
        target, runtime = self.target(opts.target)
        return PassContext(options=opts, hook=self.pm.hook, progress=progress, target=target,
                           frontend=self.frontend_of(ir), runtime=runtime)

    def apply(self, ir: ModelIR, passes: Iterable[str | PassSpec | Pass], opts: CompileOptions, progress=None,
              on_pass=None, teacher: Any = None, reference: Metrics | None = None,
              trial: bool = False) -> PassContext:
        """Plan and run ``passes`` on ``ir`` in place: no measurements, no output. ``teacher``,
        ``reference`` and ``trial`` go to ``PassContext`` (a search trial's teacher module, its val
        metrics, and that the passes are one trial of a search)."""
        ctx = self.context(ir, opts, progress)
        ctx.teacher, ctx.reference, ctx.trial = teacher, reference, trial
        return run(ir, self.plan(ir, passes), ctx, on_pass)

    def plan(self, ir: ModelIR, passes: Iterable[str | PassSpec | Pass]) -> list[Step]:
        """The steps for ``passes`` on ``ir`` (see ``pipeline.plan``); a pass that needs the channel
        dependency graph of a model torch-pruning cannot trace is refused here, before any work, and so
        is any pass whose ``check_plan`` refuses the model (e.g. finetune/distill where its frontend
        cannot train or distil it)."""
        steps = plan(self.registry, passes, ir.stage, ir.analyses.keys(), source=f"'{ir.source}'",
                     start_states=ir.meta.get(STATES))
        frontend = self.frontend_of(ir)
        for step in steps:
            if step.pass_ is not None:
                step.pass_.check_plan(ir, frontend)
        needing = next((s.pass_ for s in steps if s.pass_ is not None and s.pass_.needs_channel_graph), None)
        if needing is not None and ir.stage == "torch":
            try:
                ir.dependency_graph()
            except GraphError as e:
                raise PipelineError(f"pass '{needing.name}' cannot run on '{ir.source}': {e}; drop it (int8, "
                                    f"fuse-bn and fp16 do not need it)") from e
        return steps

    def target(self, name: str):
        """The registered target ``name`` and the runtime that measures it (a target without its own
        runtime is measured on the default target's)."""
        target = self.registry.target(name)
        runtime = target.runtime() or self.registry.target(DEFAULT_TARGET).runtime()
        return target, runtime

    def frontend_of(self, ir: ModelIR) -> Frontend:
        """The frontend that loaded ``ir``, or the null ``Frontend()`` (neutral answers) for none."""
        return self.registry.frontends[ir.frontend].obj if ir.frontend in self.registry.frontends else Frontend()

    def compile(self, model: Any, passes: Sequence[str | PassSpec | Pass] = (), output: str | Path | None = None,
                options: CompileOptions | None = None, reports: Sequence[str | Path] = (),
                on_stage=None, progress=None, target_choice=None, **settings: Any) -> CompileResult:
        """Load, plan, run the passes, measure every stage, then write ``reports`` and ``output``.

        ``options`` (a ``CompileOptions``) and/or keyword ``settings`` with the same names (``imgsz``,
        ``calib``, ``target``, ``data``, ``eval_split``, ``cache_dir`` ...) say how; ``target="auto"``
        measures the model on every installed CPU runtime first (``autotarget``; ``target_choice``: a
        choice the caller made that way already, for the report). Nothing is written
        unless every step succeeded: the artifact is staged next to ``output`` and renamed last.
        """
        t_start = time.perf_counter()
        opts = (options or CompileOptions()).merged(settings, "compile")
        if opts.target == autotarget.AUTO_TARGET:  # measure the model on every installed CPU runtime
            opts, target_choice = autotarget.resolve(self, model, passes, opts, log)
        emitter = None
        target, runtime = self.target(opts.target)
        if output is not None:
            emitter = self.registry.emitter_for(output)
            check_writable(output, emitter.writes_folder)
            refuse_input_overwrite(model, output)
            emitter.check(self._emit_options(opts, None, target))
        for path in reports:
            check_report_path(path)
            refuse_input_overwrite(model, path)
        for name, given, what in (("--search", opts.search, "shapes the accuracy budget's search"),
                                  ("--max-macs", opts.max_macs, "shapes the accuracy budget's search"),
                                  ("--executor", opts.executor, "runs the accuracy budget's trials"),
                                  ("--workers", opts.workers, "runs the accuracy budget's trials")):
            if opts.max_drop is None and given is not None:
                raise UsageError(f"{name} {given} {what}: it needs --max-drop PTS")
        if opts.max_drop is not None:
            self.registry.strategy(opts.search)  # an unknown name fails before any work
        if opts.data is not None and not Path(opts.data).exists():
            raise UsageError(f"--data '{opts.data}' does not exist")
        if opts.data is not None and not opts.measure:
            raise UsageError("--data needs the per-stage measurements: drop --no-measure")
        key = None
        if opts.cache_dir is not None and output is not None and isinstance(model, (str, os.PathLike)):
            from . import cache

            resolved = [{"name": p.name, "args": p.args} for p in resolve(self.registry, passes)]
            key = cache.compile_key(model, resolved, opts, Path(output).suffix, getattr(self.pm, "versions", {}))
            hit = cache.lookup(opts.cache_root(), key)
            if hit is not None:
                report = Report.from_dict(hit[1])
                report.cache = {"hit": True, "key": key, "time_s": round(time.perf_counter() - t_start, 3)}
                report.artifact = dict(report.artifact or {}, path=str(output))
                with contextlib.ExitStack() as stack:
                    cache.restore(hit[0], stack.enter_context(staged(output, emitter.writes_folder)))
                    _stage_reports(report, reports, stack)
                log.info("cache hit %s: copied the cached artifact", key[:12])
                return CompileResult(Path(output), report, None, [])
        if opts.max_drop is not None:
            if passes:
                raise UsageError("--max-drop chooses the passes itself: drop the -p passes (or drop --max-drop)")
            from .budget import Budget

            ir, report = Budget(self, opts, self.registry.strategy(opts.search), progress).search(model)
            report.target_choice = target_choice.as_dict() if target_choice else None
            return self._finish(ir, report, [], output, emitter, reports, key, opts, t_start)
        ir = model if isinstance(model, ModelIR) else self.load(model, opts.imgsz, opts.trust_model)
        steps = self.plan(ir, passes)
        if not opts.calib and any(s.pass_ is not None and CALIBRATION in s.pass_.provides for s in steps):
            raise UsageError("int8 needs calibration data: pass --calib IMAGES_DIR (an image folder, "
                             "an Ultralytics data YAML, or a .npy/.npz of preprocessed inputs)")
        report = Report(model=ir.source, task=ir.task, imgsz=ir.input.imgsz,
                        plan=[s.as_dict() for s in steps],
                        target_choice=target_choice.as_dict() if target_choice else None)

        def snapshot(name: str, origin: str, args: dict, result: PassResult | None, elapsed: float) -> None:
            rec = StageRecord(name=name, stage=ir.stage, params=ir.param_count(), args=dict(args),
                              origin=origin, time_s=round(elapsed, 3))
            if result is not None:
                rec.modified, rec.changes, rec.diagnostics = result.modified, result.changes, result.diagnostics
            if opts.measure:
                rec.onnx = lowering.onnx_bytes(ir, opts.opset, opts.dynamic_batch)
            report.stages.append(rec)
            if on_stage is not None:
                on_stage(rec)

        snapshot("input", "input", {}, None, 0.0)
        run(ir, steps, self.context(ir, opts, progress), on_pass=lambda step, result, dt: snapshot(step.pass_.name, step.origin,
                                                                        step.pass_.args, result, dt))
        if opts.measure:
            report.finalize(runtime, opts.latency_runs, opts.threads, splits=ir.meta.get(OUTPUT_SPLITS),
                            batch=opts.batch, cache_root=opts.cache_root(), turn=opts.latency_turn)
        if opts.data:
            report.evaluate(self.evaluator(ir, opts, runtime), progress)
            report.accuracy = {**(report.accuracy or {}), "data": str(opts.data), "split": opts.eval_split}
        return self._finish(ir, report, steps, output, emitter, reports, key, opts, t_start)

    def _finish(self, ir: ModelIR, report: Report, steps: list[Step], output, emitter, reports, key: str | None,
                opts: CompileOptions, t_start: float) -> CompileResult:
        """The one end of every compile, searched or not: emit the artifact, write the reports and store
        both in the content cache (``key``), all staged and renamed into place together."""
        with contextlib.ExitStack() as stack:
            if emitter is None:
                report.compile_time_s = time.perf_counter() - t_start
                _stage_reports(report, reports, stack)
                return CompileResult(None, report, ir, steps)
            tmp = stack.enter_context(staged(output, emitter.writes_folder))
            info = emitter.emit(ir, tmp, self._emit_options(opts, self.frontend_of(ir), self.registry.target(opts.target)))
            report.artifact = {"path": str(output), "emitter": emitter.name, **artifact_facts(tmp), **info}
            report.compile_time_s = time.perf_counter() - t_start
            if key is not None:
                from . import cache

                report.cache = {"hit": False, "key": key}
                cache.store(opts.cache_root(), key, tmp, report.as_dict())
            _stage_reports(report, reports, stack)
        return CompileResult(Path(output), report, ir, steps)

    @staticmethod
    def _emit_options(opts: CompileOptions, frontend, target) -> dict[str, Any]:
        return {"opset": opts.opset, "dynamic_batch": opts.dynamic_batch, "frontend": frontend, "target": target,
                "cache_dir": str(opts.cache_root())}

    def evaluator(self, ir: ModelIR, opts: CompileOptions, runtime: Runtime) -> Callable[..., Metrics]:
        """``evaluate(onnx_bytes, split=opts.eval_split) -> Metrics`` on ``opts.data`` with the model's
        frontend, run on ``runtime``."""
        frontend = self.frontend_of(ir)

        def evaluate(onnx_bytes: bytes, split: str = opts.eval_split) -> Metrics:
            metrics = frontend.evaluate(ir, onnx_bytes, opts.data, runtime, split=split)
            if metrics is None:
                raise UsageError(f"--data: the {ir.frontend or 'model'}'s frontend cannot evaluate accuracy")
            return metrics

        return evaluate


def _stage_reports(report: Report, paths: Sequence[str | Path], stack: contextlib.ExitStack) -> None:
    """Stage the JSON/Markdown reports (and the accuracy-latency PNG next to the first one when there
    is accuracy) in ``stack``: they are renamed into place together with the artifact, or not at all."""
    for path in paths:
        stack.enter_context(staged(path)).write_text(report.render(path), encoding="utf-8")
        report.written.append(str(path))
    from .plot import accuracy_latency_png, plot_points, sensitivity_png

    if paths and plot_points(report):
        png = Path(paths[0]).with_suffix(".png")
        accuracy_latency_png(report, stack.enter_context(staged(png)))
        report.written.append(str(png))
    analysis = next((s.changes["analysis"] for s in report.stages if "analysis" in s.changes), None)
    if paths and analysis:
        png = Path(paths[0]).with_name(Path(paths[0]).stem + "-sensitivity.png")
        sensitivity_png(analysis, stack.enter_context(staged(png)), report.model)
        report.written.append(str(png))


def compile_model(model: Any, passes: Sequence[str | PassSpec | Pass] = (), output: str | Path | None = None,
                  **kwargs: Any) -> CompileResult:
    """Compile ``model`` (a path, or an ``nn.Module``) with ``passes`` and write ``output``.

    ``passes`` takes ``-p`` strings (``"prune:0.25"``) or ``Pass`` objects. Keyword arguments are
    ``CompileOptions`` fields (``imgsz``, ``calib``, ``target``, ``data`` ...) or those of
    ``Compiler.compile`` (``options``, ``reports``, ``progress`` ...).
    """
    return Compiler().compile(model, passes, output, **kwargs)
