"""Reading ``.pt``/``.pth`` files safely, with one clear error for missing, corrupt or untrusted ones.

A ``.pt`` is a pickle, and unpickling can run any code. Files are loaded with torch's
``weights_only=True`` unpickler; the classes a model checkpoint needs are allowed when they are
``nn.Module`` subclasses from libraries that are installed and trusted anyway (``torch.nn``,
``torchvision``, ``ultralytics.nn``, yolocc's own rewrites) or plain data types Ultralytics stores.
Anything else (a plain ``torch.save(model)`` of your own class, or a crafted file) is refused unless
the caller says the file is trusted (``--trust-model`` / ``trust_model=True``).
"""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

from yolocc.compiler.errors import UsageError

TORCH_SUFFIXES = (".pt", ".pth")
#: Packages whose ``nn.Module`` classes a checkpoint may name.
MODULE_PACKAGES = ("torch.nn.", "torchvision.models.", "torchvision.ops.", "ultralytics.nn.", "yolocc.plugins.")
#: Plain data types (no behaviour on load) that Ultralytics checkpoints contain.
DATA_TYPES = ("ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace", "argparse.Namespace",
              "pathlib.PosixPath", "pathlib.WindowsPath", "builtins.set", "builtins.frozenset")


def _resolve(name: str) -> Any | None:
    """The object a pickle global ``module.qualname`` names, if it is on the allow-list."""
    module, _, attr = name.rpartition(".")
    if name not in DATA_TYPES and not any(name.startswith(p) for p in MODULE_PACKAGES):
        return None
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    if name in DATA_TYPES:
        return obj
    import torch.nn as nn

    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def read_torch_file(path: str | os.PathLike, trust: bool = False) -> Any:
    """``torch.load`` with the safe unpickler and the allow-list; ``trust`` allows a full pickle."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"model file '{p}' does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if trust:
                return torch.load(p, map_location="cpu", weights_only=False)
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(p)
            allowed = {name: _resolve(name) for name in needed}
            refused = sorted(name for name, obj in allowed.items() if obj is None)
            if refused:
                raise UsageError(f"'{p}' is a full pickle that needs '{refused[0]}'"
                                 f"{f' (and {len(refused) - 1} more)' if len(refused) > 1 else ''} to load, and "
                                 f"loading a pickle can run any code: pass --trust-model (API: trust_model=True) "
                                 f"only if you trust where the file came from")
            with torch.serialization.safe_globals(list(allowed.values())):
                return torch.load(p, map_location="cpu", weights_only=True)
    except UsageError:
        raise
    except ModuleNotFoundError as e:
        raise UsageError(f"cannot load '{p}': it needs Python module '{e.name}', which is not installed") from e
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError,
            AttributeError, TypeError, IndexError, KeyError) as e:
        raise UsageError(f"cannot read model file '{p}': not a valid PyTorch checkpoint "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from e


def is_torch_path(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() in TORCH_SUFFIXES


def count_outputs(module, x) -> int:
    """How many tensors ``module(x)`` returns (flattened)."""
    import torch

    from yolocc.compiler.torchgraph import flatten_outputs

    with torch.no_grad():
        return len(flatten_outputs(module(x)))
