"""``sensitivity``: how much each prunable channel group matters, measured, for budget-driven pruning.

For every prunable coupling group (torch-pruning's, the same groups ``prune`` cuts), the group's
least important channels at a few ratios are silenced: forward hooks zero them in every layer of the
group whose *output* channels the group removes. With activations that map 0 to 0 (SiLU, ReLU) this
is exactly what removing them does, so no re-tracing and no copies are needed. The proxy metric is
how far the model's outputs move on calibration images (``measure.output_distance``): ``1 - cosine``
of every named part of an output (``ir.meta["output_splits"]``: boxes, class scores and the task's own
part, i.e. a segmenter's mask coefficients, a pose model's keypoints, an OBB model's angle), summed,
plus that of every other output whole (a segmenter's prototypes); a model without named parts is
compared whole. ``benchmarks/budget.py`` measures
how well this proxy ranks groups against the real mAP (rank correlation).

The result is cached by content (weights, images, ratios, importance) under the content cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from yolocc.compiler.analyses import CANONICAL, OUTPUT_SPLITS, SENSITIVITY
from yolocc.compiler.errors import UsageError
from yolocc.compiler.cache import cached_json
from yolocc.compiler.measure import output_distance, splits_key
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult
from yolocc.compiler.torchgraph import ROOT_TYPES, TORCH_GLOBAL_LOCK, cuts_out_channels, flatten_outputs, hash_weights

from .calib_data import fingerprint, load_calibration
from .pruning import ignored_layers, importance, keep_channels, layer_macs, resolve_round_to


RATIOS = (0.25, 0.5, 0.75)
DEFAULT_IMAGES = 8
VERSION = b"sensitivity-v2"


@dataclass
class GroupSensitivity:
    """One prunable group: its root layer, channel count, the Conv/Linear layers whose input or output
    channels it cuts, the fraction actually cut at each ratio (after rounding), and the proxy drop."""

    root: str
    channels: int
    members: list[tuple[str, str]]  # (layer qualname, "out" | "in")
    cut: dict[float, float]
    drop: dict[float, float]

    def as_dict(self) -> dict:
        return {"root": self.root, "channels": self.channels, "members": [list(m) for m in self.members],
                "cut": {str(r): round(c, 6) for r, c in self.cut.items()},
                "drop": {str(r): round(d, 6) for r, d in self.drop.items()}}


def _silence(members: list[tuple[nn.Module, list[int]]]):
    """Forward hooks that zero the given output channels of each module."""
    def make(idxs):
        index = torch.tensor(idxs, dtype=torch.long)

        def hook(m, inp, out):
            out = out.clone()
            out[:, index] = 0
            return out
        return hook

    return [m.register_forward_hook(make(idxs)) for m, idxs in members]


def _outputs(module: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    return {f"output{i}": t.detach().numpy() for i, t in enumerate(flatten_outputs(module(x)))}


def analyse(ir: ModelIR, images: np.ndarray, ignored: list[nn.Module], ratios=RATIOS, round_to: int = 8,
            importance_name: str = "l2", progress=None) -> list[GroupSensitivity]:
    """The proxy drop of every coupling group rooted outside ``ignored`` at every ratio (see the
    module docstring). ``images``: (N, C, H, W) float32 model inputs."""
    module = ir.module
    dg = ir.dependency_graph()
    groups = ir.coupling_groups(ignored)
    x = torch.from_numpy(images)
    splits = ir.meta.get(OUTPUT_SPLITS, {})
    imp = importance(importance_name)
    names = {m: n for n, m in module.named_modules()}
    with TORCH_GLOBAL_LOCK, torch.no_grad():
        ref = _outputs(module, x)
        results = []
        named = dict(module.named_modules())
        for i, coupling in enumerate(groups, 1):
            group = coupling.group
            root = group[0].dep.target.module
            n = coupling.channels
            if n <= round_to:
                continue
            score = imp(group)
            if score is None:
                continue
            order = torch.argsort(score.cpu()).tolist()
            members = sorted({(name, dim) for name, dim in coupling.members
                              if isinstance(named.get(name), ROOT_TYPES)})
            drop, cuts = {}, {}
            for r in ratios:
                cut = n - keep_channels(n, r, round_to)
                cuts[r] = cut / n
                if cut <= 0:
                    drop[r] = 0.0
                    continue
                sub = dg.get_pruning_group(root, group[0].dep.handler, sorted(order[:cut]))
                silenced = [(dep.target.module, [int(j) for j in idxs]) for dep, idxs in sub
                            if isinstance(dep.target.module, nn.Module) and cuts_out_channels(dg, dep)]
                handles = _silence(silenced)
                try:
                    drop[r] = output_distance(ref, _outputs(module, x), splits)
                finally:
                    for h in handles:
                        h.remove()
            results.append(GroupSensitivity(names.get(root, str(root)), n, members, cuts, drop))
            if progress:
                progress(i, len(groups))
    return results


def cached_analysis(ir: ModelIR, ctx: PassContext, ignored: list[nn.Module], n_images: int = DEFAULT_IMAGES,
                    importance_name: str = "l2", round_to: int = 8) -> dict:
    """``analyse`` on calibration images, through the content cache; stored as ``ir.analyses['sensitivity']``."""
    source = ctx.option("calib") or ctx.option("data")
    if not source:
        raise UsageError("sensitivity needs images: pass --calib IMAGES_DIR (or --data)")
    images = load_calibration(str(source), n_images, ir.input.shape, lambda im: ctx.frontend.preprocess(ir, im))
    h = hashlib.sha256(VERSION)
    hash_weights(h, ir.module)
    h.update(fingerprint(images).encode())
    h.update(json.dumps([sorted(str(m) for m in ignored), list(RATIOS), importance_name, round_to]).encode())
    h.update(splits_key(ir.meta.get(OUTPUT_SPLITS)).encode())  # the proxy weighs each named output part
    groups, hit = cached_json(ctx.options.cache_root() / "sensitivity" / f"{h.hexdigest()}.json",
                              lambda: [g.as_dict() for g in analyse(ir, images, ignored, RATIOS, round_to,
                                                                    importance_name,
                                                                    ctx.progress_for("sensitivity: groups"))],
                              "sensitivity")
    names = {m: n for n, m in ir.module.named_modules()}
    per_layer = {names[m]: v for m, v in layer_macs(ir.module, ir.example_inputs()).items()}
    result = {"groups": groups, "ratios": list(RATIOS), "images": int(len(images)), "proxy": "output cosine",
              "layer_macs": per_layer, "cache": "hit" if hit else "miss"}
    ir.analyses[SENSITIVITY] = result
    return result


class Sensitivity(Pass):
    """Measure how much each prunable channel group matters (proxy: output change on calibration images)."""

    name = "sensitivity"
    stage = "torch"
    requires = (CANONICAL,)
    provides = (SENSITIVITY,)
    needs_channel_graph = True
    rejects = {"bn_folded": "measure sensitivity before folding BatchNorm (before 'fuse-bn')"}
    preserves = (CANONICAL,)
    params = (
        Param("n", "int", DEFAULT_IMAGES, "calibration images the proxy is measured on", low=1, high=10000),
        Param("protect_head", "bool", True, "leave the head's inner convolutions out (as prune does)"),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        result = cached_analysis(ir, ctx, ignored_layers(ir, ctx, self.args["protect_head"]), self.args["n"],
                                 round_to=resolve_round_to("auto", ctx)[0])
        worst = sorted(result["groups"], key=lambda g: -g["drop"][str(RATIOS[-1])])[:3]
        return PassResult(False, {"groups": len(result["groups"]), "images": result["images"],
                                  "cache": result["cache"], "most_sensitive": [g["root"] for g in worst],
                                  "analysis": {"ratios": result["ratios"], "groups": result["groups"]}})
