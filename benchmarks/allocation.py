"""Sensitivity allocation against uniform pruning at equal MACs, and how well the sensitivity proxy
ranks groups against the real metric.

    .venv/bin/python benchmarks/allocation.py --macs 0.4 --epochs 5 --seeds 0 1   # runs/bench/allocation.json
    .venv/bin/python benchmarks/allocation.py --rank 12 --no-train                  # proxy rank correlation only

Allocation: `prune:macs=M,protect_head=false` (per-group ratios from the sensitivity analysis) against
one uniform ratio, found by bisection so that the pruned model has the same MACs (head unprotected
too), each followed by the same `distill:epochs=E` per seed. mAP50-95 on the held-out test split.

Rank correlation: K groups spread over the sensitivity ranking are pruned alone at ratio 0.5
(silenced, as the analysis does), exported, and measured on val; Spearman's rho between the proxy
and the real mAP drop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler import lowering  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.options import CompileOptions  # noqa: E402

DIGITS = ROOT / "examples/digits"


def pruned(compiler, model, passes, opts):
    ir = compiler.load(model)
    changes = []
    compiler.apply(ir, passes, opts, on_pass=lambda s, r, dt: changes.append((s.pass_.name, r.changes)))
    return ir, changes


def macs_of(ir) -> float:
    from yolocc.passes.pruning import total_macs

    return total_macs(ir)


def uniform_ratio_for(compiler, model, target_macs: float, opts) -> float:
    lo, hi = 0.0, 0.9
    for _ in range(10):
        mid = (lo + hi) / 2
        ir, _ = pruned(compiler, model, [f"prune:ratio={mid:.4f},protect_head=false"], opts)
        if macs_of(ir) > target_macs:
            lo = mid
        else:
            hi = mid
    return round((lo + hi) / 2, 4)


def metric(compiler, ir, opts, split):
    _, runtime = compiler.target(opts.target)
    values = compiler.evaluator(ir, opts.merged({"eval_split": split}), runtime)(lowering.onnx_bytes(ir))
    return float(values.values["mAP50-95"])


def rank_correlation(compiler, model, opts, k: int) -> dict:
    """Proxy drop against the real val mAP drop for k groups pruned alone at ratio 0.5."""
    import torch

    from yolocc.passes.pruning import ignored_layers, importance, keep_channels
    from yolocc.plugins import ultralytics_canonical as canonical
    from yolocc.passes.sensitivity import _silence, cached_analysis

    ir, _ = pruned(compiler, model, ["canonicalize"], opts)
    ctx = compiler.context(ir, opts)
    ignored = ignored_layers(ir, ctx, protect_head=False)
    analysis = cached_analysis(ir, ctx, ignored)
    base = metric(compiler, ir, opts, "val")
    ranked = sorted(analysis["groups"], key=lambda g: g["drop"]["0.5"])
    picks = [ranked[round(i * (len(ranked) - 1) / max(k - 1, 1))] for i in range(k)]
    dg = ir.dependency_graph()
    names = {m: n for n, m in ir.module.named_modules()}
    by_root = {names[c.group[0].dep.target.module]: c.group for c in ir.coupling_groups(ignored)}
    imp = importance("l2")
    rows = []
    for g in picks:
        group = by_root[g["root"]]
        root = group[0].dep.target.module
        n = int(dg.get_out_channels(root))
        order = torch.argsort(imp(group).cpu()).tolist()
        sub = dg.get_pruning_group(root, group[0].dep.handler, sorted(order[:n - keep_channels(n, 0.5, 8)]))
        silenced = [(dep.target.module, [int(j) for j in idxs]) for dep, idxs in sub
                    if isinstance(dep.target.module, torch.nn.Module) and dg.is_out_channel_pruning_fn(dep.handler)]
        handles = _silence(silenced)
        # The export merges C2f's two split convs into one (canonical form); the hooks live on the split
        # modules, so the merge is switched off while the silenced model is exported.
        merge, canonical._mergeable = canonical._mergeable, lambda a, b: False
        try:
            real = base - metric(compiler, ir, opts, "val")
        finally:
            canonical._mergeable = merge
            for h in handles:
                h.remove()
        rows.append({"root": g["root"], "proxy": g["drop"]["0.5"], "real_drop_pts": round(real * 100, 3)})
        print(f"  {g['root']:<28} proxy {g['drop']['0.5']:.5f}  real drop {real * 100:+.2f} pt", file=sys.stderr)
    from scipy.stats import spearmanr

    rho = spearmanr([r["proxy"] for r in rows], [r["real_drop_pts"] for r in rows])
    return {"k": k, "ratio": 0.5, "spearman_rho": round(float(rho.statistic), 3),
            "p_value": round(float(rho.pvalue), 4), "groups": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DIGITS / "weights/yolov8n-digits.pt"))
    ap.add_argument("--data", default=str(DIGITS / "data/digits.yaml"))
    ap.add_argument("--calib", default=str(DIGITS / "data/calib/images"))
    ap.add_argument("--macs", type=float, default=0.4)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rank", type=int, default=12, help="groups for the proxy rank correlation (0: skip)")
    ap.add_argument("--no-train", action="store_true", help="only the rank correlation")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/allocation.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    compiler = Compiler()
    opts = CompileOptions(data=args.data, calib=args.calib)
    result: dict = {"model": args.model, "split": "test"}
    if args.rank:
        result["rank_correlation"] = rank_correlation(compiler, args.model, opts, args.rank)
        print(f"proxy vs real val drop, {args.rank} groups: Spearman rho {result['rank_correlation']['spearman_rho']}")
    if not args.no_train:
        alloc_ir, _ = pruned(compiler, args.model, [f"prune:macs={args.macs},protect_head=false"], opts)
        target_macs = macs_of(alloc_ir)
        ratio = uniform_ratio_for(compiler, args.model, target_macs, opts)
        variants = {"sensitivity": f"prune:macs={args.macs},protect_head=false",
                    "uniform": f"prune:ratio={ratio},protect_head=false"}
        result.update(macs_target=args.macs, uniform_ratio=ratio, epochs=args.epochs, seeds=args.seeds, variants={})
        for name, spec in variants.items():
            runs = []
            for seed in args.seeds:
                ir, _ = pruned(compiler, args.model, [spec, f"distill:epochs={args.epochs},seed={seed}"], opts)
                runs.append({"seed": seed, "test": metric(compiler, ir, opts, "test"),
                             "val": metric(compiler, ir, opts, "val"), "macs": macs_of(ir)})
                print(f"  {name:<12} seed {seed}: test {runs[-1]['test']:.4f} val {runs[-1]['val']:.4f} "
                      f"MACs {runs[-1]['macs'] / 1e6:.1f}M", file=sys.stderr)
            tests = [r["test"] for r in runs]
            result["variants"][name] = {"spec": spec, "runs": runs, "test_mean": round(statistics.mean(tests), 4),
                                        "test_std": round(statistics.pstdev(tests), 4)}
            print(f"{name}: {spec}: test mAP50-95 {statistics.mean(tests):.4f} ± {statistics.pstdev(tests):.4f}")
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
