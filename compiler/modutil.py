"""Small helpers for replacing submodules by qualified name."""

from __future__ import annotations

import torch.nn as nn


def parent_and_attr(root: nn.Module, qualname: str) -> tuple[nn.Module, str]:
    """The parent module of ``qualname`` and the attribute (or index) name under it."""
    parent_name, _, attr = qualname.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    return parent, attr


def replace_module(root: nn.Module, qualname: str, new: nn.Module) -> None:
    """Put ``new`` where ``qualname`` is (works inside Sequential/ModuleList too)."""
    parent, attr = parent_and_attr(root, qualname)
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)
