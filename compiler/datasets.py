"""Labelled datasets as ``--data`` names them: an Ultralytics data YAML, or a classify folder with one
sub-folder per split. One reader for every module that needs to know what a dataset holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError


def read_data_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in data YAML ``path``; ``UsageError`` (one line) when it is unreadable or not a mapping."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"'{path}' is not a readable data YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if not isinstance(data, dict):
        raise UsageError(f"'{path}' is not a data YAML (expected a mapping with train/val/test entries)")
    return data


def has_split(data: str | Path, split: str) -> bool:
    """Whether ``data`` (a data YAML or a classify folder) names a ``split`` (``val``, ``test`` ...)."""
    p = Path(data)
    if p.is_dir():
        return (p / split).is_dir()
    try:
        return bool(read_data_yaml(p).get(split))
    except UsageError:
        return False


def check_channels(data: str | Path, channels: int) -> int | None:
    """The ``channels`` a data YAML declares (Ultralytics' key; None: it declares none, or ``data`` is not
    a YAML file); ``UsageError`` when it declares other channels than the model's ``channels``."""
    p = Path(data)
    if p.suffix.lower() not in (".yaml", ".yml") or not p.is_file():
        return None
    declared = read_data_yaml(p).get("channels")
    if declared is not None and declared != channels:
        raise UsageError(f"data YAML '{data}' declares channels: {declared} but the model takes "
                         f"{channels}-channel input")
    return declared


def check_split(data: str | Path, split: str) -> None:
    """Raise ``UsageError`` naming what is missing when ``data`` has no ``split`` to evaluate on."""
    p = Path(data)
    if not p.exists():
        raise UsageError(f"--data '{data}' does not exist")
    if p.is_dir():
        if not (p / split).is_dir():
            raise UsageError(f"--data '{data}' has no '{split}' folder to evaluate on")
        return
    if not read_data_yaml(p).get(split):
        raise UsageError(f"--data '{data}' has no '{split}:' entry to evaluate on")
