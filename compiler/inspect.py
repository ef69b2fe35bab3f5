"""``yolocc inspect``: a summary of a model's IR (layers, params, MACs, coupling groups)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import onnx

from . import lowering, onnxgraph
from .ir import ModelIR


def summarize(ir: ModelIR, with_groups: bool = True) -> dict[str, Any]:
    """A JSON-ready summary of ``ir``."""
    graph = ir.graph
    ops = Counter(d["op"] for _, d in graph.nodes(data=True))
    model = onnx.load_from_string(lowering.onnx_bytes(ir)) if ir.stage == "torch" else ir.onnx_model
    out: dict[str, Any] = {
        "model": ir.source, "frontend": ir.frontend, "task": ir.task, "stage": ir.stage,
        "input": {"name": ir.input.name, "shape": list(ir.input.shape)},
        "outputs": {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
                    for o in model.graph.output},
        "params": ir.param_count(), "macs": onnxgraph.macs(model),
        "nodes": graph.number_of_nodes(), "edges": graph.number_of_edges(),
        "layers": sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "layer") if ir.stage == "torch"
        else graph.number_of_nodes(),
        "op_counts": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    if ir.stage == "torch":
        groups = ir.coupling_groups()
        prunable = [g for g in groups if g.prunable]
        out.update({
            "coupling_groups": len(groups), "prunable_groups": len(prunable),
            "prunable_channels": sum(g.channels for g in prunable),
            "protected": sorted(ir.protected) + sorted(
                n for n, m in ir.module.named_modules() if m in ir.protected_modules() and n not in ir.protected),
        })
        if with_groups:
            out["groups"] = [g.as_dict() for g in groups]
    return out
