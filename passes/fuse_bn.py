"""``fuse-bn``: fold BatchNorm into the convolution that feeds it (torch stage, exact in eval mode)."""

from __future__ import annotations

import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from yolocc.compiler.analyses import CANONICAL
from yolocc.compiler.errors import GraphError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.passbase import Pass, PassContext, PassResult
from yolocc.compiler.torchgraph import node_name

from yolocc.compiler.modutil import parent_and_attr, replace_module

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def conv_bn_pairs(ir: ModelIR) -> list[tuple[str, str]]:
    """(conv, bn) qualnames where the conv's output feeds only that BatchNorm."""
    pairs = []
    for module, node in ir.dependency_graph().module2node.items():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or len(node.inputs) != 1:
            continue
        src = node.inputs[0]
        if isinstance(src.module, _CONVS) and len(src.outputs) == 1 and module.track_running_stats:
            pairs.append((node_name(src), node_name(node)))
    return pairs


class FuseBN(Pass):
    """Fold Conv+BatchNorm pairs into one convolution (numerically equivalent)."""

    name = "fuse-bn"
    stage = "torch"
    preserves = (CANONICAL,)
    makes = ("bn_folded",)

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        root = ir.module
        frontend = ctx.frontend
        try:
            pairs, source = conv_bn_pairs(ir), "dependency graph"
        except GraphError:  # torch-pruning cannot trace it: the pairs the framework's own blocks guarantee
            pairs, source = frontend.conv_bn_blocks(ir), "frontend blocks"
        for conv_name, bn_name in pairs:
            conv, bn = root.get_submodule(conv_name), root.get_submodule(bn_name)
            fused = fuse_conv_bn_eval(conv.eval(), bn.eval(), transpose=isinstance(conv, nn.ConvTranspose2d))
            parent, conv_attr = parent_and_attr(root, conv_name)
            bn_parent, bn_attr = parent_and_attr(root, bn_name)
            # The framework's own fused form where it has one (Ultralytics' Conv drops ``bn``).
            if not (bn_parent is parent and frontend.adopt_fused_conv(parent, conv_attr, bn_attr, fused)):
                replace_module(root, conv_name, fused)
                replace_module(root, bn_name, nn.Identity())
        return PassResult(bool(pairs), {"folded": len(pairs), **({"pairs_from": source} if source != "dependency graph"
                                                                  else {})})
