"""Calibration inputs: an image folder, an Ultralytics data YAML (its train images), or .npy/.npz.

Images get exactly the preprocessing the deployed model receives, which the model's frontend
defines (``Frontend.preprocess``; Ultralytics: letterbox, pad 114, RGB, /255, or its classify
transforms). They are read with the model's input channels, as Ultralytics' loaders read them: BGR
for 3, grayscale for 1; a data YAML's ``channels`` must agree with the model's. Images are picked
deterministically (sorted paths, evenly spaced).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from yolocc.compiler.datasets import check_channels as check_yaml_channels, read_data_yaml
from yolocc.compiler.errors import UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_N = 128

Progress = Callable[[int, int], None]
Preprocess = Callable[[np.ndarray], np.ndarray]


def image_paths(source: str) -> list[Path]:
    """The images a ``--calib`` source names (folder, data YAML, or a single image)."""
    p = Path(source)
    if not p.exists():
        raise UsageError(f"calibration source '{source}' does not exist")
    if p.suffix.lower() in (".yaml", ".yml"):
        return _yaml_train_images(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"calibration folder '{source}' has no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return [p]
    raise UsageError(f"--calib '{source}' must be an image folder, a data YAML, or a .npy/.npz file")


def check_channels(source: str, channels: int) -> None:
    """Raise ``UsageError`` unless images from ``source`` can feed a ``channels``-channel input: image
    sources need 1 (grayscale) or 3 (BGR -> RGB), and a data YAML's ``channels`` (Ultralytics' key), where
    it has one, must equal ``channels``. A .npy/.npz is checked against the whole input shape instead."""
    p = Path(source)
    if p.suffix.lower() in (".npy", ".npz"):
        return
    if channels not in (1, 3):
        raise UsageError(f"the model takes {channels}-channel input: calibrate it from a .npy/.npz of "
                         f"preprocessed (N, {channels}, H, W) inputs, not from images")
    check_yaml_channels(source, channels)


def _yaml_train_images(path: Path) -> list[Path]:
    data = read_data_yaml(path)
    if "train" not in data:
        raise UsageError(f"data YAML '{path}' has no 'train' entry")
    root = Path(data.get("path") or path.parent)
    if not root.is_absolute():
        root = (path.parent / root) if (path.parent / root).exists() else root
    entries = data["train"] if isinstance(data["train"], list) else [data["train"]]
    files: list[Path] = []
    for entry in entries:
        sub = Path(entry) if Path(entry).is_absolute() else root / entry
        if sub.is_dir():
            files += sorted(f for f in sub.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif sub.suffix == ".txt" and sub.is_file():
            files += [Path(line.strip()) if Path(line.strip()).is_absolute() else root / line.strip()
                      for line in sub.read_text().splitlines() if line.strip()]
    if not files:
        raise UsageError(f"data YAML '{path}': no training images found under {root}")
    return files


def pick(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` paths spread evenly over the sorted list (deterministic)."""
    if n >= len(paths):
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in idx]


def read_image(path: Path, channels: int = 3) -> np.ndarray | None:
    """One image as cv2 reads it for a ``channels``-channel model: HWC uint8, BGR (3) or grayscale with
    C = 1 (``IMREAD_GRAYSCALE``, as Ultralytics reads grayscale data); None if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
    return image[..., None] if image is not None and image.ndim == 2 else image


def load_calibration(source: str, n: int, input_shape: Sequence[int], preprocess: Preprocess,
                     progress: Progress | None = None) -> np.ndarray:
    """An (N, C, H, W) float32 array of calibration inputs for a model with ``input_shape``;
    ``preprocess`` turns one image (HWC uint8 with C of ``input_shape``, see ``read_image``) into the
    model's input (the frontend's deployed preprocessing)."""
    if n < 1:
        raise UsageError(f"--calib-n must be at least 1, got {n}")
    p = Path(source)
    if p.suffix.lower() in (".npy", ".npz"):
        return _load_array(p, input_shape)[:n]
    check_channels(source, int(input_shape[1]))
    data, _ = _read_images(source, pick(image_paths(source), n), preprocess, progress, int(input_shape[1]))
    if len(data) < min(n, 8):
        log.warning("calibration uses only %d images; ranges may be poor (pass more with --calib-n)", len(data))
    return data


def holdout_split(total: int, n: int, holdout: int) -> tuple[list[int], list[int]]:
    """Indices of ``total`` samples split into (range samples, held-out samples), deterministically.

    With ``total >= n + holdout`` the range samples are the same ``n`` that ``pick`` spreads over all
    samples and the held-out ones are spread over the rest; a smaller source keeps a quarter of its
    samples (at most ``holdout``, at least one when there are two) aside and uses the others for ranges."""
    if total >= n + holdout:
        ranges = [int(i) for i in pick(range(total), n)]
        k = holdout
    else:
        k = min(holdout, max(total // 4, 1 if total >= 2 else 0))
        ranges = []
    rest = [i for i in range(total) if i not in set(ranges)]
    held = [int(i) for i in pick(rest, k)] if k else []
    if not ranges:
        ranges = [i for i in rest if i not in set(held)][:n]
    return ranges, held


def load_split(source: str, n: int, holdout: int, input_shape: Sequence[int], preprocess: Preprocess,
               progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Calibration inputs split into (range inputs, held-out inputs), each (N, C, H, W) float32: the
    held-out ones are never used for ranges, only to score them (see ``holdout_split``); the held-out
    array is empty when the source has a single sample."""
    if n < 1:
        raise UsageError(f"--calib-n must be at least 1, got {n}")
    p = Path(source)
    if p.suffix.lower() in (".npy", ".npz"):
        data = _load_array(p, input_shape)
        ranges, held = holdout_split(len(data), n, holdout)
        return data[ranges], data[held]
    check_channels(source, int(input_shape[1]))
    paths = image_paths(source)
    ranges, held = holdout_split(len(paths), n, holdout)
    order = sorted(ranges + held)  # read in path order, so that warnings name the first bad file
    data, read = _read_images(source, [paths[i] for i in order], preprocess, progress, int(input_shape[1]))
    in_ranges = np.array([i in set(ranges) for i, ok in zip(order, read) if ok])
    if not in_ranges.any():  # none of the range images readable: the held-out ones give ranges instead
        return data, data[:0]
    return data[in_ranges], data[~in_ranges]


def _read_images(source: str, paths: Sequence[Path], preprocess: Preprocess,
                 progress: Progress | None = None, channels: int = 3) -> tuple[np.ndarray, list[bool]]:
    """``paths`` read with ``channels`` and preprocessed into one (N, C, H, W) array, and which of them
    were read; unreadable images are skipped with one warning, and none readable is a ``UsageError``."""
    arrays, bad = [], []
    for i, path in enumerate(paths, 1):
        image = read_image(path, channels)
        arr = None if image is None else preprocess(image)
        if arr is None:
            bad.append(path)
        else:
            arrays.append(arr)
        if progress:
            progress(i, len(paths))
    if not arrays:
        raise UsageError(f"no usable calibration images in '{source}': 0 of {len(paths)} could be read "
                         f"(first unreadable: '{bad[0]}')")
    if bad:
        log.warning("calibration: %d of %d images unreadable and skipped (first: %s); using %d",
                    len(bad), len(paths), bad[0], len(arrays))
    return np.stack(arrays), [p not in bad for p in paths]


def _load_array(path: Path, input_shape: Sequence[int]) -> np.ndarray:
    """Every sample of a .npy/.npz file, checked against the model's input shape."""
    if not path.is_file():
        raise UsageError(f"calibration source '{path}' does not exist")
    try:
        data = np.load(path)
        if isinstance(data, np.lib.npyio.NpzFile):
            if not data.files:
                raise UsageError(f"calibration file '{path}' is an empty .npz")
            data = data[data.files[0]]
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read calibration file '{path}': {type(e).__name__}") from e
    try:
        data = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise UsageError(f"calibration array '{path}' does not hold numbers ({data.dtype}): "
                         f"{str(e).splitlines()[0]}") from e
    want = tuple(int(d) for d in input_shape[1:])
    if data.ndim == len(want):
        data = data[None]
    if tuple(data.shape[1:]) != want:
        raise UsageError(f"calibration array '{path}' has samples of shape {list(data.shape[1:])}; "
                         f"the model takes {list(want)}")
    if len(data) == 0:
        raise UsageError(f"calibration array '{path}' is empty")
    if not np.isfinite(data).all():
        raise UsageError(f"calibration array '{path}' contains NaN or Inf")
    return data


def fingerprint(data: np.ndarray) -> str:
    """Content hash of calibration inputs (for the calibration cache key)."""
    h = hashlib.sha256()
    h.update(str(data.shape).encode())
    h.update(np.ascontiguousarray(data).tobytes())
    return h.hexdigest()
