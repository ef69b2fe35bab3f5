"""Numerically equivalent rewrites of Ultralytics modules, applied by the ``canonicalize`` pass.

C2f (and subclasses that keep its forward, such as YOLO11's C3k2) computes ``cv1(x).chunk(2, 1)``.
A channel split couples the two halves in ways pruners get wrong, so the 1x1 ``cv1`` is split
into two convolutions with the same weights, one per half. The result computes the same function.
DFL is rewritten as one MatMul over the bins axis, in the layout the box branch already has (same
values, no transposes in the exported graph), or, for a target that runs it faster (OpenVINO), as a
softmax over the bins axis and a weighted sum over it.

``decanonicalize`` undoes every rewrite (and ``fuse-bn``'s fused classes), so that a checkpoint
yolocc writes holds only torch and Ultralytics classes and loads where yolocc is not installed.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from yolocc.compiler.modutil import replace_module
from yolocc.compiler.target import Capability

#: Attributes Ultralytics' model runner reads on every layer.
_ULTRALYTICS_LAYER_ATTRS = ("f", "i", "type", "np")


class _SplitCv1(nn.Module):
    """A block whose ``cv1(x).chunk(2)`` is replaced by two convolutions ``cv0`` and ``cv1`` (the two
    halves), so pruning sees no split; at export the two are merged back into one conv and a split."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.c = block.c
        self.cv0 = _conv_slice(block.cv1, 0, block.c)
        self.cv1 = _conv_slice(block.cv1, block.c, 2 * block.c)
        self.cv2 = block.cv2
        self.m = block.m
        self.source_class = type(block)  # the stock class (or a subclass keeping its forward): restored on save
        for attr in _ULTRALYTICS_LAYER_ATTRS:
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cv0(x), cv1(x))``: one merged convolution when exporting."""
        if torch.onnx.is_in_onnx_export() and _mergeable(self.cv0, self.cv1):
            return _merged_conv(self.cv0, self.cv1, x)
        return self.cv0(x), self.cv1(x)


class C2fSplit(_SplitCv1):
    """C2f (or YOLO11's C3k2) with its channel split replaced by two convolutions (``cv0`` and ``cv1``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.halves(x))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C2Split(_SplitCv1):
    """C2 (YOLOv8-P6's head block) with its ``cv1(x).chunk(2)`` replaced by two convolutions: ``cv0``
    feeds the bottlenecks, ``cv1`` the bypass. torch-pruning couples a chunk's two halves wrongly (it
    cut 96 channels to 72 on one side only), so, as for C2f, pruning sees two plain convolutions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.halves(x)
        return self.cv2(torch.cat((self.m(a), b), 1))


def _mergeable(a: nn.Module, b: nn.Module) -> bool:
    ca, cb = a.conv, b.conv
    same = all(getattr(ca, k) == getattr(cb, k) for k in ("in_channels", "kernel_size", "stride", "padding",
                                                            "dilation", "groups"))
    return same and type(a.act) is type(b.act) and hasattr(a, "bn") == hasattr(b, "bn") and \
        (not hasattr(a, "bn") or a.bn.eps == b.bn.eps)


def _merged_conv(a: nn.Module, b: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a(x), b(x))`` as one convolution and a static split: what the deployed graph should run.

    Pruning wants two convolutions; a runtime wants one wide one. The weight concatenations are
    constants, so the ONNX exporter folds them (and BN) away.
    """
    import torch.nn.functional as F

    ca, cb = a.conv, b.conv
    w = torch.cat([ca.weight, cb.weight])
    bias = None
    if ca.bias is not None or cb.bias is not None:
        bias = torch.cat([ca.bias if ca.bias is not None else ca.weight.new_zeros(ca.out_channels),
                          cb.bias if cb.bias is not None else cb.weight.new_zeros(cb.out_channels)])
    y = F.conv2d(x, w, bias, ca.stride, ca.padding, ca.dilation, ca.groups)
    if hasattr(a, "bn") and hasattr(b, "bn"):
        bn_a, bn_b = a.bn, b.bn
        y = F.batch_norm(y, torch.cat([bn_a.running_mean, bn_b.running_mean]),
                         torch.cat([bn_a.running_var, bn_b.running_var]),
                         torch.cat([bn_a.weight, bn_b.weight]), torch.cat([bn_a.bias, bn_b.bias]),
                         False, 0.0, bn_a.eps)
    y = a.act(y)
    return y.split((ca.out_channels, cb.out_channels), 1)


def _conv_slice(conv_block: nn.Module, start: int, stop: int) -> nn.Module:
    """A copy of an Ultralytics ``Conv`` (conv + bn + act) keeping output channels [start, stop)."""
    block = copy.deepcopy(conv_block)
    conv, bn = block.conv, block.bn
    conv.weight = nn.Parameter(conv.weight.data[start:stop].clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.data[start:stop].clone())
    conv.out_channels = stop - start
    bn.weight = nn.Parameter(bn.weight.data[start:stop].clone())
    bn.bias = nn.Parameter(bn.bias.data[start:stop].clone())
    bn.running_mean = bn.running_mean[start:stop].clone()
    bn.running_var = bn.running_var[start:stop].clone()
    bn.num_features = stop - start
    return block


def _splittable(m: nn.Module, block: str) -> bool:
    """Whether ``m`` is Ultralytics' ``block`` (C2f, C2; or a subclass keeping its forward) with a plain
    ``cv1`` whose output ``chunk(2)`` splits in two equal halves."""
    try:
        from ultralytics.nn.modules import block as blocks
    except ImportError:
        return False
    cls = getattr(blocks, block)
    if not isinstance(m, cls) or type(m).forward is not cls.forward:
        return False
    cv1 = m.cv1
    return (hasattr(cv1, "conv") and isinstance(getattr(cv1, "bn", None), nn.BatchNorm2d)
            and cv1.conv.groups == 1 and cv1.conv.out_channels == 2 * m.c)


def _is_splittable_c2f(m: nn.Module) -> bool:
    return _splittable(m, "C2f")


def _is_splittable_c2(m: nn.Module) -> bool:
    return _splittable(m, "C2")


class DFLMatMul(nn.Module):
    """Ultralytics' DFL (softmax over box bins, then their expectation) as one MatMul on the
    box branch's own layout ``(b, 4, bins, anchors)``.

    The expectation is ``sum(bins * e) / sum(e)`` with ``e = exp(x - max)``: numerator and
    denominator are two rows of one ``(2, bins)`` matrix applied to ``e``. A Softmax would need the
    bins on the last axis, i.e. a transpose of the whole box tensor (onnxruntime transposes around a
    middle-axis softmax as well); this form has none."""

    def __init__(self, dfl: nn.Module):
        super().__init__()
        self.c1 = dfl.c1
        bins = dfl.conv.weight.detach().reshape(1, -1)
        self.register_buffer("proj", torch.cat([bins, torch.ones_like(bins)]).clone())

    def forward(self, x: torch.Tensor, anchor_major: bool = False) -> torch.Tensor:
        """``(b, 4 * bins, anchors)`` -> ``(b, 4, anchors)``; with ``anchor_major`` the input is laid out
        ``(b, anchors, 4 * bins)`` and the bins axis is last: a softmax there and one MatMul."""
        if anchor_major:
            return torch.matmul(x.unflatten(-1, (4, self.c1)).softmax(-1), self.proj[:1].T).squeeze(-1).transpose(1, 2)
        b, _, a = x.shape
        x = x.view(b, 4, self.c1, a)
        y = torch.matmul(self.proj, (x - x.amax(2, keepdim=True)).exp())  # (b, 4, 2, a)
        return y[:, :, 0] / y[:, :, 1]


class _DFLBins(nn.Module):
    """A DFL rewrite that keeps the bins' values (the stock DFL's 1x1 conv weights) as a buffer."""

    def __init__(self, dfl: nn.Module):
        super().__init__()
        self.c1 = dfl.c1
        self.register_buffer("bins", dfl.conv.weight.detach().reshape(-1).clone())


class DFLLastAxis(_DFLBins):
    """The earlier DFL rewrite (softmax on the last axis), kept so that checkpoints saved with it load."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return (x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1) * self.bins).sum(-1)


class DFLBinsAxis(_DFLBins):
    """Ultralytics' DFL as a softmax over the bins axis where the box branch has it, ``(b, 4, bins,
    anchors)``, and the bins' weighted sum over that axis: no transpose and no 1x1 convolution. The
    form OpenVINO runs fastest (a 1x1 convolution over 16 channels is mostly its reorders)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, 4 * bins, anchors)`` -> ``(b, 4, anchors)``."""
        b, _, a = x.shape
        return (x.view(b, 4, self.c1, a).softmax(2) * self.bins.view(-1, 1)).sum(2)


def _is_dfl(m: nn.Module) -> bool:
    conv = getattr(m, "conv", None)
    return (type(m).__name__ == "DFL" and type(m).__module__.startswith("ultralytics.") and
            isinstance(conv, nn.Conv2d) and conv.out_channels == 1 and conv.kernel_size == (1, 1))


def _is_plain_detect(m: nn.Module) -> bool:
    try:
        from ultralytics.nn.modules.head import Detect
    except ImportError:
        return False
    return type(m) is Detect and m.reg_max > 1 and not getattr(m, "end2end", False) and getattr(m, "one2one_cv2", None) is None


def _anchor_major(m: nn.Module) -> nn.Module:
    m.__class__ = DetectAnchorMajor  # same module, same parameters: only the exported graph changes
    return m


#: (rule name, matcher, rewriter, the target capability the rule relies on or None). Rewriters must be
#: numerically equivalent; a rule that only changes the exported layout runs where the target has the
#: capability that makes the layout pay (``compiler.target.Capability``).
REWRITES = [("C2f->C2fSplit", _is_splittable_c2f, C2fSplit, None), ("C2->C2Split", _is_splittable_c2, C2Split, None),
            ("Detect->DetectAnchorMajor", _is_plain_detect, _anchor_major, Capability.CHANNELS_LAST_INT8),
            ("DFL->DFLMatMul", _is_dfl, DFLMatMul, Capability.LAST_AXIS_SOFTMAX_MATMUL),
            ("DFL->DFLBinsAxis", _is_dfl, DFLBinsAxis, Capability.BINS_AXIS_SOFTMAX_SUM)]


def canonicalize(module: nn.Module, capabilities: frozenset[str] = Capability.ALL) -> dict[str, int]:
    """Apply in place every rewrite whose capability is in ``capabilities`` (the target's); return how
    often each rule fired."""
    counts: dict[str, int] = {}
    for qualname, sub in list(module.named_modules()):
        for rule, match, rewrite, needs in REWRITES:
            if qualname and (needs is None or needs in capabilities) and match(sub):
                replace_module(module, qualname, rewrite(sub))
                counts[rule] = counts.get(rule, 0) + 1
                break  # one rewrite per module: the first rule that applies
    return counts


def decanonicalize(module: nn.Module) -> dict[str, int]:
    """Undo, in place, every rewrite of this module (and ``fuse-bn``'s ``FusedConv``/``FusedDWConv``):
    afterwards ``module`` holds only torch and Ultralytics classes and computes the same function
    (up to float rounding). Returns how often each inverse ran; ``"C2f padded channels"`` counts the
    zero channels added where pruning left a split C2f's two halves unequal (Ultralytics' C2f splits
    ``cv1`` into equal halves), which add MACs but no change to the outputs.

    Raises ``ValueError`` for a split C2f with unequal halves whose inner blocks it cannot pad."""
    counts: dict[str, int] = {}

    def count(rule: str, n: int = 1) -> None:
        counts[rule] = counts.get(rule, 0) + n

    for qualname, sub in list(module.named_modules()):  # fused convs first: the C2f merge needs BN
        if FusedConv is not None and type(sub) in (FusedConv, FusedDWConv):
            _unfuse(sub)
            count("FusedConv->Conv")
    for qualname, sub in list(module.named_modules()):
        if not qualname:
            continue
        if isinstance(sub, _SplitCv1):
            stock_name = "C2f" if isinstance(sub, C2fSplit) else "C2"
            stock, padded = (_c2f_from_split if isinstance(sub, C2fSplit) else _c2_from_split)(sub)
            replace_module(module, qualname, stock)
            count(f"{type(sub).__name__}->{stock_name}")
            if padded:
                count(f"{stock_name} padded channels", padded)
        elif isinstance(sub, (DFLMatMul, _DFLBins)):
            replace_module(module, qualname, _stock_dfl(sub))
            count(f"{type(sub).__name__}->DFL")
        elif DetectAnchorMajor is not None and type(sub) is DetectAnchorMajor:
            sub.__class__ = DetectAnchorMajor.__bases__[0]
            sub.shape = None  # its anchors were cached transposed: recomputed on the next forward
            count("DetectAnchorMajor->Detect")
    return counts


def _unfuse(block: nn.Module) -> None:
    """A ``FusedConv``/``FusedDWConv`` back into Ultralytics' class, with a BatchNorm that passes the
    fused convolution's output through unchanged (its bias moves into the BN)."""
    block.__class__ = type(block).__bases__[0]
    conv = block.conv
    n = conv.out_channels
    bn = nn.BatchNorm2d(n).to(conv.weight.device)
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.fill_(float(1.0 + bn.eps) ** 0.5)  # weight / sqrt(var + eps) == 1
        bn.bias.copy_(conv.bias if conv.bias is not None else torch.zeros(n))
    conv.register_parameter("bias", None)
    rest = {k: v for k, v in block._modules.items() if k != "conv"}
    block._modules = {"conv": conv, "bn": bn, **rest}


def _stock_dfl(m: nn.Module) -> nn.Module:
    from ultralytics.nn.modules.block import DFL

    dfl = DFL(m.c1)
    bins = m.proj[0] if isinstance(m, DFLMatMul) else m.bins
    dfl.conv.weight.data.copy_(bins.reshape(1, m.c1, 1, 1))
    return dfl.to(bins.device)


def _c2f_from_split(split: "C2fSplit") -> tuple[nn.Module, int]:
    """The stock C2f (or its source class) computing what ``split`` does, and how many zero channels
    it needed: ``cv0`` and ``cv1`` become the halves of one ``cv1`` (each padded to the wider)."""
    from ultralytics.nn.modules.block import C2f

    a, b = split.cv0.conv.out_channels, split.cv1.conv.out_channels
    c, n = max(a, b), len(split.m)
    cv0, cv1, padded = split.cv0, split.cv1, 0
    if a < c:
        cv0, padded = _pad_out(cv0, c - a), padded + c - a
    if b < c:
        cv1 = _pad_out(cv1, c - b)
        for blk in split.m:
            _pad_block(blk, c - b)
        padded += (c - b) * (1 + n)
    if padded:
        _pad_in(split.cv2.conv, [(a, c), (b, c)] + [(b, c)] * n)
    return _stock(split, getattr(split, "source_class", None) or C2f, c, cv0, cv1), padded


def _stock(split: _SplitCv1, cls: type, c: int, cv0: nn.Module, cv1: nn.Module) -> nn.Module:
    """An instance of Ultralytics' ``cls`` with hidden width ``c`` whose ``cv1`` is ``cv0`` and ``cv1``
    side by side, and the split's own ``cv2``, ``m`` and layer attributes."""
    stock = cls.__new__(cls)
    nn.Module.__init__(stock)
    stock.c = c
    stock.cv1 = _cat_blocks(cv0, cv1)
    stock.cv2, stock.m = split.cv2, split.m
    for attr in _ULTRALYTICS_LAYER_ATTRS:
        if hasattr(split, attr):
            setattr(stock, attr, getattr(split, attr))
    stock.train(split.training)
    return stock


def _c2_from_split(split: "C2Split") -> tuple[nn.Module, int]:
    """The stock C2 computing what ``split`` does, and how many zero channels it needed: ``cv0`` (into
    the bottlenecks) and ``cv1`` (the bypass) become the halves of one ``cv1``, each padded to the wider."""
    from ultralytics.nn.modules.block import C2

    a, b = split.cv0.conv.out_channels, split.cv1.conv.out_channels
    c = max(a, b)
    cv0, cv1, padded = split.cv0, split.cv1, 0
    if a < c:
        cv0 = _pad_out(cv0, c - a)
        for blk in split.m:
            _pad_block(blk, c - a)
        padded += (c - a) * (1 + len(split.m))
    if b < c:
        cv1, padded = _pad_out(cv1, c - b), padded + c - b
    if padded:
        _pad_in(split.cv2.conv, [(a, c), (b, c)])
    return _stock(split, getattr(split, "source_class", None) or C2, c, cv0, cv1), padded


def _cat_blocks(a: nn.Module, b: nn.Module) -> nn.Module:
    """One Ultralytics ``Conv`` computing ``torch.cat([a(x), b(x)], 1)``."""
    if not _mergeable(a, b):
        raise ValueError("a split C2f whose two convolutions differ in kernel, activation or BatchNorm "
                         "cannot be written as Ultralytics' C2f")
    block = copy.deepcopy(a)
    conv, bn = block.conv, block.bn
    conv.weight = nn.Parameter(torch.cat([a.conv.weight, b.conv.weight]).detach().clone())
    conv.out_channels = a.conv.out_channels + b.conv.out_channels
    bn.weight = nn.Parameter(torch.cat([a.bn.weight, b.bn.weight]).detach().clone())
    bn.bias = nn.Parameter(torch.cat([a.bn.bias, b.bn.bias]).detach().clone())
    bn.running_mean = torch.cat([a.bn.running_mean, b.bn.running_mean]).clone()
    bn.running_var = torch.cat([a.bn.running_var, b.bn.running_var]).clone()
    bn.num_features = conv.out_channels
    return block


def _pad_out(block: nn.Module, extra: int) -> nn.Module:
    """A copy of a Conv block with ``extra`` more output channels that are always zero."""
    if float(block.act(torch.zeros(1))) != 0.0:
        raise ValueError(f"cannot pad a {type(block.act).__name__} convolution with zero channels")
    block = copy.deepcopy(block)
    conv, bn = block.conv, block.bn
    w = conv.weight
    conv.weight = nn.Parameter(torch.cat([w.detach(), w.new_zeros(extra, *w.shape[1:])]))
    conv.out_channels += extra
    bn.weight = nn.Parameter(torch.cat([bn.weight.detach(), w.new_zeros(extra)]))
    bn.bias = nn.Parameter(torch.cat([bn.bias.detach(), w.new_zeros(extra)]))
    bn.running_mean = torch.cat([bn.running_mean, w.new_zeros(extra)])
    bn.running_var = torch.cat([bn.running_var, w.new_ones(extra)])
    bn.num_features = conv.out_channels
    return block


def _pad_in(conv: nn.Conv2d, segments: list[tuple[int, int]]) -> None:
    """Widen ``conv``'s input in place: each (old, new) segment of input channels gets zero weights
    for its ``new - old`` added channels, appended after the segment's old ones."""
    if conv.groups != 1:
        raise ValueError("cannot pad the input of a grouped convolution")
    w = conv.weight.detach()
    parts, start = [], 0
    for old, new in segments:
        parts += [w[:, start:start + old], w.new_zeros(w.shape[0], new - old, *w.shape[2:])]
        start += old
    conv.weight = nn.Parameter(torch.cat(parts, 1))
    conv.in_channels = conv.weight.shape[1]


def _pad_block(blk: nn.Module, extra: int) -> None:
    """Widen a C2f inner block (Bottleneck, or C3k) in place by ``extra`` zero input and output channels."""
    name = type(blk).__name__
    if name == "Bottleneck":
        inputs, output = [blk.cv1], "cv2"
    elif name == "C3k":
        inputs, output = [blk.cv1, blk.cv2], "cv3"
    else:
        raise ValueError(f"cannot write a split C2f with unequal halves around a {name} as Ultralytics' C2f")
    for block in inputs:
        old = block.conv.in_channels
        _pad_in(block.conv, [(old, old + extra)])
    setattr(blk, output, _pad_out(getattr(blk, output), extra))


def _fused_classes() -> dict[type, type]:
    """Ultralytics conv blocks -> subclasses whose ``forward`` is their BN-free ``forward_fuse``."""
    from ultralytics.nn.modules.conv import Conv, DWConv

    return {Conv: FusedConv, DWConv: FusedDWConv} if FusedConv is not None else {}


def fused_class(cls: type) -> type | None:
    return _fused_classes().get(cls)


try:  # defined at import so that checkpoints name an importable class
    from ultralytics.nn.modules.conv import Conv as _Conv, DWConv as _DWConv
    from ultralytics.nn.modules.head import Detect as _Detect

    class DetectAnchorMajor(_Detect):
        """Detect whose exported box branch is laid out anchor-major, ``(b, anchors, 4 * bins)``.

        That is the layout onnxruntime's int8 convolutions produce (NHWC) and the one a last-axis DFL
        softmax needs, so the transposes back to NCHW and into the DFL cancel out. Training and
        torch inference are Ultralytics' own."""

        def forward_head(self, x, box_head=None, cls_head=None):
            if box_head is None or cls_head is None or not torch.onnx.is_in_onnx_export() \
                    or not isinstance(self.dfl, DFLMatMul):
                return super().forward_head(x, box_head, cls_head)
            bs = x[0].shape[0]
            boxes = torch.cat([box_head[i](x[i]).permute(0, 2, 3, 1).reshape(bs, -1, 4 * self.reg_max)
                               for i in range(self.nl)], 1)
            scores = torch.cat([cls_head[i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], -1)
            return {"boxes": boxes, "scores": scores, "feats": x, "anchor_major": True}

        def _get_decode_boxes(self, x):
            if not x.get("anchor_major"):
                return super()._get_decode_boxes(x)
            from ultralytics.utils.tal import make_anchors

            shape = x["feats"][0].shape
            if self.dynamic or self.shape != shape:
                self.anchors, self.strides = (a.transpose(0, 1) for a in make_anchors(x["feats"], self.stride, 0.5))
                self.shape = shape
            return self.decode_bboxes(self.dfl(x["boxes"], anchor_major=True), self.anchors.unsqueeze(0)) * self.strides

    class FusedConv(_Conv):
        """Ultralytics' Conv with its BatchNorm folded into the convolution."""

        def forward(self, x):
            return self.forward_fuse(x)

    class FusedDWConv(_DWConv):
        """Ultralytics' DWConv with its BatchNorm folded into the convolution."""

        def forward(self, x):
            return self.forward_fuse(x)
except ImportError:  # Ultralytics not installed: no Ultralytics models to fuse either
    FusedConv = FusedDWConv = DetectAnchorMajor = None
