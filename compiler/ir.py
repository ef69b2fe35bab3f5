"""ModelIR: the one object every pass receives.

At the torch stage it holds the ``nn.Module``; at the onnx stage an ``onnx.ModelProto``. Around
that it keeps the input spec, a networkx data-flow view, torch-pruning's channel-coupling groups,
analyses passes produce and consume, and a provenance log. Mutate through the methods here so the
cached views stay consistent.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .errors import PipelineError
from .torchgraph import CouplingGroup

log = logging.getLogger(__name__)

TORCH, ONNX = "torch", "onnx"


@dataclass
class InputSpec:
    """The model input: name and NCHW shape (batch 1 for tracing; NCL for 1-D models)."""

    name: str = "images"
    shape: tuple[int, ...] = (1, 3, 640, 640)

    @property
    def channels(self) -> int:
        """C of the input shape (1 for grayscale, 3 for RGB images)."""
        return int(self.shape[1])

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) in pixels; a 1-D input's length as both."""
        return (int(self.shape[-2]), int(self.shape[-1])) if len(self.shape) >= 4 else (int(self.shape[-1]),) * 2

    @property
    def imgsz(self) -> int | tuple[int, int]:
        """The input size as options and Ultralytics take it: the side of a square input, else (h, w)."""
        h, w = self.hw
        return w if h == w else (h, w)


@dataclass
class ModelIR:
    """The compiler's model: torch module or ONNX graph, plus views, analyses and provenance."""

    source: str
    task: str  # detect | segment | pose | obb | classify | generic
    input: InputSpec
    output_names: list[str]
    module: Any = None  # torch.nn.Module at the torch stage
    onnx_model: Any = None  # onnx.ModelProto at the onnx stage
    frontend: str = ""
    #: Qualnames of layers whose output channels must never be pruned (heads, output layers).
    protected: set[str] = field(default_factory=set)
    #: Frontend facts (ultralytics yaml, names, stride, train args ...), carried to artifacts.
    meta: dict[str, Any] = field(default_factory=dict)
    analyses: dict[str, Any] = field(default_factory=dict)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    _dg: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- stage
    @property
    def stage(self) -> str:
        return TORCH if self.onnx_model is None else ONNX

    def require_stage(self, stage: str, who: str) -> None:
        if self.stage != stage:
            raise PipelineError(f"'{who}' needs the {stage} stage but the model is at the {self.stage} stage")

    def example_inputs(self):
        """A deterministic example input tensor of the input shape."""
        import torch

        g = torch.Generator().manual_seed(0)
        return torch.rand(self.input.shape, generator=g)

    # ---------------------------------------------------------------- mutation
    def set_module(self, module) -> None:
        """Replace the torch module (torch stage) and drop the cached views."""
        self.require_stage(TORCH, "set_module")
        self.module = module
        self.invalidate()

    def set_onnx(self, model) -> None:
        """Replace (or first set, at lowering) the ONNX graph."""
        self.onnx_model = model
        self.invalidate()

    def invalidate(self) -> None:
        self._dg = None

    def snapshot(self) -> "ModelIR":
        """A deep copy of the model part, e.g. the pre-prune teacher for distillation."""
        return copy.deepcopy(self)

    def log_pass(self, name: str, args: dict[str, Any], changes: dict[str, Any]) -> None:
        self.provenance.append({"pass": name, "args": dict(args), "changes": changes})

    # ---------------------------------------------------------------- torch views
    def dependency_graph(self):
        """torch-pruning's DependencyGraph of the module (cached until the module changes)."""
        self.require_stage(TORCH, "dependency_graph")
        if self._dg is None:
            from .torchgraph import build_dependency_graph

            self._dg = build_dependency_graph(self.module, self.example_inputs())
        return self._dg

    @property
    def graph(self) -> nx.DiGraph:
        """A networkx data-flow view: one node per layer or op, keyed by a stable name."""
        if self.stage == TORCH:
            from .torchgraph import graph_from_dependency_graph

            return graph_from_dependency_graph(self.dependency_graph(), self.module)
        from .onnxgraph import graph_from_onnx

        return graph_from_onnx(self.onnx_model)

    def coupling_groups(self, protected: list | None = None) -> list[CouplingGroup]:
        """Channel-coupling groups (torch stage) rooted outside ``protected`` (default: the head/output
        protection, ``protected_modules()``): the groups ``prune`` cuts and ``sensitivity`` measures."""
        from .torchgraph import coupling_groups

        return coupling_groups(self.dependency_graph(), self.module,
                               self.protected_modules() if protected is None else protected)

    def protected_modules(self) -> list:
        """The ``nn.Module`` objects named in ``protected`` plus generic output layers."""
        from .torchgraph import output_layers

        named = dict(self.module.named_modules())
        mods = [named[n] for n in sorted(self.protected) if n in named]
        mods += [m for m in output_layers(self.dependency_graph()) if m not in mods]
        return mods

    def param_count(self) -> int:
        """Parameters of the torch module, or weight elements in the ONNX initializers."""
        if self.stage == TORCH:
            return int(sum(p.numel() for p in self.module.parameters()))
        from .onnxgraph import initializer_elements

        return initializer_elements(self.onnx_model)
