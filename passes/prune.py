"""``prune``: structured channel pruning with torch-pruning, YOLO head protected by default."""

from __future__ import annotations

import torch
import torch.nn as nn

from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult
from yolocc.compiler.torchgraph import ROOT_TYPES, TORCH_GLOBAL_LOCK, all_params_require_grad, flatten_outputs

from .layer_ratios import load_layer_ratios


def _importance(name: str):
    import torch_pruning as tp

    return {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
            "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
            "bn": lambda: tp.importance.BNScaleImportance(),
            "random": lambda: tp.importance.RandomImportance()}[name]()


def _pruner_class():
    """torch-pruning's MetaPruner, rounding kept channels to the *nearest* multiple of round_to.

    torch-pruning floors them, so a 16-channel layer asked to lose 10% keeps 8 (loses 50%).
    """
    import torch_pruning as tp

    class NearestRoundPruner(tp.pruner.MetaPruner):
        def _round_to(self, n_pruned, current_channels, round_to):
            keep = current_channels - n_pruned
            keep = min(current_channels, max(round_to, int(keep / round_to + 0.5) * round_to))
            return max(current_channels - keep, 0)

    return NearestRoundPruner


def _out_channels(module: nn.Module) -> dict[str, int]:
    return {n: (m.out_channels if hasattr(m, "out_channels") else m.out_features)
            for n, m in module.named_modules() if isinstance(m, ROOT_TYPES)}


def _output_shapes(module: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    with torch.no_grad():
        return [tuple(t.shape) for t in flatten_outputs(module(x))]


class Prune(Pass):
    """Structured channel pruning (torch-pruning groups); the detection head is protected."""

    name = "prune"
    stage = "torch"
    requires = ("canonical",)
    preserves = ("canonical",)
    provides = ("pre_prune",)
    params = (
        Param("ratio", "float", 0.25, "fraction of channels removed per layer", low=0.0, high=1.0, high_open=True),
        Param("importance", "choice", "l2", "channel importance criterion", choices=("l1", "l2", "bn", "random")),
        Param("round_to", "int", 8, "keep channel counts a multiple of this", low=1, high=256),
        Param("layers", "path", None, "YAML of per-layer ratios (layer index -> ratio; head: [reg, cls])"),
        Param("global", "bool", False, "rank channels across layers instead of per layer"),
        Param("protect_head", "bool", True, "never prune the detection/classification head"),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        import torch_pruning as tp

        a = self.args
        module = ir.module
        ignored = ir.protected_modules()
        ratio_dict: dict[nn.Module, float] = {}
        if a["layers"]:
            ignored = self._apply_layer_file(ir, ignored, ratio_dict)
        elif not a["protect_head"]:
            ignored = self._unprotect_head(ir, ignored)
        if a["ratio"] == 0.0 and not any(ratio_dict.values()):
            return PassResult(False, {"reason": "ratio is 0: nothing to prune"})

        if "pre_prune" not in ir.analyses:  # the teacher for distillation: the model before any pruning
            import copy

            ir.analyses["pre_prune"] = copy.deepcopy(module)
        x = ir.example_inputs()
        shapes_before = _output_shapes(module, x)
        params_before = ir.param_count()
        channels_before = _out_channels(module)
        with TORCH_GLOBAL_LOCK, all_params_require_grad(module), torch.random.fork_rng():
            torch.manual_seed(0)
            pruner = _pruner_class()(
                module, x, importance=_importance(a["importance"]), pruning_ratio=a["ratio"],
                pruning_ratio_dict=ratio_dict or None, ignored_layers=ignored, round_to=a["round_to"],
                global_pruning=a["global"])
            pruner.step()
        ir.invalidate()
        shapes_after = _output_shapes(module, x)
        if shapes_after != shapes_before:
            raise PassError(f"pruning changed the output shapes {shapes_before} -> {shapes_after}; "
                            f"protect the output layers")
        channels_after = _out_channels(module)
        per_layer = {n: [c, channels_after[n]] for n, c in channels_before.items()
                     if n in channels_after and channels_after[n] != c}
        params_after = ir.param_count()
        pruned = sum(b - a_ for b, a_ in per_layer.values())
        return PassResult(bool(per_layer), {
            "params_before": params_before, "params_after": params_after,
            "param_reduction": round(1 - params_after / params_before, 4) if params_before else 0.0,
            "layers_pruned": len(per_layer), "channels_removed": pruned,
            "channels": per_layer,
        })

    # ------------------------------------------------------------------ head handling
    def _head(self, ir: ModelIR) -> tuple[int, nn.Module]:
        ul = ir.meta.get("ultralytics")
        if not ul:
            raise UsageError("prune: per-layer ratios (layers=) and protect_head=false need an Ultralytics model")
        idx = ul["head_index"]
        return idx, ir.module.model[idx]

    def _unprotect_head(self, ir: ModelIR, ignored: list[nn.Module]) -> list[nn.Module]:
        """Let the head's inner convs be pruned; its output layers stay protected."""
        _, head = self._head(ir)
        keep = [m for m in ignored if m is not head]
        for branch_name in ("cv2", "cv3"):
            for branch in getattr(head, branch_name, None) or []:
                keep.append(branch[-1])
        keep += [child for name, child in head.named_children() if name not in ("cv2", "cv3")]
        return keep

    def _apply_layer_file(self, ir: ModelIR, ignored: list[nn.Module], ratio_dict: dict) -> list[nn.Module]:
        head_index, head = self._head(ir)
        ratios = load_layer_ratios(self.args["layers"], len(ir.module.model), head_index)
        for idx, r in sorted(ratios.items()):
            if idx == head_index:
                reg, cls = r if isinstance(r, tuple) else (r, r)
                ignored = self._unprotect_head(ir, ignored)
                for branch_name, value in (("cv2", reg), ("cv3", cls)):
                    if getattr(head, branch_name, None) is not None:
                        ratio_dict[getattr(head, branch_name)] = value
            else:
                ratio_dict[ir.module.model[idx]] = r
        return ignored
