"""Torch-stage graph views, lifted from torch-pruning's DependencyGraph rather than re-derived."""

from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import networkx as nx
import torch
import torch.nn as nn

#: torch keeps process-global state that yolocc relies on: the default RNG (seeded random weights),
#: the tracer and the ONNX exporter (``torch.onnx.is_in_onnx_export``). Code that touches it holds
#: this lock, so compiles in concurrent threads stay independent and deterministic.
TORCH_GLOBAL_LOCK = threading.RLock()

#: Layer types whose output channels root a coupling group.
ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class CouplingGroup:
    """Channels that must be pruned together, lifted from a torch-pruning group.

    ``members``: every layer the group cuts, as (qualname, ``"out"`` or ``"in"``: which of its channel
    dimensions); ``prunable``: False when the group would also cut the output channels of a protected
    layer; ``group``: torch-pruning's own group object (to prune or silence channels with it)."""

    root: str
    channels: int
    members: list[tuple[str, str]]  # (layer qualname, "out" | "in")
    prunable: bool
    group: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"root": self.root, "channels": self.channels, "prunable": self.prunable,
                "members": [list(m) for m in self.members]}


def hash_weights(h, module: nn.Module) -> None:
    """Feed every entry of ``module``'s state dict (name and bytes, sorted by name) into the hashlib
    object ``h``: the model's content, for cache keys of measurements made on it."""
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())


@contextlib.contextmanager
def all_params_require_grad(module: nn.Module) -> Iterator[None]:
    """torch-pruning traces autograd: every parameter must require grad while it does."""
    saved = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def build_dependency_graph(module: nn.Module, example_inputs: torch.Tensor):
    """Trace ``module`` into a torch-pruning DependencyGraph."""
    import torch_pruning as tp

    from .errors import GraphError

    with TORCH_GLOBAL_LOCK, all_params_require_grad(module), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-pruning's shape inference warns on deep graphs
        try:
            return tp.DependencyGraph().build_dependency(module, example_inputs=example_inputs)
        except Exception as e:  # torch-pruning's tracer meets an op it cannot map (e.g. RT-DETR's concats)
            raise GraphError(f"torch-pruning cannot trace this model's channel dependencies "
                             f"({type(e).__name__} in {_where(e)})") from e


def _where(e: BaseException) -> str:
    """The torch-pruning function an exception came from, for a one-line message."""
    import traceback

    frames = [f for f in traceback.extract_tb(e.__traceback__) if "torch_pruning" in f.filename]
    return f"torch_pruning {frames[-1].name}" if frames else "torch-pruning"


def flatten_outputs(y) -> list:
    """The tensors of a (nested) model output, in order."""
    if isinstance(y, (list, tuple)):
        return [t for item in y for t in flatten_outputs(item)]
    if isinstance(y, dict):
        return [t for item in y.values() for t in flatten_outputs(item)]
    return [y]


def node_name(node) -> str:
    """Stable name of a DependencyGraph node: the module qualname, or the op's traced name."""
    return node._name or str(node.module)


def _op_type(node) -> str:
    if isinstance(node.module, nn.Module) and node.module.__class__.__module__.startswith("torch."):
        return type(node.module).__name__
    if isinstance(node.module, nn.Module):
        return type(node.module).__name__
    return node.type.name.lower()


def _channels(module) -> tuple[int | None, int | None]:
    for a_in, a_out in (("in_channels", "out_channels"), ("in_features", "out_features")):
        if hasattr(module, a_in):
            return getattr(module, a_in), getattr(module, a_out)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features, module.num_features
    return None, None


def graph_from_dependency_graph(dg, module: nn.Module) -> nx.DiGraph:
    """One node per traced layer or op; edges follow data flow."""
    g = nx.DiGraph()
    for node in dg.module2node.values():
        name = node_name(node)
        is_layer = isinstance(node.module, nn.Module) and not type(node.module).__name__.startswith("_")
        cin, cout = _channels(node.module) if is_layer else (None, None)
        params = sum(p.numel() for p in node.module.parameters(recurse=False)) if is_layer else 0
        g.add_node(name, op=_op_type(node), kind="layer" if is_layer else "op",
                   in_channels=cin, out_channels=cout, params=int(params))
    for node in dg.module2node.values():
        for out in node.outputs:
            g.add_edge(node_name(node), node_name(out))
    return g


def output_layers(dg) -> list[nn.Module]:
    """Conv/Linear layers whose output channels reach a model output with no other layer between.

    Pruning their output channels would change the model's output shape, so they are protected.
    """
    found = []
    for module, node in dg.module2node.items():
        if not isinstance(module, ROOT_TYPES):
            continue
        seen, stack = set(), list(node.outputs)
        reaches_output = not node.outputs
        while stack and not reaches_output:
            cur = stack.pop()
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            if isinstance(cur.module, ROOT_TYPES):
                continue
            if not cur.outputs:
                reaches_output = True
            stack.extend(cur.outputs)
        if reaches_output:
            found.append(module)
    return found


def expand_modules(mods: Iterable[nn.Module]) -> list[nn.Module]:
    """Every module inside ``mods`` (torch-pruning ignores exact modules, not subtrees)."""
    out: list[nn.Module] = []
    seen: set[int] = set()
    for m in mods:
        for sub in m.modules():
            if id(sub) not in seen:
                seen.add(id(sub))
                out.append(sub)
    return out


def cuts_out_channels(dg, dep) -> bool:
    """Whether torch-pruning dependency ``dep`` removes its target's *output* channels (else input
    channels): the one place yolocc decides this, from the DependencyGraph itself."""
    return bool(dg.is_out_channel_pruning_fn(dep.handler))


def coupling_groups(dg, module: nn.Module, protected: list[nn.Module]):
    """The DependencyGraph's coupling groups rooted outside ``protected``, as ``CouplingGroup``s.

    A group is prunable unless it would also cut the output channels of a protected layer.
    """
    ignored = expand_modules(protected)
    ignored_ids = {id(m) for m in ignored}
    named = dict(module.named_modules())
    groups = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
        root = group[0].dep.target.module
        members, seen = [], set()
        for item in group:
            target = item.dep.target
            if not isinstance(target.module, nn.Module) or type(target.module).__name__.startswith("_"):
                continue
            dim = "out" if cuts_out_channels(dg, item.dep) else "in"
            key = (node_name(target), dim)
            if key not in seen:
                seen.add(key)
                members.append(key)
        channels = dg.get_out_channels(root)
        prunable = not any(dim == "out" and id(named.get(name)) in ignored_ids for name, dim in members)
        groups.append(CouplingGroup(node_name(group[0].dep.target), int(channels or 0), members, prunable, group))
    return groups
