"""Structured-pruning mechanics shared by ``prune`` and ``sensitivity``: which layers stay, how a
group's channels are ranked (importance), how kept channel counts are rounded, and per-layer MACs.

The channel-coupling groups themselves come from the IR (``ModelIR.coupling_groups``: torch-pruning's
DependencyGraph groups, lifted once in ``compiler.torchgraph``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from yolocc.compiler.errors import UsageError
from yolocc.compiler.interfaces import HeadParts
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.passbase import PassContext
from yolocc.compiler.torchgraph import ROOT_TYPES


def round_channels(keep: float, n: int, round_to: int) -> int:
    """``keep`` channels (of ``n``) rounded to the *nearest* multiple of ``round_to``, at least
    ``round_to`` and at most ``n``. torch-pruning floors instead: a 16-channel layer asked to lose 10%
    would keep 8 (lose 50%)."""
    return min(n, max(round_to, int(keep / round_to + 0.5) * round_to))


def resolve_round_to(value: int | str, ctx: PassContext) -> tuple[int, str]:
    """(channel multiple, where it comes from): an int is taken as given; ``auto`` asks the run's
    runtime (``Runtime.channel_multiple``: measured on it for this machine's ISA, cached)."""
    if value != "auto":
        return int(value), "round_to given"
    found = ctx.runtime.channel_multiple(1, ctx.options.cache_root())
    return int(found.multiple), f"round_to=auto: {found.reason}"


def keep_channels(n: int, ratio: float, round_to: int) -> int:
    """Channels of ``n`` kept when a fraction ``ratio`` is removed (rounded as ``prune`` rounds)."""
    return round_channels(n * (1 - ratio), n, round_to)


def importance(name: str):
    """torch-pruning's channel importance criterion ``name`` (``l1``, ``l2``, ``bn``, ``random``)."""
    import torch_pruning as tp

    return {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
            "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
            "bn": lambda: tp.importance.BNScaleImportance(),
            "random": lambda: tp.importance.RandomImportance()}[name]()


def pruner_class():
    """torch-pruning's MetaPruner with kept channels rounded by ``round_channels``."""
    import torch_pruning as tp

    class NearestRoundPruner(tp.pruner.MetaPruner):
        def _round_to(self, n_pruned, current_channels, round_to):
            keep = round_channels(current_channels - n_pruned, current_channels, round_to)
            return max(current_channels - keep, 0)

    return NearestRoundPruner


def ignored_layers(ir: ModelIR, ctx: PassContext, protect_head: bool = True) -> list[nn.Module]:
    """The layers pruning must leave alone: the protected ones, minus the head's inner convs when
    ``protect_head`` is off (the frontend says which parts of the head always stay)."""
    ignored = ir.protected_modules()
    if protect_head:
        return ignored
    head = ctx.frontend.head(ir)
    if head is None:
        raise UsageError("prune: protect_head=false needs a model whose frontend names its head "
                         "(e.g. an Ultralytics model)")
    return unprotect_head(head, ignored)


def unprotect_head(head: HeadParts, ignored: list[nn.Module]) -> list[nn.Module]:
    """``ignored`` with the head's inner convolutions opened to pruning; ``head.keep`` stays protected."""
    return [m for m in ignored if m is not head.module] + list(head.keep)


def total_macs(ir: ModelIR) -> float:
    return sum(layer_macs(ir.module, ir.example_inputs()).values())


def layer_macs(module: nn.Module, x: torch.Tensor) -> dict[nn.Module, float]:
    """Multiply-accumulates of every Conv/Linear layer for input ``x`` (one forward with hooks)."""
    macs: dict[nn.Module, float] = {}

    def hook(m, inp, out):
        if isinstance(m, nn.Linear):
            macs[m] = float(m.in_features * m.out_features * (out.numel() // out.shape[-1]))
        else:
            k = int(np.prod(m.kernel_size))
            macs[m] = float(out.numel() * k * m.in_channels // m.groups)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, ROOT_TYPES)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return macs


def out_channels(module: nn.Module) -> dict[str, int]:
    return {n: (m.out_channels if hasattr(m, "out_channels") else m.out_features)
            for n, m in module.named_modules() if isinstance(m, ROOT_TYPES)}


