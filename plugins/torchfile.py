"""Reading ``.pt``/``.pth`` files, with one clear error for missing or corrupt ones."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

from yolocc.compiler.errors import UsageError

TORCH_SUFFIXES = (".pt", ".pth")


def read_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load`` a full pickle (modules included); raise ``UsageError`` if it cannot be read."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"model file '{p}' does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise UsageError(f"cannot load '{p}': it needs Python module '{e.name}', which is not installed") from e
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError,
            AttributeError, TypeError) as e:
        raise UsageError(f"cannot read model file '{p}': not a valid PyTorch checkpoint "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from e


def is_torch_path(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() in TORCH_SUFFIXES


def count_outputs(module, x) -> int:
    """How many tensors ``module(x)`` returns (flattened)."""
    import torch

    from yolocc.compiler.torchgraph import flatten_outputs

    with torch.no_grad():
        return len(flatten_outputs(module(x)))
