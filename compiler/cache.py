"""The content cache: compile results under ``compile/`` (``--cache DIR``: an unchanged compile is
skipped) and calibration ranges under ``calibration/`` (always; see ``CompileOptions.cache_root``).

A compile key hashes everything that decides the artifact: the model file's bytes (or the model
YAML's name), the expanded plan with arguments, the options, the calibration and evaluation data's
bytes, and the versions of yolocc, of the libraries that produce the graph and of installed plugins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from .errors import UsageError
from .fileio import write_atomic, write_with
from .measure import cpu_isa
from .options import CompileOptions

log = logging.getLogger(__name__)

LIBRARIES = ("yolocc", "torch", "torch-pruning", "onnx", "onnxruntime", "onnx-graphsurgeon", "ultralytics")


def _hash_path(h, path: Path) -> None:
    if path.is_file():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".cache")):
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    else:
        h.update(str(path).encode())


def content_digest(path: str | Path) -> str:
    """sha256 of a file's name and bytes, or of every file below a folder (relative names and bytes);
    a path that does not exist hashes as its name. The identity ``compile_key`` gives data sources."""
    h = hashlib.sha256()
    _hash_path(h, Path(path))
    return h.hexdigest()


def compile_key(model: Any, plan: list[dict], options: CompileOptions, output_suffix: str,
                plugin_versions: dict[str, str] | None = None) -> str:
    """The cache key of one compile (``plugin_versions``: installed third-party plugins)."""
    h = hashlib.sha256()
    # Bumped when the same plan builds other bytes (v3: the openvino target's zero-point-free activations).
    h.update(b"yolocc-cache-v3")
    if isinstance(model, (str, Path)):
        _hash_path(h, Path(model))
    else:
        raise TypeError("only models given as paths are cacheable")
    h.update(json.dumps(plan, sort_keys=True, default=str).encode())
    h.update(json.dumps(options.cache_settings(), sort_keys=True, default=str).encode())
    for path in (options.calib, options.data):
        if path:
            _hash_path(h, Path(path))
    for lib in LIBRARIES:
        try:
            h.update(f"{lib}={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib}=none".encode())
    h.update(json.dumps(plugin_versions or {}, sort_keys=True).encode())
    h.update(output_suffix.encode())
    # Plans decide by measurements on this machine (prune's round_to=auto): another ISA, another key.
    h.update(cpu_isa().encode())
    return h.hexdigest()


def cached_json(path: Path, compute: Callable[[], Any], what: str) -> tuple[Any, bool]:
    """The JSON at ``path``, or ``compute()`` written there; returns (value, hit). A cache that cannot
    be written only costs the next run the same work."""
    try:
        return json.loads(path.read_text()), True
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(value))
    except (OSError, UsageError) as e:
        log.warning("cannot write %s cache %s: %s", what, path, e)
    return value, False


def lookup(root: str | Path, key: str) -> tuple[Path, dict] | None:
    entry = Path(root) / "compile" / key
    artifact, report = entry / "artifact", entry / "report.json"
    if artifact.exists() and report.is_file():
        return artifact, json.loads(report.read_text())
    return None


def store(root: str | Path, key: str, artifact: Path, report: dict) -> None:
    """Keep a copy of ``artifact`` (a file or a folder) and its report under ``key``."""
    entry = Path(root) / "compile" / key
    try:
        entry.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use cache folder '{root}': {e.strerror or e}") from e
    write_with(entry / "artifact", lambda tmp: copy(artifact, tmp))
    write_atomic(entry / "report.json", json.dumps(report, indent=2))


def restore(artifact: Path, output: str | Path) -> None:
    """Copy a cached artifact to ``output`` (a staging path: the caller renames it into place)."""
    copy(artifact, Path(output))


def copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copyfile(src, dest)


# ---------------------------------------------------------------------------------------- trials
def trial_key(base: str, parent: str | None, teacher: str | None, passes: list[dict]) -> str:
    """The key of one search trial: the search's ``base`` key (model, data, options, versions; see
    ``compile_key``), its parent's and teacher's keys (None: the input model) and its passes with
    their arguments."""
    h = hashlib.sha256(b"yolocc-trial-v1")
    for part in (base, parent or "input", teacher or "-"):
        h.update(part.encode())
    h.update(json.dumps(passes, sort_keys=True, default=str).encode())
    return h.hexdigest()


def store_trial(root: str | Path, key: str, ir: Any, result: dict) -> None:
    """Keep a finished trial under ``trials/KEY``: its model (``ModelIR``, pickled) and its measured
    ``result`` (JSON). Written as one staged folder: a search killed while writing leaves no entry,
    and the next write in that folder removes the partial one."""
    import torch

    def write(folder: Path) -> None:
        folder.mkdir()
        torch.save(ir, folder / "ir.pt")
        (folder / "result.json").write_text(json.dumps(result, default=str))

    entry = Path(root) / "trials" / key
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_with(entry, write)
    except (OSError, UsageError) as e:
        log.warning("cannot store search trial %s: %s", key[:12], e)


def lookup_trial(root: str | Path, key: str) -> tuple[Any, dict] | None:
    """(model, result) of a trial stored under ``key``, or None. The model is a pickle that only yolocc
    writes, into the cache folder you chose: trust that folder as you trust your Python environment."""
    import torch

    entry = Path(root) / "trials" / key
    try:
        result = json.loads((entry / "result.json").read_text())
        ir = torch.load(entry / "ir.pt", map_location="cpu", weights_only=False)
    except (OSError, ValueError, EOFError, RuntimeError) as e:
        if entry.exists():
            log.warning("ignoring unreadable search trial %s in the cache: %s", key[:12], e)
        return None
    return ir, result
