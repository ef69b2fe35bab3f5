"""The accuracy budget (``--max-drop PTS``): the fastest model whose val metric stays within PTS points.

This module is the policy's frame, not the policy: it measures the input model, hands a search
strategy (``--search NAME``, default ``ladder``; see ``compiler.search``) a ``SearchSpace`` through
which the strategy runs typed trials, then verifies and reports. Every result goes into the report
(val, test, latency on the target's runtime, MACs, size), with a Pareto plot of accuracy against
latency. Choices are made on val only; test is reported. A chosen result over budget is refused, and
so is a search that finds none: ``BudgetNotMet`` names the best candidate and how far it is over.

Trials run through an executor (``compiler.executor``): in this process one after another (the
default), or a batch's trials at once in worker processes (``--workers N``) or on Ray (``--executor
ray``). Results are recorded in trial order whichever finishes first.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Sequence

import onnx

from . import cache, lowering, measure, onnxgraph
from .analyses import OUTPUT_SPLITS
from .datasets import has_split
from .errors import UsageError
from .executor import Executor, is_remote, make_executor
from .fileio import check_readable
from .ir import ModelIR
from .metrics import Metrics, drop_se
from .options import CompileOptions
from .passbase import Pass
from .report import BUDGET_ORIGIN, Report, StageRecord
from .search import SearchStrategy, Trial, TrialResult
from .trialboard import TrialBoard
from .trialrun import TrialJob, TrialOutcome, run_trial

log = logging.getLogger(__name__)


class BudgetNotMet(UsageError):
    """No candidate stays within the budget (the CLI prints it as one line and exits 2); ``report``
    holds every candidate measured."""

    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


class Budget:
    """One ``--max-drop`` search for one ``Compiler``: the ``SearchSpace`` its strategy works in."""

    def __init__(self, compiler, opts: CompileOptions, strategy: SearchStrategy,
                 progress: Callable[[str, int, int], None] | None = None, executor: Executor | None = None):
        if opts.max_drop is None:
            raise UsageError("the budget search needs --max-drop PTS")
        if not opts.data:
            raise UsageError("--max-drop needs --data DATA.yaml: the budget is measured on its val split")
        if not opts.calib:
            raise UsageError("--max-drop needs --calib IMAGES_DIR (INT8 calibration and the sensitivity analysis)")
        self.compiler, self.options, self.strategy, self._progress = compiler, opts, strategy, progress
        self.budget = float(opts.max_drop)
        self.target, self.runtime = compiler.target(opts.target)
        self.results: list[TrialResult] = []
        self._by_trial: dict[int, TrialResult] = {}
        self._with_test = has_split(opts.data, "test")
        self.input: TrialResult | None = None
        self._base_key: str | None = None  # set by search() when trials are cached (--cache DIR)
        #: Where trials run; None until search() starts (then ``--executor``/``--workers``'s).
        self.executor: Executor | None = executor
        #: The progress display over every trial (``compiler.trialboard``); None until the first batch.
        self.board: TrialBoard | None = None

    # ------------------------------------------------------------------ the SearchSpace interface
    def run(self, trials: Sequence[Trial]) -> list[TrialResult]:
        if self.executor.in_process:  # one after another, as the budget always ran them
            return [r for t in trials for r in self._run_batch([t])]
        return self._run_batch(trials)

    def pass_(self, name: str, **args: Any) -> Pass:
        return self.compiler.registry.pass_class(name)(**args)

    def drop(self, result: TrialResult) -> float:
        if result.val is None:
            raise UsageError(f"search strategy '{self.strategy.name}': trial '{result.trial.name}' was not "
                             f"evaluated (Trial.evaluate=False): it has no drop")
        return (self.input.val.value - result.val.value) * 100

    def drop_se(self, result: TrialResult) -> float | None:
        return drop_se(self.input.val, result.val) if result.val is not None else None

    def latency(self, results: Sequence[TrialResult]) -> list[float | None]:
        if self.options.latency_runs <= 0 or not results:
            return [None] * len(results)
        models = [lowering.onnx_bytes(r.ir, self.options.opset) for r in results]
        x = measure.timing_input(onnxgraph.static_dims(onnx.load_from_string(models[0]).graph.input[0]))
        return [round(ms, 3) for ms in measure.latencies_ms(self.runtime, models, x, self.options.latency_runs,
                                                            threads=self.options.threads,
                                                            turn=self.options.latency_turn)]

    def progress(self, what: str, done: int, total: int) -> None:
        log.info("budget: %s (%d/%d)", what, done, total)
        if self._progress:
            self._progress(f"budget: {what}", done, total)

    # ------------------------------------------------------------------ running trials
    def _run_batch(self, trials: Sequence[Trial]) -> list[TrialResult]:
        """Run ``trials`` through the executor (concurrently where it can); results in trial order.

        Trials found in the cache (``--cache DIR``) are read back, not run; each finished trial is
        stored there as soon as it finishes, so a search killed mid-batch keeps what finished."""
        prepared = [self._prepare(t) for t in trials]
        results: list[TrialResult | None] = [hit for _, _, hit, _ in prepared]
        todo = [i for i, (_, _, hit, _) in enumerate(prepared) if hit is None]
        jobs = [prepared[i][3] for i in todo]

        if jobs:
            ex = self.executor
            board = self._board()
            on_board = board.submit([job.name for job in jobs], [job.trains() for job in jobs])

            def done(j: int, outcome: TrialOutcome) -> None:
                trial, key, _, _ = prepared[todo[j]]
                results[todo[j]] = self._finish(trial, key, outcome)
                board.finish(on_board[j], outcome.time_s)

            fn = (partial(run_trial, compiler=self.compiler, runtime=self.runtime, progress=self._trial_progress)
                  if ex.in_process else partial(run_trial, compiler_class=type(self.compiler)))
            ex.map(fn, jobs, [ex.resources(job.trains(), len(jobs)) for job in jobs], done)
        return [self._record(r) for r in results]

    def _board(self) -> TrialBoard:
        """The search's one progress display over its trials (created with the first batch)."""
        if self.board is None:
            self.board = TrialBoard(self._progress, workers=self.executor.workers if self.executor else 1)
        return self.board

    def _trial_progress(self, what: str, done: int, total: int) -> None:
        """Progress of a trial running in this process: shown as is, and its epochs on the board."""
        if self._progress:
            self._progress(what, done, total)
        if what.endswith(": epochs") and self.board is not None:
            self.board.epoch(done, total)

    def _prepare(self, trial: Trial) -> tuple[Trial, str | None, TrialResult | None, TrialJob | None]:
        """(trial, its cache key, its cached result or None, the job that builds it or None)."""
        parent = self._result_of(trial.parent) if trial.parent is not None else self.input
        teacher = self._result_of(trial.teacher) if trial.teacher is not None else None
        key = None
        if self._base_key is not None:
            key = cache.trial_key(self._base_key, parent.key, teacher.key if teacher else None,
                                  [{"name": p.name, "args": p.args} for p in trial.passes]
                                  + ([] if trial.evaluate else [{"evaluate": False}]))
            hit = cache.lookup_trial(self.options.cache_root(), key)
            if hit is not None:
                return trial, key, self._reused(trial, key, *hit), None
        model = parent.ir
        if not self.executor.in_process:  # it pickles: without the cached dependency graph
            model = copy.copy(model)
            model.invalidate()
        return trial, key, None, TrialJob(trial.name, model, list(trial.passes), self.options,
                                          teacher.ir.module if teacher else None,
                                          teacher.val if teacher else None, self._with_test, trial.evaluate)

    def _finish(self, trial: Trial, key: str | None, outcome: TrialOutcome) -> TrialResult:
        ir, val, test, facts = outcome.ir, outcome.val, outcome.test, outcome.facts
        result = TrialResult(trial, val, test, facts, ir, size_bytes=outcome.size_bytes, macs=outcome.macs, key=key,
                             time_s=round(outcome.time_s, 1), worker=outcome.worker)
        if key is not None:
            ir.invalidate()  # the dependency graph is a cache of the module, not part of it
            cache.store_trial(self.options.cache_root(), key, ir, {
                "val": _metrics_dict(val), "test": _metrics_dict(test), "facts": facts,
                "size_bytes": result.size_bytes, "macs": result.macs, "time_s": round(outcome.time_s, 1),
                "worker": outcome.worker})
        return result

    def _record(self, result: TrialResult) -> TrialResult:
        self.results.append(result)
        self._by_trial[id(result.trial)] = result
        cached = " (from the cache)" if result.reused else ""
        if result.val is None:
            log.info("budget: %s built (%s MACs, not evaluated)%s", result.trial.name, result.macs, cached)
        else:
            log.info("budget: %s val %.4f (%+.2f pt)%s", result.trial.name, result.val.value, -self.drop(result),
                     cached)
        return result

    @staticmethod
    def _reused(trial: Trial, key: str, ir: ModelIR, stored: dict) -> TrialResult:
        """A trial read back from the cache: its model and measurements as stored, nothing rebuilt."""
        return TrialResult(trial, _metrics(stored["val"]) if stored["val"] else None,
                           _metrics(stored["test"]) if stored["test"] else None,
                           stored["facts"], ir, size_bytes=stored["size_bytes"], macs=stored["macs"], key=key,
                           reused=True, time_s=stored.get("time_s"), worker=stored.get("worker", ""))

    def _result_of(self, trial: Trial) -> TrialResult:
        if id(trial) not in self._by_trial:
            raise UsageError(f"search strategy '{self.strategy.name}': trial '{trial.name}' is used as a parent "
                             f"or teacher before it ran")
        return self._by_trial[id(trial)]

    def _measure(self, ir: ModelIR, model: bytes) -> tuple[Metrics, Metrics | None]:
        """Val (and test, where the data has it) metrics of ``model``, the ONNX of ``ir``."""
        evaluate = self.compiler.evaluator(ir, self.options, self.runtime)
        return evaluate(model, "val"), evaluate(model, "test") if self._with_test else None

    # ------------------------------------------------------------------ the search
    def search(self, model: Any) -> tuple[ModelIR, Report]:
        """Measure ``model``, let the strategy search, verify its choice; return (chosen IR, report)."""
        opts = self.options
        check_readable({"--data": opts.data, "--calib": opts.calib,
                        # a model YAML may be a name the frontend resolves (yolov8n.yaml); workers get the
                        # loaded model, not its path
                        "the model": model if isinstance(model, (str, os.PathLike))
                        and not str(model).endswith((".yaml", ".yml")) else None})
        if is_remote(opts.executor):
            log.warning("--executor %s: --data, --calib and the model must be readable at the same paths on "
                        "every node of the Ray cluster", opts.executor)
        own = self.executor is None
        if own:
            self.executor = make_executor(opts.executor, opts.workers)
        try:
            return self._search(model)
        finally:
            if own:
                self.executor.close()

    def _search(self, model: Any) -> tuple[ModelIR, Report]:
        t0 = time.perf_counter()
        ir = model if isinstance(model, ModelIR) else \
            self.compiler.load(model, self.options.imgsz, self.options.trust_model)
        self.progress("measuring the input model", 0, 1)
        onnx_model = lowering.onnx_bytes(ir, self.options.opset)
        val, test = self._measure(ir, onnx_model)
        self.input = TrialResult(Trial("input", candidate=False), val, test, [], ir.snapshot(),
                                 size_bytes=len(onnx_model), macs=onnxgraph.macs(onnx.load_from_string(onnx_model)))
        self._base_key = self._trials_key(model)
        self._by_trial[id(self.input.trial)] = self.input
        chosen = self.strategy.search(self)
        if chosen is not None and (not chosen.trial.candidate or self.drop(chosen) > self.budget + 1e-9):
            log.warning("search strategy '%s' chose '%s', which is not a candidate within the budget; refused",
                        self.strategy.name, chosen.trial.name)
            chosen = None
        self.progress("measuring every candidate", 1, 1)
        report = self._report(chosen, time.perf_counter() - t0)
        if chosen is None:
            tried = [r for r in self.results if r.trial.candidate] or [r for r in self.results if r.val is not None]
            if not tried:
                raise BudgetNotMet(f"no model within --max-drop {self.budget} pt: search strategy "
                                   f"'{self.strategy.name}' ran no candidate", report)
            best = max(tried, key=lambda r: r.val.value)
            raise BudgetNotMet(f"no model within --max-drop {self.budget} pt: the best candidate, "
                               f"'{best.trial.name}', drops {self.drop(best):.2f} pt of {best.val.primary} on val "
                               f"({self.drop(best) - self.budget:.2f} pt over budget)", report)
        return chosen.ir, report

    def _trials_key(self, model: Any) -> str | None:
        """The key every trial of this search builds on, or None when trials are not cached: only with
        ``--cache DIR`` and a model given as a path. It hashes what decides a trial's result (model and
        data bytes, the options that shape models and metrics, library and plugin versions), not the
        budget itself, so a search with another ``--max-drop`` reuses the trials they share."""
        if self.options.cache_dir is None or not isinstance(model, (str, os.PathLike)):
            return None
        shaping = replace(self.options, max_drop=None, max_macs=None, search=None, latency_runs=0, latency_turn=1,
                          threads=0, batch=1, eval_split="val", executor=None, workers=None)
        return cache.compile_key(model, [], shaping, ".trial", getattr(self.compiler.pm, "versions", {}))

    def _report(self, chosen: TrialResult | None, wall: float) -> Report:
        """One stage per result, all timed round-robin on the target's runtime."""
        base = self.input
        ir = base.ir
        metric = base.val.primary
        report = Report(model=ir.source, task=ir.task, imgsz=ir.input.imgsz,
                        plan=[{"step": "budget", "max_drop": self.budget, "search": self.strategy.name,
                               "passes": chosen.trial.spec() if chosen else []}])
        results = [base, *self.results]
        records = {}
        for r in results:
            changes: dict[str, Any] = {"steps": r.facts} if r.facts else {}
            if r.test is not None:
                changes["test"] = {metric: round(r.test.value, 4)}
            rec = StageRecord(name=r.trial.name, stage=r.ir.stage, params=r.ir.param_count(),
                              origin="input" if r is base else BUDGET_ORIGIN, modified=r is not base,
                              changes=changes, metrics={metric: round(r.val.value, 4)} if r.val is not None else {})
            rec.onnx = lowering.onnx_bytes(r.ir, self.options.opset, self.options.dynamic_batch)
            first_prune = next((s["changes"] for s in r.facts if "analysis" in s["changes"]), None)
            if first_prune is not None and not any("analysis" in x.changes for x in report.stages):
                rec.changes = {**rec.changes, "analysis": first_prune["analysis"]}  # the sensitivity chart
            records[id(r)] = rec
            report.stages.append(rec)
        report.finalize(self.runtime, max(self.options.latency_runs, 1), self.options.threads,
                        splits=ir.meta.get(OUTPUT_SPLITS), batch=self.options.batch,
                        cache_root=self.options.cache_root(), turn=self.options.latency_turn)
        report.accuracy = {"data": str(self.options.data), "split": "val", "metric": metric}
        for r in results:
            rec = records[id(r)]
            r.latency_ms, r.size_bytes, r.macs = rec.latency_ms, rec.size_bytes, rec.macs
        summary: dict[str, Any] = {
            "max_drop": self.budget, "metric": metric, "search": self.strategy.name, "met": chosen is not None,
            "baseline": {"val": round(base.val.value, 4), "test": _value(base.test)},
            "candidates": [{"name": r.trial.name, "passes": r.trial.spec(), "val": _value(r.val),
                            "test": _value(r.test), "drop_pts": round(self.drop(r), 3) if r.val is not None else None,
                            "drop_se": self.drop_se(r) if r is not base else None,
                            "within": r.val is not None and self.drop(r) <= self.budget + 1e-9, "reused": r.reused,
                            "worker": r.worker, "wall_s": r.time_s, "stopped": _stopped(r.facts),
                            "latency_ms": r.latency_ms, "macs": r.macs, "size_bytes": r.size_bytes}
                           for r in results],
            "executor": self.executor.name if self.executor else "local",
            "workers": self.executor.workers if self.executor else 1,
            "wall_s": round(wall, 1)}
        if chosen is not None:
            final = {"name": chosen.trial.name, "passes": chosen.trial.spec(), "val": round(chosen.val.value, 4),
                     "test": _value(chosen.test), "drop_pts_val": round(self.drop(chosen), 3),
                     "drop_se_val": self.drop_se(chosen),
                     "drop_pts_test": (round((base.test.value - chosen.test.value) * 100, 4)
                                       if chosen.test is not None and base.test is not None else None),
                     "speedup_vs_input": _ratio(base.latency_ms, chosen.latency_ms),
                     "macs_ratio": _ratio(chosen.macs, base.macs)}
            for r in self.results:
                if r.trial.compare_as:
                    final.setdefault(f"speedup_vs_{r.trial.compare_as}", _ratio(r.latency_ms, chosen.latency_ms))
            summary["final"] = final
        report.budget = summary
        return report


def _metrics_dict(m: Metrics | None) -> dict | None:
    return None if m is None else {"primary": m.primary, "values": dict(m.values), "replicates": list(m.replicates)}


def _stopped(facts: list[dict]) -> str | None:
    """Why the trial's last training pass stopped (``epochs=auto``: "recovered" before its most epochs,
    "no improvement (patience)", "max_epochs"; "epochs": a fixed count), None when nothing trained."""
    reasons = [f["changes"]["stopped"] for f in facts if isinstance(f.get("changes"), dict) and "stopped" in f["changes"]]
    return reasons[-1] if reasons else None


def _metrics(stored: dict) -> Metrics:
    """``Metrics`` as ``_metrics_dict`` stored them (entries written before replicates were kept have none)."""
    return Metrics(stored["primary"], stored["values"], tuple(stored.get("replicates") or ()))


def _value(m: Metrics | None) -> float | None:
    return None if m is None else round(m.value, 4)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None
