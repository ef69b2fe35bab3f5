"""The accuracy budget (``--max-drop PTS``): the fastest model whose val metric stays within PTS points.

The search climbs a ladder of MAC reductions, each step building on the last accepted model:

1. measure the input model on val (and test, when the data has one);
2. prune to the next MAC target with per-group ratios from the sensitivity analysis (head included),
   then distil from the input model until the val metric is back within the pruning share of the
   budget (``epochs=auto``); accept the step if it is, stop climbing at the first step that is not;
3. quantize the last accepted model with INT8 mixed precision for what is left of the budget;
4. verify: measure the final model on val, and on test for the report. If it is over budget, the
   next milder accepted model is quantized instead; if none fits, the search refuses (exit 2) and
   names the best candidate and how far it is from the budget.

Every candidate goes into the report (val, test, latency on the target's runtime, MACs, size), with
a Pareto plot of accuracy against latency. Choices are made on val only; test is reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import lowering
from .errors import UsageError
from .ir import ModelIR
from .report import BUDGET_ORIGIN, Report, StageRecord

log = logging.getLogger(__name__)

#: Cumulative fractions of the input's MACs removed, tried in order (each step builds on the last).
LADDER = (0.3, 0.45, 0.55, 0.65)
#: The share of the budget kept for INT8 (its measured cost on the digits detector is 0.3-0.4 pt).
INT8_SHARE = 0.4
MAX_EPOCHS = 30
PATIENCE = 5


class BudgetNotMet(UsageError):
    """No candidate stays within the budget (the CLI prints it as one line and exits 2); ``report``
    holds every candidate measured."""

    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


@dataclass
class Candidate:
    """One model the search built and measured."""

    name: str
    passes: list[str]
    ir: ModelIR | None = field(default=None, repr=False)
    val: float | None = None
    test: float | None = None
    accepted: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    record: StageRecord | None = field(default=None, repr=False)


def ladder_steps(ladder: tuple[float, ...]) -> list[float]:
    """Per-step fractions of the *current* model's MACs that reach the cumulative ``ladder``."""
    steps, kept = [], 1.0
    for target in ladder:
        steps.append(round(1 - (1 - target) / kept, 4))
        kept = 1 - target
    return steps


class BudgetSearch:
    """Runs the search for one ``Compiler`` (see the module docstring)."""

    def __init__(self, compiler, opts, progress: Callable[[str, int, int], None] | None = None,
                 ladder: tuple[float, ...] | None = None, max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE):
        if opts.max_drop is None:
            raise UsageError("the budget search needs --max-drop PTS")
        if not opts.data:
            raise UsageError("--max-drop needs --data DATA.yaml: the budget is measured on its val split")
        if not opts.calib:
            raise UsageError("--max-drop needs --calib IMAGES_DIR (INT8 calibration and the sensitivity analysis)")
        self.compiler, self.opts, self.progress = compiler, opts, progress
        ladder = tuple(LADDER if ladder is None else ladder)
        self.ladder = tuple(m for m in ladder if opts.max_macs is None or m <= opts.max_macs + 1e-9)
        self.max_epochs, self.patience = max_epochs, patience
        self.target, self.runtime = compiler.target(opts.target)

    # -------------------------------------------------------------------------------- helpers
    def _apply(self, ir: ModelIR, passes: list[str]) -> list[dict]:
        changes: list[dict] = []
        self.compiler.apply(ir, passes, self.opts, self.progress, on_pass=lambda step, result, dt: changes.append(
            {"pass": step.pass_.name, "changes": result.changes, "time_s": round(dt, 2)}))
        return changes

    def _metric(self, ir: ModelIR, split: str) -> float:
        evaluate = self.compiler.evaluator(ir, self.opts.merged({"eval_split": split}), self.runtime)
        values = evaluate(lowering.onnx_bytes(ir, self.opts.opset))
        return float(next(iter(values.values())))

    def _has_test(self) -> bool:
        import yaml

        try:
            data = yaml.safe_load(Path(self.opts.data).read_text()) if Path(self.opts.data).is_file() else {}
        except (OSError, yaml.YAMLError):
            return False
        return isinstance(data, dict) and bool(data.get("test")) or (Path(self.opts.data) / "test").is_dir()

    def _tell(self, what: str, i: int, n: int) -> None:
        log.info("budget: %s (%d/%d)", what, i, n)
        if self.progress:
            self.progress(f"budget: {what}", i, n)

    # -------------------------------------------------------------------------------- search
    def search(self, model: Any) -> tuple[ModelIR, Report]:
        t0 = time.perf_counter()
        budget = self.opts.max_drop
        base_ir = model if isinstance(model, ModelIR) else \
            self.compiler.load(model, self.opts.imgsz, self.opts.trust_model)
        with_test = self._has_test()
        n_steps = len(self.ladder) + 3
        self._tell("measuring the input model", 1, n_steps)
        base = Candidate("input", [], base_ir.snapshot(), val=self._metric(base_ir, "val"), accepted=True)
        base.test = self._metric(base_ir, "test") if with_test else None
        metric_name = self._metric_name(base_ir)
        int8_only = Candidate("int8 alone", ["int8"], base_ir.snapshot())
        self._apply(int8_only.ir, ["int8"])
        int8_only.val = self._metric(int8_only.ir, "val")
        int8_only.test = self._metric(int8_only.ir, "test") if with_test else None
        int8_only.accepted = (base.val - int8_only.val) * 100 <= budget  # for reference; not chosen from here
        prune_budget = budget * (1 - INT8_SHARE)
        candidates = [base, int8_only]
        accepted = [base]
        current = base
        for i, (cumulative, step) in enumerate(zip(self.ladder, ladder_steps(self.ladder)), 1):
            self._tell(f"candidate {i}/{len(self.ladder)}: -{cumulative:.0%} MACs", i + 1, n_steps)
            ir = current.ir.snapshot()
            if "pre_prune" not in ir.analyses:
                ir.analyses["pre_prune"] = base_ir.module  # the teacher: the input model
            ir.analyses["pre_prune_metrics"] = {metric_name: base.val}
            passes = [f"prune:macs={step},protect_head=false",
                      f"distill:epochs=auto,within={prune_budget:.4f},max_epochs={self.max_epochs},"
                      f"patience={self.patience}"]
            facts = self._apply(ir, passes)
            cand = Candidate(f"-{cumulative:.0%} MACs + distill", current.passes + passes, ir, facts={"steps": facts})
            cand.val = self._metric(ir, "val")
            cand.test = self._metric(ir, "test") if with_test else None
            cand.accepted = (base.val - cand.val) * 100 <= prune_budget
            candidates.append(cand)
            log.info("budget: %s val %.4f (%s)", cand.name, cand.val, "within" if cand.accepted else "over")
            if not cand.accepted:
                break
            accepted.append(cand)
            current = cand
        final = None
        for j, start in enumerate(reversed(accepted), 1):  # the most aggressive first
            left = budget - (base.val - start.val) * 100
            if left <= 0:
                continue
            self._tell(f"int8 with mixed precision on '{start.name}'", len(self.ladder) + 2, n_steps)
            ir = start.ir.snapshot()
            passes = [f"int8:max_drop={left:.4f}"]
            facts = self._apply(ir, passes)
            cand = Candidate(f"{start.name} + int8" if start is not base else "int8 (mixed precision)",
                             start.passes + passes, ir, facts={"steps": facts})
            cand.val = self._metric(ir, "val")
            cand.test = self._metric(ir, "test") if with_test else None
            cand.accepted = (base.val - cand.val) * 100 <= budget
            candidates.append(cand)
            if cand.accepted:
                final = cand
                break
        self._tell("measuring every candidate", n_steps, n_steps)
        report = self._report(base_ir, candidates, final, base, budget, metric_name, time.perf_counter() - t0)
        if final is None:
            best = max((c for c in candidates if c is not base), key=lambda c: c.val)
            raise BudgetNotMet(f"no model within --max-drop {budget} pt: the best candidate, '{best.name}', "
                               f"drops {(base.val - best.val) * 100:.2f} pt on val "
                               f"({(base.val - best.val) * 100 - budget:.2f} pt over budget)", report)
        return final.ir, report

    @staticmethod
    def _metric_name(ir: ModelIR) -> str:
        return "top1" if ir.task == "classify" else "mAP50-95"

    def _report(self, base_ir: ModelIR, candidates: list[Candidate], final: Candidate | None, base: Candidate,
                budget: float, metric_name: str, wall: float) -> Report:
        """One stage per candidate, all timed round-robin on the target's runtime."""
        report = Report(model=base_ir.source, task=base_ir.task, imgsz=base_ir.input.imgsz,
                        plan=[{"step": "budget", "max_drop": budget, "passes": final.passes if final else []}])
        for c in candidates:
            rec = StageRecord(name=c.name, stage=c.ir.stage, params=c.ir.param_count(),
                              origin="input" if c is base else BUDGET_ORIGIN, modified=c is not base,
                              changes=c.facts, metrics={metric_name: round(c.val, 4)})
            if c.test is not None:
                rec.changes = {**c.facts, "test": {metric_name: round(c.test, 4)}}
            rec.onnx = lowering.onnx_bytes(c.ir, self.opts.opset, self.opts.dynamic_batch)
            first_prune = next((s["changes"] for s in c.facts.get("steps", []) if "analysis" in s["changes"]), None)
            if first_prune is not None and not any("analysis" in r.changes for r in report.stages):
                rec.changes = {**rec.changes, "analysis": first_prune["analysis"]}  # the sensitivity chart
            c.record = rec
            report.stages.append(rec)
        report.finalize(self.runtime, max(self.opts.latency_runs, 1), self.opts.threads,
                        splits=base_ir.meta.get("output_splits"), batch=self.opts.batch,
                        cache_root=self.opts.cache_root())
        report.accuracy = {"data": str(self.opts.data), "split": "val"}  # test: in each stage's changes
        int8_only = candidates[1].record
        summary = {"max_drop": budget, "metric": metric_name, "met": final is not None,
                   "baseline": {"val": round(base.val, 4), "test": _r(base.test)},
                   "candidates": [{"name": c.name, "passes": c.passes, "val": round(c.val, 4), "test": _r(c.test),
                                   "drop_pts": round((base.val - c.val) * 100, 3), "within": c.accepted,
                                   "latency_ms": c.record.latency_ms, "macs": c.record.macs,
                                   "size_bytes": c.record.size_bytes} for c in candidates],
                   "wall_s": round(wall, 1)}
        if final is not None:
            rec = final.record
            summary["final"] = {"name": final.name, "passes": final.passes, "val": round(final.val, 4),
                                "test": _r(final.test), "drop_pts_val": round((base.val - final.val) * 100, 3),
                                "drop_pts_test": _r((base.test - final.test) * 100) if final.test is not None else None,
                                "speedup_vs_input": _ratio(base.record.latency_ms, rec.latency_ms),
                                "speedup_vs_int8": _ratio(int8_only.latency_ms, rec.latency_ms),
                                "macs_ratio": _ratio(rec.macs, base.record.macs)}
        report.budget = summary
        return report


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None
