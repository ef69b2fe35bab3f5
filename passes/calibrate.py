"""``calibrate``: activation ranges from onnxruntime's calibrators, cached by content hash.

The result is the IR analysis ``calibration``: ``{"method", "activations": {tensor: [min, max]},
"weights": {initializer: [per-channel max |w|]}, "n", "key"}`` (``method=auto`` adds ``"percentile"``
of the chosen candidate and ``"auto"``: every candidate's fidelity and task agreement, see ``calib_select``; bias
correction, when kept, adds ``"bias_shifts": {layer: [per-channel drift]}``, which ``qdq`` subtracts
from the biases, see ``bias_correction``). With ``refit=true``, auto's chosen ranges (and kept bias
shifts) are recomputed on the same ``n`` images a fixed ``method=`` reads, so auto's model is that
method's (``n`` counts those images; the candidates were scored from the ones left after the hold-out).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from yolocc.compiler.analyses import CALIBRATION, OUTPUT_SPLITS
from yolocc.compiler.cache import cached_json, content_digest
from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.measure import splits_key
from yolocc.compiler.metrics import drop_se
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult

from . import bias_correction, calib_checks, calib_select
from .calib_collect import EXTREMES, Subset, collect, collect_subsets
from .calib_data import DEFAULT_N, fingerprint, load_calibration, load_split

log = logging.getLogger(__name__)

METHODS = ("auto", "minmax", "mean-minmax", "entropy", "percentile", "distribution")


def cache_dir(ctx: PassContext) -> Path:
    """Where calibration results are cached: ``calibration/`` under the run's content cache."""
    return ctx.options.cache_root() / "calibration"


def _key(*parts: bytes | str) -> str:
    return hashlib.sha256(b"|".join(p.encode() if isinstance(p, str) else p for p in parts)).hexdigest()


class Calibrate(Pass):
    """Collect activation ranges with onnxruntime's calibrators (cached by content hash)."""

    name = "calibrate"
    stage = "onnx"
    provides = (CALIBRATION,)
    rejects = {"fp16": "int8 quantizes the float32 graph: choose one of int8 and fp16 (or put int8 first)",
               "quantized": "quantize once (drop the second int8/qdq)"}
    params = (
        Param("method", "choice", "auto", "range estimator (mean-minmax: each image's own min and max averaged "
              "over the images, NNCF's default); auto: minmax, mean-minmax, entropy and percentiles 99.9/99.99/"
              "99.999 each scored on held-out calibration images by task agreement with the float model (else "
              "output fidelity), the best kept",
              choices=METHODS),
        Param("n", "int", None, f"calibration images (default: --calib-n, else {DEFAULT_N})", low=1, high=100000),
        Param("percentile", "float", 99.999, "percentile kept by method=percentile", low=90.0, high=100.0),
        Param("bias_correction", "bool|auto", "auto", "subtract each quantized convolution's mean output drift "
              "(measured on the range images) from its bias; auto: with method=auto, kept only if it scores better "
              "on the held-out images (task agreement, then fidelity; cross-fitted like the methods) (a fixed "
              "method: off); true: always"),
        Param("confirm", "bool|auto", "auto", "method=auto: measure the best two methods on the val split of "
              "--data and keep the better; auto: with --data, when the held-out task agreement cannot tell them "
              "apart (a gap within its paired SE); true: always"),
        Param("folds", "int", 4, "method=auto, when the held-out images come out of the n calibration images (a "
              "source without more): cross-fitting, each of this many folds scored with ranges from the other "
              "images, so every image is scored once, and the chosen method refit on all n; 1: one split, "
              "ranges from three quarters", low=1, high=8),
        Param("refit", "bool", False, "method=auto: once chosen, recompute the method's ranges (and kept bias "
              "correction) on all the calibration images, as the fixed method= does, so auto's model is that "
              "method's; false: the ranges of the images left after the hold-out (cross-fitting, folds > 1, always "
              "refits)"),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        source = ctx.option("calib")
        if not source:
            raise UsageError("int8/calibrate needs calibration data: pass --calib IMAGES_DIR "
                             "(or a data YAML, or a .npy/.npz of preprocessed inputs)")
        if self.args["confirm"] is True and self.args["method"] != "auto":
            raise UsageError("calibrate:confirm=true confirms method=auto's choice on val; a fixed method= "
                             "has nothing to confirm (drop confirm=true or the method)")
        if self.args["confirm"] is True and not ctx.option("data"):
            raise UsageError("calibrate:confirm=true measures the val metric: pass --data DATA.yaml")
        n = int(self.args["n"] or ctx.option("calib_n") or DEFAULT_N)
        frontend = ctx.frontend
        model_bytes = ir.onnx_model.SerializeToString()
        preprocess = lambda image: frontend.preprocess(ir, image)  # noqa: E731
        progress = ctx.progress_for("calibration images")
        if self.args["method"] == "auto":
            data, held = load_split(str(source), n, calib_select.HOLDOUT, ir.input.shape, preprocess, progress)
            # Cross-fitting when the held-out images came out of the n (a source without more images).
            # (at most one fold per image: a tiny source is scored leave-one-out)
            total = len(data) + len(held)
            folds = min(int(self.args["folds"]), total) if len(held) and total <= n else 1
            # refit: the images a fixed method= reads (the range images themselves when the source has more)
            full = load_calibration(str(source), n, ir.input.shape, preprocess) \
                if self.args["refit"] or folds > 1 else data
            calibration, facts, diagnostics = self._auto(ir, ctx, model_bytes, data, held, full, folds)
        else:
            data = load_calibration(str(source), n, ir.input.shape, preprocess, progress)
            ranges_args = {k: v for k, v in self.args.items()
                           if k not in ("bias_correction", "confirm", "folds", "refit")}
            key = _key(hashlib.sha256(model_bytes).digest(), fingerprint(data), json.dumps(ranges_args, sort_keys=True),
                       b"v1")
            cached, hit = cached_json(cache_dir(ctx) / f"{key}.json", lambda: {
                "method": self.args["method"], "n": int(len(data)),
                "activations": collect(model_bytes, ir.input.name, data, self.args["method"],
                                       (self.args["percentile"],), ctx.progress_for("calibrating"))[0]},
                "calibration")
            calibration = {**cached, "key": key}
            facts = {"method": cached["method"], "images": cached["n"], "tensors": len(cached["activations"]),
                     "cache": "hit" if hit else "miss"}
            diagnostics = [d for d in [calib_checks.size_problem(self.args["method"], cached["n"])] if d]
            if self.args["bias_correction"] is True:  # forced: measured on the range images themselves
                build, _ = calib_select.qdq_builder(ir, ctx, "bias_correction")
                bias = self._bias_correction(ir, ctx, build, [(calibration["activations"], data, data[:0])], key)
                calibration.update(_bias_analysis(bias))
                facts["bias_correction"] = _bias_facts(bias)
                facts["note"] = bias_note(bias)
        bad = [t for t, (lo, hi) in calibration["activations"].items() if not (np.isfinite(lo) and np.isfinite(hi))]
        if bad:
            raise PassError(f"calibration produced NaN/Inf ranges for {len(bad)} tensors (first: '{bad[0]}'); "
                            f"check the calibration inputs")
        for line in diagnostics:
            log.warning("%s", line)
        ir.analyses[CALIBRATION] = {**calibration, "weights": _weight_ranges(ir.onnx_model)}
        return PassResult(False, facts, diagnostics)

    def _auto(self, ir: ModelIR, ctx: PassContext, model_bytes: bytes, data: np.ndarray, held: np.ndarray,
              full: np.ndarray, folds: int = 1) -> tuple[dict, dict, list[str]]:
        """``method=auto``: every candidate's ranges on ``data``, scored on ``held``, the best refit on
        ``full`` (the images a fixed method reads; all (N, C, H, W)). With ``folds`` > 1 (cross-fitting;
        ``full`` is then all the calibration images and ``data``/``held`` are not used): ``full`` is cut
        into that many interleaved folds, every candidate's ranges come from the images outside each fold
        and are scored on it, so every image is scored once, and the best is refit on ``full``; bias
        correction and the val confirmation use the first fold's ranges. Returns (the calibration analysis
        of the best, report facts, diagnostics)."""
        if len(held) == 0:
            raise UsageError("calibrate:method=auto scores each method on held-out images, and the calibration "
                             "source has a single sample: pass more images, or a fixed method=")
        build, placement = calib_select.qdq_builder(ir, ctx)  # refuses a target without integer rules first
        model_hash = hashlib.sha256(model_bytes).hexdigest()
        t0 = time.perf_counter()
        if folds > 1:
            held_out = calib_select.fold_indices(len(full), folds)
            splits = [(np.delete(full, idx, 0), full[idx]) for idx in held_out]
            # One pass over the images gives each fold's ranges (from the images outside it), the first
            # fold's held-out minmax (the domain check) and the extremes of all of them (a refit's).
            images = full
            range_sets = [np.setdiff1d(np.arange(len(full)), idx) for idx in held_out]
            held_set, refit_set = held_out[0], np.arange(len(full))
        else:
            splits = [(data, held)]
            images = [*data, *held]
            range_sets, held_set = [np.arange(len(data))], np.arange(len(data), len(data) + len(held))
            refit_set = None  # a refit reads other images (load_calibration's n)
        data, held = splits[0]
        ranges_key = _key(model_hash, *(fingerprint(d) + fingerprint(h) for d, h in splits),
                          json.dumps(calib_select.CANDIDATES), "auto-ranges-v2")
        found, ranges_hit = cached_json(cache_dir(ctx) / f"{ranges_key}.json",
                                        lambda: _collect_candidates(model_bytes, ir.input.name, images, range_sets,
                                                                    held_set, refit_set, ctx),
                                        "calibration")
        per_fold = found["folds"]
        candidates = per_fold[0]
        held_print = fingerprint(held) if folds == 1 else _key(*(fingerprint(h) for _, h in splits))
        t1 = time.perf_counter()
        # The output's named parts are part of the key: fidelity weighs each one (a choice scored before a
        # task's part was named would not be reused).
        # ... and so are the target's quantization rules (its scheme and Placement dataclasses' reprs): a
        # target whose placement changed builds other Q/DQ models, whose choice must be made again.
        choice_key = _key(ranges_key, held_print, ctx.target.name, json.dumps(placement, sort_keys=True),
                          repr((ctx.target.scheme, ctx.target.placement)),
                          json.dumps(ctx.runtime.describe(), sort_keys=True),
                          splits_key(ir.meta.get(OUTPUT_SPLITS)), ctx.frontend.name, "auto-choice-v2")

        def choose() -> dict:
            scores = calib_select.score_folds(ir, ctx, [(c["ranges"], h) for c, (_, h) in zip(per_fold, splits)],
                                              build, ctx.progress_for("calibration: scoring methods"))
            return {**calib_select.choose(scores),
                    "domain": calib_checks.domain(candidates["ranges"]["minmax"], found["held_minmax"])}

        choice, choice_hit = cached_json(cache_dir(ctx) / f"{choice_key}.json", choose, "calibration choice")
        t2 = time.perf_counter()
        scores = choice["fidelity"]
        confirm = self._confirm(ir, ctx, choice, candidates["ranges"], build, choice_key)
        chosen = confirm["chosen"] if confirm and "chosen" in confirm else choice["chosen"]
        t3 = time.perf_counter()
        bias = None
        if self.args["bias_correction"] is not False:
            bias = self._bias_correction(ir, ctx, build, [(c["ranges"][chosen], d, h) for c, (d, h)
                                                          in zip(per_fold, splits)], _key(choice_key, chosen))
        t4 = time.perf_counter()
        method, pct = calib_select.parse(chosen)
        result = {"activations": candidates["ranges"][chosen], **_bias_analysis(bias)}
        key, refit_hit, refit = choice_key, True, folds > 1 or fingerprint(full) != fingerprint(data)
        scored = sum(len(h) for _, h in splits)
        if refit:
            kept = bool(bias and bias["kept"])
            result, key, refit_hit = self._refit(ir, ctx, model_bytes, build, chosen, full, _key(key, chosen), kept,
                                                 found.get("refit_extremes", {}).get(chosen))
        images = int(len(full)) if refit else candidates["n"]
        line = "; ".join(x for x in [calib_select.summary(choice, scored, folds), confirm_note(confirm),
                                     bias_note(bias), refit_note(refit, images, bias)] if x)
        ctx.log.info("%s", line)
        diagnostics = [d for d in [calib_checks.size_problem(method, images, scored),
                                   calib_checks.domain_problem(choice["domain"])] if d]
        failed = {k: v for c in per_fold for k, v in c["failed"].items()}
        if failed:
            diagnostics.append(f"calibration: auto left out {', '.join(failed)}: {next(iter(failed.values()))}")
        agreement = {k: choice[k] for k in ("metric", "agreement", "agreement_se", "tied") if k in choice}
        calibration = {"method": method, "percentile": pct, "n": images, **result, "key": key,
                       "auto": {"chosen": chosen, "fidelity": scores, **agreement}}
        facts = {"method": "auto", "chosen": chosen, "fidelity": {k: round(v, 6) for k, v in scores.items()},
                 **agreement,
                 "images": images, "choice_images": candidates["n"], "held_out_images": int(scored), "folds": folds,
                 "refit": refit,
                 "tensors": len(calibration["activations"]), "domain": choice["domain"],
                 "cache": "hit" if ranges_hit and choice_hit and refit_hit else "miss",
                 "seconds": {"ranges": round(t1 - t0, 2), "scoring": round(t2 - t1, 2)}, "note": line}
        if confirm is not None:
            facts["confirm"] = confirm
            facts["seconds"]["confirm"] = round(t3 - t2, 2)
        if bias is not None:
            facts["bias_correction"] = _bias_facts(bias)
            facts["seconds"]["bias_correction"] = round(t4 - t3, 2)
        if refit:
            facts["seconds"]["refit"] = round(time.perf_counter() - t4, 2)
        return calibration, facts, diagnostics

    def _refit(self, ir: ModelIR, ctx: PassContext, model_bytes: bytes, build: calib_select.Build, chosen: str,
               full: np.ndarray, key: str, bias: bool, known: dict | None = None) -> tuple[dict, str, bool]:
        """The chosen candidate's ranges recomputed on ``full`` (N, C, H, W), exactly as ``method=<chosen>``
        computes them (``known``: those ranges, already collected with the candidates), and with ``bias``
        (bias correction kept) its shifts re-measured on ``full`` with those ranges, as
        ``bias_correction=true`` does: auto's model is then the fixed method's. Returns (the
        analysis entries ``{"activations", "bias_shifts"?}``, their cache key, whether the cache had them);
        ``key``: the choice's."""
        method, pct = calib_select.parse(chosen)
        refit_key = _key(key, fingerprint(full), str(bias), "auto-refit-v1")

        def measure() -> dict:
            ranges = known or collect(model_bytes, ir.input.name, full, method, (pct,),
                                      ctx.progress_for("calibration: refit"))[0]
            shifts = bias_correction.drift(ir.onnx_model, build(ranges), full, ctx.options.threads) if bias else {}
            return {"activations": ranges, **({"bias_shifts": shifts} if shifts else {})}

        entries, hit = cached_json(cache_dir(ctx) / f"{refit_key}.json", measure, "calibration refit")
        return entries, refit_key, hit

    def _confirm(self, ir: ModelIR, ctx: PassContext, choice: dict, ranges: dict,
                 build: calib_select.Build, key: str) -> dict | None:
        """``confirm``: the candidates the held-out images cannot separate (``calib_select.to_confirm``;
        ``confirm=true``: the best two whatever their gap),
        each quantized and measured on the val split of ``--data`` with the frontend's evaluator on the
        target's runtime; returns ``{"split", "metric", "val": {label: value}, "held_out_choice",
        "chosen"}`` (cached by content), ``{"skipped": why}`` when the frontend cannot evaluate or the
        held-out agreement already separates the best two, or None when nothing is confirmed (no
        ``--data``, ``confirm=false``, a single candidate); ``UsageError`` when ``confirm=true`` and it
        cannot evaluate."""
        mode, data = self.args["confirm"], ctx.option("data")
        if mode is False or not data:
            return None
        order = choice["order"]
        if len(order) < 2:
            return None
        top = calib_select.to_confirm(choice) if mode == "auto" else order[:calib_select.CONFIRM_TOP]
        if not top:
            second = order[1]
            gap = 100 * (choice["agreement"][order[0]] - choice["agreement"][second])
            return {"skipped": f"held-out agreement separates them: {second} {gap:.2f} pt below, "
                               f"SE {choice['agreement_se'][second] or 0:.2f}", "separated": True}
        # v2: the val metric is the task's own (mask/pose/OBB mAP50-95), no longer box mAP for every task
        confirm_key = _key(key, content_digest(str(data)), json.dumps(top), "confirm-v3")

        def measure() -> dict:
            val, measured = {}, []
            for label in top:
                metrics = ctx.val_metrics(ir, build(ranges[label]))
                if metrics is None:
                    return {"skipped": f"the {ir.frontend or 'model'}'s frontend cannot evaluate accuracy"}
                val[label] = round(metrics.value, 6)
                measured.append(metrics)
            se = drop_se(*measured[:2]) if len(measured) > 1 else None
            return {"split": "val", "metric": measured[0].primary, "val": val, "val_se": se,
                    "held_out_choice": top[0], "chosen": calib_select.confirmed(val, order, se)}

        result, _ = cached_json(cache_dir(ctx) / f"{confirm_key}.json", measure, "calibration confirmation")
        if "skipped" in result and mode is True:
            raise UsageError(f"calibrate:confirm=true: {result['skipped']}")
        return result

    def _bias_correction(self, ir: ModelIR, ctx: PassContext, build: calib_select.Build,
                         folds: Sequence[tuple[dict, np.ndarray, np.ndarray]], key: str) -> dict:
        """Bias correction measured fold by fold: for each ``(ranges, data, held)`` the Q/DQ model of
        ``ranges`` gets each layer's drift measured on ``data`` (N, C, H, W) and is scored, corrected and
        not, on ``held`` (on ``data`` itself when ``held`` is empty, ``"scored_on"`` says which); the folds'
        outputs are scored together, every held-out image once (cross-fitting: the same folds the method
        was chosen on). Returns ``{"mode", "layers", "kept", "fidelity_before", "fidelity_after",
        ["metric", "agreement_before", "agreement_after",] "scored_on", "images", "scored_images",
        "max_abs_shift", "shifts"}`` (the first fold's shifts), cached by content; ``kept``: always with
        ``bias_correction=true``; with ``auto`` only when it scores better as the methods are ranked: by
        task agreement with the float model (``Frontend.agreement``), then by fidelity."""
        mode = self.args["bias_correction"]
        bias_key = _key(key, *(fingerprint(d) + fingerprint(h) for _, d, h in folds), str(mode),
                        "bias-correction-v2")

        def measure() -> dict:
            plain, fixed, refs, shifts_all = [], [], [], []
            for ranges, data, held in folds:
                base = build(ranges)
                shifts = bias_correction.drift(ir.onnx_model, base, data, ctx.options.threads)
                scored = held if len(held) else data
                refs.append(calib_select.run_all(ctx, ir.onnx_model, scored))
                plain.append(calib_select.run_all(ctx, base, scored))
                fixed.append(calib_select.run_all(ctx, build(ranges, shifts), scored) if shifts else plain[-1])
                shifts_all.append(shifts)
            ref, before, after = (calib_select.stacked(x) for x in (refs, plain, fixed))
            splits = ir.meta.get(OUTPUT_SPLITS, {})
            f0, f1 = calib_select.fidelity(ref, before, splits), calib_select.fidelity(ref, after, splits)
            a0, a1 = ctx.frontend.agreement(ir, ref, before), ctx.frontend.agreement(ir, ref, after)
            better = (a1.value, f1) > (a0.value, f0) if a0 is not None and a1 is not None else f1 > f0
            shifts, (_, data, held) = shifts_all[0], folds[0]
            result = {"mode": mode, "layers": len(shifts), "kept": bool(shifts) and (mode is True or better),
                      "fidelity_before": f0, "fidelity_after": f1,
                      "scored_on": "held-out images" if len(held) else "the range images (nothing held out)",
                      "images": int(len(data)), "scored_images": int(sum(len(h) if len(h) else len(d)
                                                                         for _, d, h in folds)),
                      "max_abs_shift": max((max(abs(v) for v in s) for s in shifts.values() if s), default=0.0),
                      "shifts": shifts}
            if a0 is not None and a1 is not None:
                result.update(metric=a0.primary, agreement_before=a0.value, agreement_after=a1.value)
            return result

        result, hit = cached_json(cache_dir(ctx) / f"{bias_key}.json", measure, "bias correction")
        return {**result, "cache": "hit" if hit else "miss"}


def _bias_analysis(bias: dict | None) -> dict:
    """The ``calibration`` analysis entry that makes ``qdq`` correct the biases (none unless kept)."""
    return {"bias_shifts": bias["shifts"]} if bias and bias["kept"] else {}


def _bias_facts(bias: dict) -> dict:
    """Bias correction's report facts (everything but the shifts themselves)."""
    facts = {k: v for k, v in bias.items() if k != "shifts"}
    for k in ("fidelity_before", "fidelity_after", "agreement_before", "agreement_after"):
        if k in facts:
            facts[k] = round(facts[k], 6)
    facts["max_abs_shift"] = round(facts["max_abs_shift"], 6)
    return facts


def confirm_note(confirm: dict | None) -> str:
    """The confirmation's part of the terminal line: ``confirmed on val (mAP50-95: entropy 0.6071,
    minmax 0.6049)``; empty when nothing was confirmed."""
    if not confirm:
        return ""
    if "skipped" in confirm:
        return f"{'no val confirmation' if confirm.get('separated') else 'not confirmed on val'} ({confirm['skipped']})"
    vals = ", ".join(f"{label} {v:.4f}" for label, v in confirm["val"].items())
    se = f", paired SE {confirm['val_se']:.2f} pt" if confirm.get("val_se") is not None else ""
    verb = "confirmed" if confirm["chosen"] == confirm["held_out_choice"] else f"{confirm['chosen']} chosen"
    return f"{verb} on val ({confirm['metric']}: {vals}{se})"


def refit_note(refit: bool, images: int, bias: dict | None) -> str:
    """The refit's part of the terminal line: ``ranges refit on 128 images``; empty without a refit."""
    if not refit:
        return ""
    return f"ranges{' and bias shifts' if bias and bias['kept'] else ''} refit on {images} images"


def bias_note(bias: dict | None) -> str:
    """Bias correction's part of the terminal line; empty when it did not run."""
    if bias is None:
        return ""
    if not bias["layers"]:
        return "bias correction: no quantized layer with a bias"
    verdict = "kept" if bias["kept"] else "not kept"
    agreement = (f"agreement {bias['agreement_before']:.4f} -> {bias['agreement_after']:.4f}, "
                 if "agreement_before" in bias else "")
    return (f"bias correction of {bias['layers']} layers {verdict} ({agreement}fidelity "
            f"{bias['fidelity_before']:.6f} -> {bias['fidelity_after']:.6f})")


def _collect_candidates(model_bytes: bytes, input_name: str, images, range_sets: list[np.ndarray],
                        held_set: np.ndarray, refit_set: np.ndarray | None, ctx: PassContext) -> dict:
    """Every candidate's ranges on each of ``range_sets`` (indices into ``images``, (C, H, W) arrays),
    the minmax ranges of the held-out images ``held_set`` and, with ``refit_set``, the minmax and
    mean-minmax ranges of those images (a refit's, computed as ``collect`` computes them), from one pass
    over the images (``calib_collect.collect_subsets``): ``{"folds": [{"n", "ranges": {label: {tensor:
    [min, max]}}, "failed": {label: why}}], "held_minmax": {tensor: [min, max]}, "refit_extremes":
    {label: {tensor: [min, max]}}}`` (a histogram calibrator that rejects a fold's data leaves its labels
    out there)."""
    subsets = [Subset(idx, calib_select.CANDIDATES) for idx in range_sets] + [Subset(held_set, ("minmax",))]
    if refit_set is not None:
        subsets.append(Subset(refit_set, EXTREMES))
    results = collect_subsets(model_bytes, input_name, images, subsets, ctx.progress_for("calibrating (auto)"))
    found = {"folds": results[:len(range_sets)], "held_minmax": results[len(range_sets)]["ranges"]["minmax"]}
    if refit_set is not None:
        found["refit_extremes"] = results[-1]["ranges"]
    return found


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
