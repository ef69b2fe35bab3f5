"""Frontend for plain PyTorch models: full-module pickles (``torch.save(model)``) and in-memory modules."""

from __future__ import annotations

from typing import Any

from yolocc.compiler.errors import UsageError
from yolocc.compiler.interfaces import Frontend
from yolocc.compiler.ir import InputSpec, ModelIR

from .torchfile import count_outputs, is_torch_path, read_torch_file

DEFAULT_IMGSZ = 640


class TorchFrontend(Frontend):
    name = "torch"
    priority = 50

    def load(self, model: Any, options: dict[str, Any]) -> ModelIR | None:
        import torch.nn as nn

        source = "<module>"
        if is_torch_path(model):
            source = str(model)
            model = read_torch_file(model, bool(options.get("trust_model")))
            if not isinstance(model, nn.Module):
                raise UsageError(f"'{source}' holds a {type(model).__name__}, not a model: save the whole "
                                 f"module with torch.save(model, path) (a state_dict has no architecture)")
        if not isinstance(model, nn.Module):
            return None
        return ir_from_module(model, source, options.get("imgsz") or DEFAULT_IMGSZ)


def ir_from_module(module, source: str, imgsz: int | tuple[int, int]) -> ModelIR:
    """A torch-stage IR for a generic CNN; the input shape comes from its first layer and ``imgsz`` (a side,
    or ``(h, w)`` for 2-D models)."""
    import torch.nn as nn

    h, w = imgsz if isinstance(imgsz, tuple) else (imgsz, imgsz)

    module = module.float().eval()
    first = next((m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))), None)
    if first is None:
        raise UsageError(f"'{source}' has no Conv or Linear layer: nothing to compile")
    if isinstance(first, nn.Linear):
        shape: tuple[int, ...] = (1, first.in_features)
    elif isinstance(first, nn.Conv1d):
        if h != w:
            raise UsageError(f"'{source}' is a 1-D model: --imgsz takes one length, got {h},{w}")
        shape = (1, first.in_channels, w)
    elif isinstance(first, nn.Conv3d):
        raise UsageError(f"'{source}': 3-D convolution models are not supported")
    else:
        shape = (1, first.in_channels, h, w)
    ir = ModelIR(source=source, task="generic", input=InputSpec("input", shape), output_names=[], module=module)
    try:
        n_out = count_outputs(module, ir.example_inputs())
    except Exception as e:
        raise UsageError(f"'{source}' does not run on an input of shape {list(shape)}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0]} (try --imgsz)") from e
    ir.output_names = [f"output{i}" for i in range(n_out)]
    return ir
