"""Reading ``.pt``/``.pth`` files safely, with one clear error for missing, corrupt or untrusted ones.

A ``.pt`` is a pickle, and unpickling can run any code. Files are loaded with torch's
``weights_only=True`` unpickler; the classes a model checkpoint needs are allowed when they are
``nn.Module`` subclasses from libraries that are installed and trusted anyway (``torch.nn``,
``torchvision``, ``ultralytics.nn``, yolocc's own rewrites), or plain data types that Ultralytics
stores (training arguments, numpy scalars, a classifier's torchvision transforms, the renamed
classes of older checkpoints), which covers every checkpoint Ultralytics itself writes.
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
#: Paths pickled on any OS (or by Python 3.13, under ``pathlib._local``) load as this OS's path class.
_LOCAL_PATH = "pathlib.WindowsPath" if os.name == "nt" else "pathlib.PosixPath"
#: Packages whose ``nn.Module`` classes a checkpoint may name.
MODULE_PACKAGES = ("torch.nn.", "torchvision.models.", "torchvision.ops.", "ultralytics.nn.", "yolocc.plugins.")
#: Plain data types (no behaviour on load) that Ultralytics checkpoints contain: training arguments,
#: paths, numpy arrays and scalars in stored metrics, and the torchvision preprocessing transforms
#: that classify checkpoints keep (``model.transforms``).
DATA_TYPES = ("ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace", "argparse.Namespace",
              _LOCAL_PATH, "builtins.set", "builtins.frozenset",
              "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray._reconstruct",
              "numpy._core.multiarray._reconstruct",
              "torchvision.transforms.transforms.Compose", "torchvision.transforms.transforms.Resize",
              "torchvision.transforms.transforms.CenterCrop", "torchvision.transforms.transforms.ToTensor",
              "torchvision.transforms.transforms.Normalize", "torchvision.transforms.functional.InterpolationMode")
#: Names under which older, newer-Python or other-platform Ultralytics checkpoints pickle a type, and the
#: type they load as (the renames Ultralytics' own loader applies, ``ultralytics.nn.tasks.torch_safe_load``).
ALIASES = {"ultralytics.yolo.utils.IterableSimpleNamespace": "ultralytics.utils.IterableSimpleNamespace",
           "ultralytics.nn.modules.block.Silence": "torch.nn.Identity",  # YOLOv9e
           "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
           "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
           **{f"pathlib.{m}{c}": _LOCAL_PATH for m in ("", "_local.") for c in ("PosixPath", "WindowsPath")
              if f"pathlib.{m}{c}" != _LOCAL_PATH}}
#: Modules whose own plain classes (loss and label-assigner objects) some Ultralytics checkpoints hold.
CLASS_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal", "ultralytics.nn.distill_model")
#: numpy's scalar reconstructor under both of its module paths (numpy 1 and 2).
NUMPY_SCALAR = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")


def _import(name: str) -> Any | None:
    module, _, attr = name.rpartition(".")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def _resolve(name: str) -> Any | None:
    """The object a pickle global ``module.qualname`` may load as, if it is on the allow-list."""
    import torch.nn as nn

    if name in ALIASES:
        return _resolve(ALIASES[name])
    if name in DATA_TYPES:
        return _import(name)
    if name in NUMPY_SCALAR:
        import numpy as np

        return np.float64(0).__reduce__()[0]
    if name == "builtins.getattr":
        return _module_getattr
    module = name.rpartition(".")[0]
    if module in CLASS_MODULES:
        obj = _import(name)
        return obj if isinstance(obj, type) and obj.__module__ == module else None
    if not any(name.startswith(p) for p in MODULE_PACKAGES):
        return None
    obj = _import(name)
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def _module_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as Ultralytics checkpoints pickle it (``Detect.forward``, ``InterpolationMode.BILINEAR``,
    a fused ``Conv``'s bound ``forward_fuse``), restricted to those: public attributes of module and enum
    classes, and the forward methods of a module."""
    import enum

    import torch.nn as nn

    if isinstance(obj, type) and not name.startswith("_") and issubclass(obj, (nn.Module, enum.Enum)):
        return getattr(obj, name)
    if isinstance(obj, nn.Module) and name in ("forward", "forward_fuse"):
        return getattr(type(obj), name).__get__(obj)
    raise pickle.UnpicklingError(f"getattr({type(obj).__name__}, {name!r}) is not allowed in a model file")


def _safe_globals(allowed: dict[str, Any]) -> list:
    """``torch.serialization.safe_globals`` entries: objects under their own name, the rest as
    ``(object, pickled name)`` pairs (torch 2.6+), plus numpy's dtype classes a dtype rebuilds into."""
    entries = []
    for name, obj in allowed.items():
        own = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        entries.append(obj if own == name else (obj, name))
    if any(name.startswith("numpy.") for name in allowed):
        import numpy as np

        entries += [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    return entries


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
            with torch.serialization.safe_globals(_safe_globals(allowed)):
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
