#!/usr/bin/env python
"""Build a small, real, labelled YOLO dataset from scikit-learn's bundled handwritten digits.

The source is ``sklearn.datasets.load_digits`` (1797 grey 8x8 scans of handwritten digits, 10 classes,
shipped inside scikit-learn, so nothing is downloaded). The source digits are split *by index* into three
disjoint pools (train / val / calib); every image of a split only uses digits from its own pool.

Each detection image is a cluttered RGB canvas (default 160x160) with 1-6 digits pasted on it:

* background: two-colour gradient + low-frequency colour noise + random lines, ellipses, rectangles;
* digits: upsampled from 8x8 to 14-48 px (linear / cubic interpolation, log-uniform size), aspect jitter,
  small rotation and shear, random stroke weight, random ink hue with a minimum luma contrast to the local
  background, random opacity; one ink polarity per image (85% dark ink on a light background);
* partial overlap between digits is allowed (bounded IoU), later digits occlude earlier ones;
* distractors: stroke-like polylines and arcs with digit-like thickness, some drawn over the digits;
* finishing: optional blur and additive Gaussian noise;
* every image draws a difficulty level d ~ U(0, 1) that scales clutter counts, texture amplitude, noise
  and the minimum ink contrast (see the knobs below).

The classification variant is 64x64 crops with one digit (22-50 px) each, the same clutter, and
sometimes a cut-off neighbour digit at the border; classes are balanced.

Labels are YOLO txt files (``class cx cy w h``, normalised) whose box is the tight bbox of the digit's ink
(pixels of the pasted alpha mask above ``INK_THRESHOLD``), before occlusion (amodal box).

Layout written under ``--out`` (default: ``examples/digits/data`` next to this script)::

    digits.yaml                      Ultralytics detection data file (no ``path:`` key, see below)
    train/images/*.png  train/labels/*.txt
    val/images/*.png    val/labels/*.txt
    calib/images/*.png  calib/labels/*.txt   (calibration images for post-training quantisation)
    test/images/*.png   test/labels/*.txt    (held-out test canvases, see below)
    cls/train/<0-9>/*.png  cls/val/<0-9>/*.png  cls/test/<0-9>/*.png   (classification variant)

The ``test`` split (detection and classification) is drawn from the *calib* pool of source digits with
its own seeds: it is never trained on and never used to pick a checkpoint (Ultralytics picks on val) or
a hyperparameter, so numbers on it are held out. Calibration only sets activation ranges.

``digits.yaml`` has no ``path:`` key on purpose: Ultralytics then uses the directory containing the YAML
file as the dataset root (``ultralytics.data.utils.check_det_dataset``), so the file works from any
working directory and the generated data stays relocatable. (A *relative* ``path:`` would instead be
resolved against the current working directory, falling back to the Ultralytics ``DATASETS_DIR``.)

Generation is deterministic: each image is drawn from its own ``numpy.random.default_rng`` seeded by
(seed, split, index), so output does not depend on ordering. Only numpy + OpenCV are used.

Usage (from the repository root)::

    python examples/digits/make_dataset.py        # defaults: det 1000/200/128/400 images, cls 2000/300/500 crops
    python examples/digits/make_dataset.py --out /tmp/digits --seed 1 --n-train 200
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"

SPLITS = ("train", "val", "calib", "test")
SPLIT_IDS = {"train": 0, "val": 1, "calib": 2, "cls_train": 3, "cls_val": 4, "test": 5, "cls_test": 6,
             "task_train": 7, "task_val": 8, "task_calib": 9, "task_test": 10}
# Fractions of the 1797 source digits given to each split (disjoint, by shuffled index).
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "calib": 0.2}

INK_THRESHOLD = 0.25  # alpha above which a pixel counts as ink for the tight bbox

# ---- task canvases (segment, pose, oriented boxes) ----------------------------------------------
TASK_SETS = ("seg", "pose", "obb")
TASK_ANGLE = 45.0  # rotation range (degrees, +-) of the task canvases' digits, so that angles matter
KEYPOINTS = ("top-left", "top-right", "bottom-right", "bottom-left", "centre")  # of the upright digit
FLIP_IDX = (1, 0, 3, 2, 4)  # keypoint order after a horizontal flip (Ultralytics' flip_idx)
COVER_ALPHA = 0.05  # alpha above which a later digit hides what lies under it (keypoint visibility)

# ---- difficulty knobs (detection) --------------------------------------------------------------
DIGIT_SIZE = (14, 48)  # digit height in px on the 160 px canvas (scaled with --imgsz)
DIGITS_PER_IMAGE = (1, 6)
MAX_IOU = 0.30  # maximum IoU between two digit boxes (partial overlap allowed)
MAX_COVER = 0.45  # maximum fraction of an existing box covered by a new one
# Every image draws its own difficulty level d ~ U(0, 1); clutter counts, texture amplitude, noise and the
# minimum ink contrast are interpolated with d. Easy images give from-scratch training a foothold, hard
# ones keep the metrics away from saturation.
CONTRAST = (140.0, 60.0)  # minimum ink-vs-local-background luma difference at d=0 and d=1
# Ink polarity: mostly dark ink on a light background. Mixed 50/50 polarity with random colours made
# from-scratch yolov8n(-cls) training stall at chance for many epochs, so light-on-dark is the minority.
LIGHT_INK_PROB = 0.15
BG_LUMA_LIGHT = (110.0, 255.0)  # base background luma range for dark ink
BG_LUMA_DARK = (0.0, 120.0)  # ... and for light ink
BG_BLOTCH_AMP = (3.0, 30.0)  # amplitude of the low-frequency colour noise at d=0 and d=1
N_BG_LINES = 5  # maximum counts at d=1 (at level d: uniform in 0..round(d * max))
N_BG_SHAPES = 4
N_DISTRACTORS = 3  # digit-like strokes under the digits
N_OVER_STROKES = 1  # thin strokes drawn over the digits
NOISE_SIGMA = (2.0, 12.0)  # additive Gaussian noise sigma at d=0 and d=1
BLUR_PROB = 0.3  # times d

# ---- difficulty knobs (classification, 64 px crops) --------------------------------------------
CLS_DIGIT_SIZE = (22, 50)
CLS_BG_LINES = 2  # maximum counts at d=1, as above
CLS_BG_SHAPES = 2
CLS_DISTRACTORS = 2
CLS_NEIGHBOURS = 1  # cut-off neighbour digits at the border
CLS_OVER_STROKES = 1


def rint(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    """Random integer in the closed range lo_hi."""
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def upto(rng: np.random.Generator, d: float, hi: int) -> int:
    """Random count in 0..round(d * hi)."""
    return int(rng.integers(0, int(round(d * hi)) + 1))


def lerp(lo_hi: tuple[float, float], d: float) -> float:
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * d


def luminance(c: np.ndarray) -> float:
    """Luma of a BGR colour."""
    return float(0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2])


def random_color(rng: np.random.Generator, luma: tuple[float, float] = (0.0, 255.0)) -> np.ndarray:
    """Uniform random BGR colour, rejection-sampled to a luma range."""
    for _ in range(100):
        c = rng.uniform(0, 255, size=3).astype(np.float32)
        if luma[0] <= luminance(c) <= luma[1]:
            return c
    return np.full(3, (luma[0] + luma[1]) / 2, np.float32)


# ---- backgrounds -------------------------------------------------------------------------------
def make_background(
    rng: np.random.Generator, h: int, w: int, dark_ink: bool, d: float, n_lines=N_BG_LINES, n_shapes=N_BG_SHAPES
) -> np.ndarray:
    """Textured float32 BGR background in [0, 255]; light base colours for dark ink and vice versa."""
    luma = BG_LUMA_LIGHT if dark_ink else BG_LUMA_DARK
    c0, c1 = random_color(rng, luma), random_color(rng, luma)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (np.cos(ang) * xx + np.sin(ang) * yy) / max(h, w)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]

    # low-frequency colour noise (blotches)
    g = rint(rng, (3, 10))
    amp = lerp(BG_BLOTCH_AMP, d) * rng.uniform(0.5, 1.0)
    low = rng.normal(0, 1, size=(g, g, 3)).astype(np.float32)
    img += amp * cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)

    # mid-frequency texture
    if rng.random() < d:
        g2 = rint(rng, (16, 40))
        mid = rng.normal(0, 1, size=(g2, g2, 1)).astype(np.float32)
        img += rng.uniform(5, 20) * cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]

    img = np.clip(img, 0, 255)
    scale = max(h, w) / 160.0
    for _ in range(upto(rng, d, n_shapes)):
        overlay = img.copy()
        color = tuple(float(v) for v in random_color(rng))
        kind = rng.integers(3)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:
            axes = (int(rng.integers(4, 40) * scale), int(rng.integers(4, 40) * scale))
            thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 4))
            cv2.ellipse(overlay, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, thick, cv2.LINE_AA)
        elif kind == 1:
            x2, y2 = cx + int(rng.integers(-50, 50) * scale), cy + int(rng.integers(-50, 50) * scale)
            thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 4))
            cv2.rectangle(overlay, (cx, cy), (x2, y2), color, thick, cv2.LINE_AA)
        else:
            cv2.circle(overlay, (cx, cy), int(rng.integers(2, 12) * scale), color, -1, cv2.LINE_AA)
        a = rng.uniform(0.3, 0.9)
        img = img * (1 - a) + overlay * a
    for _ in range(upto(rng, d, n_lines)):
        p1 = (int(rng.integers(-20, w + 20)), int(rng.integers(-20, h + 20)))
        p2 = (int(rng.integers(-20, w + 20)), int(rng.integers(-20, h + 20)))
        color = tuple(float(v) for v in random_color(rng))
        cv2.line(img, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def draw_strokes(img: np.ndarray, rng: np.random.Generator, n: int, size_range: tuple[float, float], thin=False):
    """Digit-like distractor strokes: short polylines / arcs with stroke widths like an upsampled digit."""
    h, w = img.shape[:2]
    for _ in range(n):
        size = rng.uniform(*size_range)
        thick = 1 if thin else max(1, int(round(size / rng.uniform(5, 9))))
        color = tuple(float(v) for v in random_color(rng))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:  # polyline
            k = rint(rng, (2, 4))
            pts = np.stack([cx + rng.uniform(-size / 2, size / 2, k), cy + rng.uniform(-size / 2, size / 2, k)], 1)
            cv2.polylines(img, [pts.astype(np.int32)], False, color, thick, cv2.LINE_AA)
        else:  # arc
            axes = (max(1, int(size * rng.uniform(0.15, 0.5))), max(1, int(size * rng.uniform(0.15, 0.5))))
            start = rng.uniform(0, 360)
            cv2.ellipse(
                img,
                (int(cx), int(cy)),
                axes,
                float(rng.uniform(0, 180)),
                start,
                start + rng.uniform(90, 300),
                color,
                thick,
                cv2.LINE_AA,
            )


# ---- digits ------------------------------------------------------------------------------------
class Geometry(NamedTuple):
    """Where one rendered digit's parts are, in its mask's pixel coordinates (x, y).

    ``corners``: (4, 2) float array, the upright digit's tight ink box (before rotation and shear)
    carried through the same affine warp, in the order top-left, top-right, bottom-right,
    bottom-left of the upright digit; ``centre``: (2,) float array, that box's centre, warped.
    """

    corners: np.ndarray
    centre: np.ndarray


def render_digit(src: np.ndarray, height: float, rng: np.random.Generator, max_angle: float = 12.0,
                 geometry: bool = False):
    """Upsample one 8x8 digit (values 0..16) to an alpha mask about ``height`` px tall.

    ``max_angle``: rotation drawn from U(-max_angle, max_angle) degrees. With ``geometry`` the mask is
    padded so that a large rotation does not cut the digit off, and a ``Geometry`` is returned too.

    Returns (mask float32 in [0,1], (x0, y0, x1, y1) tight ink bbox inside the mask, exclusive ends),
    plus the ``Geometry`` when ``geometry`` is set.
    """
    a = np.pad(src.astype(np.float32) / 16.0, 2)  # 12x12, padding keeps interpolation edges clean
    sy = height / 8.0
    sx = sy * rng.uniform(0.75, 1.15)
    interp = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
    m = cv2.resize(a, (max(2, round(12 * sx)), max(2, round(12 * sy))), interpolation=interp)
    angle = rng.uniform(-max_angle, max_angle)
    shear = rng.uniform(-0.15, 0.15)
    corners = centre = None
    if geometry:
        pad = int(np.ceil(0.3 * max(m.shape)))  # room for a 45-degree turn plus shear
        m = np.pad(m, pad)
        ys, xs = np.nonzero(m > INK_THRESHOLD)
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        centre = corners.mean(0)
    hh, ww = m.shape
    cx, cy = ww / 2, hh / 2
    M = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    M[0, 1] += shear
    M[0, 2] -= shear * cy
    m = cv2.warpAffine(m, M, (ww, hh), flags=cv2.INTER_LINEAR, borderValue=0)
    m = np.clip(m, 0, 1) ** rng.uniform(0.6, 1.2)  # stroke weight
    ys, xs = np.nonzero(m > INK_THRESHOLD)
    if len(xs) == 0:  # cannot happen for load_digits, kept for safety
        box = (0, 0, m.shape[1], m.shape[0])
    else:
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    if not geometry:
        return m, box
    warp = lambda pts: pts @ M[:, :2].T + M[:, 2]  # noqa: E731
    return m, box, Geometry(warp(corners), warp(centre[None])[0])


def ink_color(rng: np.random.Generator, bg_mean: np.ndarray, min_contrast: float, dark_ink: bool) -> np.ndarray:
    """Random ink colour darker (dark_ink) or lighter than the local background by at least min_contrast luma."""
    lb = luminance(bg_mean)
    room = lb if dark_ink else 255.0 - lb  # largest reachable contrast
    d = rng.uniform(min(min_contrast, room), max(room, min_contrast))
    target = lb - d if dark_ink else lb + d
    c = random_color(rng)
    c = np.clip(c + (target - luminance(c)), 0, 255)  # shift the random hue to the target luma
    return c.astype(np.float32)


def paste(img: np.ndarray, mask: np.ndarray, x: int, y: int, color: np.ndarray, opacity: float):
    hh, ww = mask.shape
    a = (mask * opacity)[..., None]
    roi = img[y : y + hh, x : x + ww]
    img[y : y + hh, x : x + ww] = roi * (1 - a) + color[None, None, :] * a


def box_iou(a, b) -> tuple[float, float]:
    """IoU of a and b, and the fraction of b covered by a. Boxes are (x0, y0, x1, y1)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / max(area_a + area_b - inter, 1e-6), inter / max(area_b, 1e-6)


def finish(img: np.ndarray, rng: np.random.Generator, d: float) -> np.ndarray:
    if rng.random() < BLUR_PROB * d:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
    img = img + rng.normal(0, lerp(NOISE_SIGMA, d) * rng.uniform(0.5, 1.0), size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class Instance(NamedTuple):
    """One pasted digit of a task canvas: its class, its alpha mask placed at (x, y) on the canvas,
    and its ``Geometry`` in the mask's coordinates."""

    cls: int
    mask: np.ndarray
    x: int
    y: int
    geometry: Geometry


def make_detection_image(rng, images, targets, pool, imgsz, max_angle: float = 12.0, instances: list | None = None):
    """One cluttered canvas. Returns (uint8 BGR image, list of (cls, x0, y0, x1, y1)).

    ``instances``: a list to append each pasted digit's ``Instance`` to (task canvases: segmentation,
    pose and oriented boxes are derived from them); ``max_angle``: the digits' rotation range in degrees.
    """
    h = w = imgsz
    scale = imgsz / 160.0
    d = float(rng.uniform())  # difficulty level of this image
    dark_ink = rng.random() >= LIGHT_INK_PROB  # one ink polarity per image
    img = make_background(rng, h, w, dark_ink, d)
    draw_strokes(img, rng, upto(rng, d, N_DISTRACTORS), (DIGIT_SIZE[0] * scale, DIGIT_SIZE[1] * scale))
    boxes = []
    n = rint(rng, DIGITS_PER_IMAGE)
    for _ in range(n):
        idx = int(pool[rng.integers(len(pool))])
        placed = False
        for _attempt in range(30):
            # log-uniform size so small digits are as common as big ones
            height = float(np.exp(rng.uniform(np.log(DIGIT_SIZE[0]), np.log(DIGIT_SIZE[1])))) * scale
            rendered = render_digit(images[idx], height, rng, max_angle, geometry=instances is not None)
            mask, (bx0, by0, bx1, by1) = rendered[:2]
            mh, mw = mask.shape
            if mh > h or mw > w:
                continue
            x = int(rng.integers(0, w - mw + 1))
            y = int(rng.integers(0, h - mh + 1))
            box = (x + bx0, y + by0, x + bx1, y + by1)
            if all(
                (iou := box_iou(box, b[1:]))[0] <= MAX_IOU and iou[1] <= MAX_COVER and box_iou(b[1:], box)[1] <= MAX_COVER
                for b in boxes
            ):
                bg_mean = img[box[1] : box[3], box[0] : box[2]].reshape(-1, 3).mean(0)
                color = ink_color(rng, bg_mean, lerp(CONTRAST, d), dark_ink)
                paste(img, mask, x, y, color, rng.uniform(0.75, 1.0))
                boxes.append((int(targets[idx]), *box))
                if instances is not None:
                    instances.append(Instance(int(targets[idx]), mask, x, y, rendered[2]))
                placed = True
                break
        if not placed:
            continue
    draw_strokes(img, rng, upto(rng, d, N_OVER_STROKES), (10 * scale, 50 * scale), thin=True)
    return finish(img, rng, d), boxes


def make_cls_image(rng, images, targets, pool_by_class, cls, imgsz):
    """One classification crop: a single digit of class ``cls`` with clutter and cut-off neighbours."""
    h = w = imgsz
    scale = imgsz / 64.0
    d = float(rng.uniform())  # difficulty level of this image
    dark_ink = rng.random() >= LIGHT_INK_PROB  # one ink polarity per image
    img = make_background(rng, h, w, dark_ink, d, CLS_BG_LINES, CLS_BG_SHAPES)
    draw_strokes(img, rng, upto(rng, d, CLS_DISTRACTORS), (14 * scale, 40 * scale))
    # cut-off neighbour digits at the border (other classes allowed) as distractors
    pool_all = np.concatenate(list(pool_by_class.values()))
    for _ in range(upto(rng, d, CLS_NEIGHBOURS)):
        j = int(pool_all[rng.integers(len(pool_all))])
        mask, _ = render_digit(images[j], rng.uniform(28, 50) * scale, rng)
        mh, mw = mask.shape
        side = rng.integers(4)
        # centre well outside the canvas so at most ~1/3 of the neighbour is visible
        if side == 0:
            x, y = -int(mw * rng.uniform(0.7, 0.9)), int(rng.integers(-mh // 2, h - mh // 2))
        elif side == 1:
            x, y = w - int(mw * rng.uniform(0.1, 0.3)), int(rng.integers(-mh // 2, h - mh // 2))
        elif side == 2:
            x, y = int(rng.integers(-mw // 2, w - mw // 2)), -int(mh * rng.uniform(0.7, 0.9))
        else:
            x, y = int(rng.integers(-mw // 2, w - mw // 2)), h - int(mh * rng.uniform(0.1, 0.3))
        canvas = np.zeros((h + 2 * 64, w + 2 * 64), np.float32)  # paste via padded canvas to clip
        ox, oy = x + 64, y + 64
        if 0 <= ox and ox + mw <= canvas.shape[1] and 0 <= oy and oy + mh <= canvas.shape[0]:
            canvas[oy : oy + mh, ox : ox + mw] = mask
            full = canvas[64 : 64 + h, 64 : 64 + w]
            color = ink_color(rng, img.reshape(-1, 3).mean(0), lerp(CONTRAST, d), dark_ink)
            paste(img, full, 0, 0, color, rng.uniform(0.75, 1.0))
    pool = pool_by_class[cls]
    idx = int(pool[rng.integers(len(pool))])
    for _ in range(30):
        mask, (bx0, by0, bx1, by1) = render_digit(images[idx], rng.uniform(*CLS_DIGIT_SIZE) * scale, rng)
        mh, mw = mask.shape
        if mh <= h and mw <= w:
            break
    mh, mw = mask.shape
    x = int(rng.integers(0, w - mw + 1)) if w > mw else 0
    y = int(rng.integers(0, h - mh + 1)) if h > mh else 0
    mask = mask[: h - y, : w - x]
    bg_mean = img[y + by0 : y + by1, x + bx0 : x + bx1].reshape(-1, 3).mean(0)
    color = ink_color(rng, bg_mean, lerp(CONTRAST, d), dark_ink)
    paste(img, mask, x, y, color, rng.uniform(0.75, 1.0))
    draw_strokes(img, rng, upto(rng, d, CLS_OVER_STROKES), (8 * scale, 30 * scale), thin=True)
    return finish(img, rng, d)


# ---- task labels --------------------------------------------------------------------------------
def mask_polygon(mask: np.ndarray) -> np.ndarray | None:
    """One polygon, (N, 2) pixel coordinates (x, y), tracing every external contour of the binary
    ``mask``: further contours are spliced into the largest one at their closest points (out along a
    zero-width bridge and back), so a digit whose ink falls apart in pieces stays one instance.
    None when the mask is empty or smaller than a triangle."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = sorted((c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 3),
                   key=lambda c: -cv2.contourArea(c.astype(np.float32)))
    if not parts:
        return None
    poly = parts[0]
    for part in parts[1:]:
        dist = ((poly[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(dist.argmin()), dist.shape)
        poly = np.concatenate([poly[: i + 1], np.roll(part, -j, 0), part[:1] if j == 0 else part[j : j + 1], poly[i:]])
    return poly


def task_labels(instances: list[Instance], imgsz: int) -> dict[str, list[str]]:
    """Ultralytics label lines per task set for one canvas's pasted digits (normalised coordinates).

    * ``seg``: the digit's visible ink (alpha above ``INK_THRESHOLD``, less what later digits paint
      over) as one polygon; a digit hidden entirely has no segment;
    * ``obb``: the tightest rotated rectangle around the digit's ink (``cv2.minAreaRect``), its 4 corners;
    * ``pose``: the tight ink box, then ``KEYPOINTS`` (x, y, visibility): 2 visible, 1 covered by a
      later digit (its alpha above ``COVER_ALPHA`` there), 0 outside the canvas.
    """
    owner = np.full((imgsz, imgsz), -1, np.int32)  # the last digit whose ink painted each pixel
    cover = np.full((imgsz, imgsz), -1, np.int32)  # the last digit whose soft extent reached it
    for k, inst in enumerate(instances):
        mh, mw = inst.mask.shape
        owner[inst.y : inst.y + mh, inst.x : inst.x + mw][inst.mask > INK_THRESHOLD] = k
        cover[inst.y : inst.y + mh, inst.x : inst.x + mw][inst.mask > COVER_ALPHA] = k
    fmt = lambda pts: " ".join(f"{v:.6f}" for v in np.clip(np.asarray(pts) / imgsz, 0, 1).ravel())  # noqa: E731
    out: dict[str, list[str]] = {t: [] for t in TASK_SETS}
    for k, inst in enumerate(instances):
        poly = mask_polygon(owner == k)
        if poly is not None:
            out["seg"].append(f"{inst.cls} {fmt(poly)}")
        ys, xs = np.nonzero(inst.mask > INK_THRESHOLD)
        ink = np.stack([xs + inst.x, ys + inst.y], 1).astype(np.float32)
        out["obb"].append(f"{inst.cls} {fmt(cv2.boxPoints(cv2.minAreaRect(ink)))}")
        x0, y0, x1, y1 = ink[:, 0].min(), ink[:, 1].min(), ink[:, 0].max() + 1, ink[:, 1].max() + 1
        box = fmt([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
        kpts = []
        for px, py in np.vstack([inst.geometry.corners, inst.geometry.centre[None]]) + (inst.x, inst.y):
            ix, iy = int(np.floor(px)), int(np.floor(py))
            if not (0 <= ix < imgsz and 0 <= iy < imgsz):
                kpts.append(f"{0.0:.6f} {0.0:.6f} 0")
                continue
            visible = 1 if cover[iy, ix] > k else 2
            kpts.append(f"{px / imgsz:.6f} {py / imgsz:.6f} {visible}")
        out["pose"].append(f"{inst.cls} {box} {' '.join(kpts)}")
    return out


def build_task_sets(out: Path, seed: int, counts: dict[str, int], imgsz: int, images, targets, pools,
                    task_sets=TASK_SETS, max_angle: float = TASK_ANGLE) -> dict:
    """The segment, pose and OBB datasets: one set of canvases (digits rotated up to ``max_angle``),
    written once per task set under ``out/<set>/<split>/{images,labels}`` with that task's labels, and
    ``out/digits-<set>.yaml``."""
    stats = {}
    for split in SPLITS:
        for t in task_sets:
            (out / t / split / "images").mkdir(parents=True, exist_ok=True)
            (out / t / split / "labels").mkdir(parents=True, exist_ok=True)
        n_inst = 0
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, SPLIT_IDS[f"task_{split}"], i])
            instances: list[Instance] = []
            img, _ = make_detection_image(rng, images, targets, pools[split], imgsz, max_angle, instances)
            png = cv2.imencode(".png", img)[1].tobytes()
            labels = task_labels(instances, imgsz)
            stem = f"{split}_{i:05d}"
            for t in task_sets:
                (out / t / split / "images" / f"{stem}.png").write_bytes(png)
                lines = labels[t]
                (out / t / split / "labels" / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            n_inst += len(instances)
        stats[split] = (counts[split], n_inst)
    names = "\n".join(f"  {i}: '{i}'" for i in range(10))
    for t in task_sets:
        extra = (f"# keypoints: {', '.join(KEYPOINTS)} of the upright digit's ink box\n"
                 f"kpt_shape: [{len(KEYPOINTS)}, 3]\nflip_idx: [{', '.join(map(str, FLIP_IDX))}]\n") if t == "pose" else ""
        (out / f"digits-{t}.yaml").write_text(
            "# Generated by examples/digits/make_dataset.py -- do not edit, regenerate instead.\n"
            f"# {t} labels on digit canvases rotated up to {max_angle:g} degrees; no 'path:' key (see digits.yaml).\n"
            f"# seed={seed} imgsz={imgsz} sizes={counts}\n"
            f"train: {t}/train/images\nval: {t}/val/images\ncalib: {t}/calib/images\ntest: {t}/test/images\n"
            f"{extra}names:\n{names}\n")
    return stats


# ---- main --------------------------------------------------------------------------------------
def split_pools(n_src: int, seed: int) -> dict[str, np.ndarray]:
    """Disjoint pools of source-digit indices per split (shuffled by seed, cut by SPLIT_FRACTIONS)."""
    perm = np.random.default_rng(seed).permutation(n_src)
    n_train = int(round(SPLIT_FRACTIONS["train"] * n_src))
    n_val = int(round(SPLIT_FRACTIONS["val"] * n_src))
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "calib": np.sort(perm[n_train + n_val :]),
        "test": np.sort(perm[n_train + n_val :]),  # held-out canvases from the calib pool (see the docstring)
    }


def write_yolo_label(path: Path, boxes, imgsz: int):
    lines = []
    for c, x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 / imgsz, (y0 + y1) / 2 / imgsz
        bw, bh = (x1 - x0) / imgsz, (y1 - y0) / imgsz
        lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def build_detection(out: Path, seed: int, counts: dict[str, int], imgsz: int, images, targets, pools) -> dict:
    stats = {}
    for split in SPLITS:
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
        n_boxes = 0
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, SPLIT_IDS[split], i])
            img, boxes = make_detection_image(rng, images, targets, pools[split], imgsz)
            stem = f"{split}_{i:05d}"
            cv2.imwrite(str(out / split / "images" / f"{stem}.png"), img)
            write_yolo_label(out / split / "labels" / f"{stem}.txt", boxes, imgsz)
            n_boxes += len(boxes)
        stats[split] = (counts[split], n_boxes)
    names = "\n".join(f"  {i}: '{i}'" for i in range(10))
    (out / "digits.yaml").write_text(
        "# Generated by examples/digits/make_dataset.py -- do not edit, regenerate instead.\n"
        "# No 'path:' key: Ultralytics then uses this file's directory as the dataset root,\n"
        "# so the YAML works from any working directory.\n"
        f"# seed={seed} imgsz={imgsz} sizes={counts}\n"
        "train: train/images\n"
        "val: val/images\n"
        "# calibration images (disjoint source digits) for post-training quantisation; not used by Ultralytics\n"
        "calib: calib/images\n"
        "# held-out canvases (calib-pool digits); never trained on or used to pick a checkpoint\n"
        "test: test/images\n"
        "names:\n"
        f"{names}\n"
    )
    return stats


def build_classification(out: Path, seed: int, counts: dict[str, int], imgsz: int, images, targets, pools) -> dict:
    stats = {}
    for split in ("train", "val", "test"):
        by_class = {c: pools[split][targets[pools[split]] == c] for c in range(10)}
        for c in range(10):
            (out / split / str(c)).mkdir(parents=True, exist_ok=True)
        for i in range(counts[split]):
            cls = i % 10  # balanced classes
            rng = np.random.default_rng([seed, SPLIT_IDS[f"cls_{split}"], i])
            img = make_cls_image(rng, images, targets, by_class, cls, imgsz)
            cv2.imwrite(str(out / split / str(cls) / f"{split}_{i:05d}.png"), img)
        stats[split] = counts[split]
    return stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-calib", type=int, default=128)
    p.add_argument("--n-test", type=int, default=400, help="held-out detection test images")
    p.add_argument("--imgsz", type=int, default=160, help="detection canvas size (square)")
    p.add_argument("--n-cls-train", type=int, default=2000, help="classification train crops (0 to skip)")
    p.add_argument("--n-cls-val", type=int, default=300, help="classification val crops")
    p.add_argument("--n-cls-test", type=int, default=500, help="held-out classification test crops")
    p.add_argument("--cls-imgsz", type=int, default=64, help="classification crop size (square)")
    p.add_argument("--no-det", action="store_true", help="skip the detection dataset")
    p.add_argument("--tasks", default=",".join(TASK_SETS),
                   help="task datasets to write, comma-separated from seg,pose,obb ('' for none; default: %(default)s)")
    p.add_argument("--task-angle", type=float, default=TASK_ANGLE, help="task canvases' rotation range, +- degrees")
    args = p.parse_args(argv)

    t0 = time.time()
    out: Path = args.out
    ds = load_digits()
    images, targets = ds.images, ds.target.astype(np.int64)
    pools = split_pools(len(images), args.seed)
    for a, b in (("train", "val"), ("train", "calib"), ("val", "calib")):
        assert not set(pools[a]) & set(pools[b])

    # remove only what this script writes, so stale files and Ultralytics *.cache files never survive
    task_sets = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(task_sets) - set(TASK_SETS))
    if unknown:
        p.error(f"unknown task set(s) {', '.join(unknown)}; choose from {', '.join(TASK_SETS)}")
    subs = ([] if args.no_det else [*SPLITS]) + (["cls"] if args.n_cls_train > 0 else []) + task_sets
    for sub in subs:
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    if not args.no_det:
        (out / "digits.yaml").unlink(missing_ok=True)
    for t in task_sets:
        (out / f"digits-{t}.yaml").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    if not args.no_det:
        counts = {"train": args.n_train, "val": args.n_val, "calib": args.n_calib, "test": args.n_test}
        stats = build_detection(out, args.seed, counts, args.imgsz, images, targets, pools)
        for split, (n_img, n_box) in stats.items():
            print(f"det {split:5s}: {n_img:5d} images, {n_box:5d} boxes, {len(pools[split])} source digits")
    if args.n_cls_train > 0:
        counts = {"train": args.n_cls_train, "val": args.n_cls_val, "test": args.n_cls_test}
        stats = build_classification(out / "cls", args.seed, counts, args.cls_imgsz, images, targets, pools)
        for split, n in stats.items():
            print(f"cls {split:5s}: {n:5d} images")
    if task_sets:
        counts = {"train": args.n_train, "val": args.n_val, "calib": args.n_calib, "test": args.n_test}
        stats = build_task_sets(out, args.seed, counts, args.imgsz, images, targets, pools, task_sets, args.task_angle)
        for split, (n_img, n_inst) in stats.items():
            print(f"{'/'.join(task_sets)} {split:5s}: {n_img:5d} images, {n_inst:5d} digits")
    print(f"wrote {out} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
