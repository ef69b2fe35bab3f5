"""``prune``: structured channel pruning with torch-pruning, YOLO head protected by default."""

from __future__ import annotations

import torch
import torch.nn as nn

from yolocc.compiler.analyses import CANONICAL, SENSITIVITY, TEACHER
from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.interfaces import HeadParts
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult, keep_teacher
from yolocc.compiler.torchgraph import TORCH_GLOBAL_LOCK, all_params_require_grad, flatten_outputs

from . import channel_choice
from .layer_ratios import load_layer_ratios
from .pruning import (ignored_layers, importance, out_channels, pruner_class, resolve_round_to, total_macs,
                      unprotect_head)
from .sensitivity import cached_analysis


def allocate(groups: list[dict], fraction: float, layer_macs: dict[str, float]) -> tuple[dict[str, float], float]:
    """Per-group ratios that remove about ``fraction`` of the MACs at the least proxy cost.

    Greedy on the marginal cost: each step raises one group to its next measured ratio, choosing the
    step with the smallest increase of the proxy drop per MAC removed. MACs follow the layers: a layer
    keeps (1 - cut of the group on its outputs) x (1 - cut of the group on its inputs) of its MACs.
    Returns (ratios, predicted fraction of the MACs removed)."""
    total = sum(layer_macs.values())
    keep = {name: {"out": 1.0, "in": 1.0} for name in layer_macs}
    level = {g["root"]: 0.0 for g in groups}

    def removed_by(g: dict, ratio: float) -> float:
        """MACs removed if ``g`` went to ``ratio``, with every other group where it is."""
        cut = g["cut"].get(str(ratio), ratio) if ratio else 0.0
        delta = 0.0
        for name, dim in g["members"]:
            if name not in keep:
                continue
            other = keep[name]["in" if dim == "out" else "out"]
            delta += layer_macs[name] * other * (keep[name][dim] - (1 - cut))
        return delta

    removed, need = 0.0, fraction * total
    while removed < need:
        best, best_cost, best_gain = None, float("inf"), 0.0
        for g in groups:
            steps = sorted(float(r) for r in g["drop"] if float(r) > level[g["root"]])
            if not steps:
                continue
            nxt = steps[0]
            gain = removed_by(g, nxt)
            if gain <= 0:
                continue
            prev = g["drop"].get(str(level[g["root"]]), 0.0) if level[g["root"]] else 0.0
            cost = (max(g["drop"][str(nxt)] - prev, 0.0) + 1e-9) / gain
            if cost < best_cost:
                best, best_cost, best_gain = (g, nxt), cost, gain
        if best is None:
            break
        g, nxt = best
        removed += best_gain
        level[g["root"]] = nxt
        cut = g["cut"].get(str(nxt), nxt)
        for name, dim in g["members"]:
            if name in keep:
                keep[name][dim] = 1 - cut
    return {r: v for r, v in level.items() if v > 0}, removed / total if total else 0.0


def save_ratios(path: str, ratios: dict[str, float]) -> None:
    """The chosen ratios as a per-layer file (layer qualname: ratio) that ``layers=`` reads back."""
    import yaml

    from yolocc.compiler.fileio import write_atomic

    write_atomic(path, "# per-group pruning ratios chosen by prune:macs= (qualname of the group's root: ratio)\n"
                 + yaml.safe_dump({k: float(v) for k, v in ratios.items()}, sort_keys=True))



def _output_shapes(module: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    with torch.no_grad():
        return [tuple(t.shape) for t in flatten_outputs(module(x))]


class Prune(Pass):
    """Structured channel pruning (torch-pruning groups); the detection head is protected."""

    name = "prune"
    stage = "torch"
    requires = (CANONICAL,)
    preserves = (CANONICAL,)
    provides = (TEACHER,)
    needs_channel_graph = True
    rejects = {"bn_folded": "prune before folding BatchNorm (put 'prune' before 'fuse-bn' or 'int8')"}
    params = (
        Param("ratio", "float", 0.25, "fraction of channels removed per layer", low=0.0, high=1.0, high_open=True),
        Param("importance", "choice", "l2", "channel importance criterion", choices=("l1", "l2", "bn", "random")),
        Param("round_to", "int|auto", "auto", "keep channel counts a multiple of this; auto: the multiple the "
              "target's runtime likes on this machine (measured once and cached, Runtime.channel_multiple; where the "
              "runtime's one-conv sweep does not predict its models, e.g. OpenVINO, the pruned model is timed at "
              "that multiple and its neighbours and the fastest kept)",
              low=1, high=256),
        Param("layers", "path", None, "YAML of per-layer ratios (layer index -> ratio; head: [reg, cls])"),
        Param("global", "bool", False, "rank channels across layers instead of per layer"),
        Param("protect_head", "bool|auto", "auto", "never prune the detection/classification head's inner "
              "convolutions; auto: protected unless finetune/distill follows in the plan"),
        Param("macs", "float", None, "remove this fraction of the MACs instead of a uniform ratio; per-group "
              "ratios come from the sensitivity analysis (groups that matter least give most)",
              low=0.0, high=0.95),
        Param("save", "str", None, "write the chosen per-layer ratios to this YAML (reusable with layers=)"),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        a = self.args
        round_to, rounding = resolve_round_to(a["round_to"], ctx)
        timed = None
        if a["round_to"] == "auto" and getattr(ctx.runtime, "channel_multiple_on_model", False):
            # The runtime's one-conv sweep does not predict its models: time the pruned model itself.
            timed = channel_choice.choose(ir, ctx, a, round_to,
                                          lambda probe, m: self._prune(probe, ctx, m, "", probe=True))
            if timed is not None:
                round_to, rounding = timed.multiple, f"round_to=auto: {timed.reason}"
        result = self._prune(ir, ctx, round_to, rounding)
        if timed is not None and result.modified:
            result.changes["round_to_timing"] = timed.as_dict()
        return result

    def _prune(self, ir: ModelIR, ctx: PassContext, round_to: int, rounding: str, probe: bool = False) -> PassResult:
        """Prune ``ir`` in place with kept channels rounded to ``round_to``; ``probe``: a copy timed by
        ``round_to=auto`` (``channel_choice``), so no ``save=`` file is written."""
        a = self.args
        module = ir.module
        ratio_dict: dict[nn.Module, float] = {}
        ratio = a["ratio"]
        allocation: dict = {}
        sensitivity: dict = {}
        protect_head = a["protect_head"]
        if protect_head == "auto":
            # The head's inner convs are a large share of the MACs, and pruning them costs accuracy that
            # only training brings back: open them when recovery follows.
            protect_head = not ctx.recovery_follows() or ctx.frontend.head(ir) is None
        if a["layers"]:
            ignored = self._apply_layer_file(ctx, ir, ir.protected_modules(), ratio_dict)
        else:
            ignored = ignored_layers(ir, ctx, protect_head)
        keep_teacher(ir)
        if a["macs"] is not None and not a["layers"]:
            analysis = ir.analyses.get(SENSITIVITY) or cached_analysis(ir, ctx, ignored, round_to=round_to)
            chosen, predicted = allocate(analysis["groups"], a["macs"], analysis["layer_macs"])
            named = dict(module.named_modules())
            ratio_dict = {named[root]: r for root, r in chosen.items() if root in named}
            ratio = 0.0
            allocation = {"target_macs_reduction": a["macs"], "predicted_macs_reduction": round(predicted, 4),
                          "ratios": {root: r for root, r in sorted(chosen.items())}}
            sensitivity = {"ratios": analysis["ratios"], "groups": analysis["groups"]}
        if ratio == 0.0 and not any(ratio_dict.values()):
            return PassResult(False, {"reason": "nothing to prune (ratio 0)", **allocation})
        macs_before = total_macs(ir)
        x = ir.example_inputs()
        shapes_before = _output_shapes(module, x)
        params_before = ir.param_count()
        channels_before = out_channels(module)
        with TORCH_GLOBAL_LOCK, all_params_require_grad(module), torch.random.fork_rng():
            torch.manual_seed(0)
            pruner = pruner_class()(
                module, x, importance=importance(a["importance"]), pruning_ratio=ratio,
                pruning_ratio_dict=ratio_dict or None, ignored_layers=ignored, round_to=round_to,
                global_pruning=a["global"])
            pruner.step()
        shapes_after = _output_shapes(module, x)
        if shapes_after != shapes_before:
            raise PassError(f"pruning changed the output shapes {shapes_before} -> {shapes_after}; "
                            f"protect the output layers")
        channels_after = out_channels(module)
        per_layer = {n: [c, channels_after[n]] for n, c in channels_before.items()
                     if n in channels_after and channels_after[n] != c}
        params_after = ir.param_count()
        pruned = sum(b - a_ for b, a_ in per_layer.values())
        if allocation:
            allocation["macs_reduction"] = round(1 - total_macs(ir) / macs_before, 4) if macs_before else 0.0
            if a["save"] and not probe:
                save_ratios(a["save"], allocation["ratios"])
        return PassResult(bool(per_layer), {
            **({"allocation": allocation, "analysis": sensitivity} if allocation else {}),
            "protect_head": protect_head, "round_to": round_to, "round_to_source": rounding,
            **({"note": f"prune: kept channel counts are multiples of {round_to} ({rounding})"}
               if a["round_to"] == "auto" else {}),
            "params_before": params_before, "params_after": params_after,
            "param_reduction": round(1 - params_after / params_before, 4) if params_before else 0.0,
            "layers_pruned": len(per_layer), "channels_removed": pruned,
            "channels": per_layer,
        })

    # ------------------------------------------------------------------ head handling
    def _head(self, ctx: PassContext, ir: ModelIR) -> tuple[HeadParts, list]:
        head, layers = ctx.frontend.head(ir), ctx.frontend.layers(ir)
        if head is None or layers is None:
            raise UsageError("prune: per-layer ratios (layers=) and protect_head=false need a model whose "
                             "frontend names its layers and head (e.g. an Ultralytics model)")
        return head, layers

    def _apply_layer_file(self, ctx: PassContext, ir: ModelIR, ignored: list[nn.Module],
                          ratio_dict: dict) -> list[nn.Module]:
        head, layers = self._head(ctx, ir)
        ratios = load_layer_ratios(self.args["layers"], len(layers), head.index)
        named = dict(ir.module.named_modules())
        head_name = next(n for n, m in named.items() if m is head.module)
        for idx, r in sorted(ratios.items(), key=lambda kv: str(kv[0])):
            if isinstance(idx, str):
                if idx not in named:
                    raise UsageError(f"prune: layer '{idx}' in '{self.args['layers']}' is not in this model")
                if idx.startswith(head_name + "."):  # a layer inside the head opens the head's inner convs
                    ignored = unprotect_head(head, ignored)
                ratio_dict[named[idx]] = r
            elif idx == head.index:
                per_branch = r if isinstance(r, tuple) else (r,) * len(head.branches)
                ignored = unprotect_head(head, ignored)
                for branch, value in zip(head.branches.values(), per_branch):
                    ratio_dict[branch] = value
            else:
                ratio_dict[layers[idx]] = r
        return ignored
