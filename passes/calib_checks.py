"""Checks of a calibration set: too few images for the method, or images unlike the ones held out.

Both give at most one warning line each; the facts go to the ``calibrate`` stage of the report.
"""

from __future__ import annotations

#: Fewest range images each method needs: minmax takes the extremes it saw, so a few images miss the
#: rare large activations; the histogram methods (entropy, percentile) estimate a distribution's tail,
#: which needs more. Ultralytics recommends 300+ images for its INT8 exports.
MIN_IMAGES = {"minmax": 32, "mean-minmax": 32, "entropy": 64, "percentile": 64, "distribution": 64}
#: Fewest held-out images for ``method=auto``'s scores to mean something.
MIN_HELD_OUT = 8
#: A tensor is out of range when the held-out images reach beyond its calibrated range by more than
#: this share of the range's width; the set looks out of domain when more than ``OOD_SHARE`` of the
#: tensors are.
OOD_EXCESS = 0.5
OOD_SHARE = 0.1


def size_problem(method: str, images: int, held_out: int | None = None) -> str | None:
    """One line when ``images`` range images (and, for ``method=auto``, ``held_out`` scoring images)
    are too few for ``method`` (``"minmax"``, ``"entropy"``, ``"percentile"`` ...), else None."""
    need = MIN_IMAGES.get(method, MIN_IMAGES["minmax"])
    short = []
    if images < need:
        short.append(f"{images} images for {method} ranges (at least {need} recommended)")
    if held_out is not None and held_out < MIN_HELD_OUT:
        short.append(f"{held_out} held-out images to choose the method (at least {MIN_HELD_OUT})")
    if not short:
        return None
    return f"calibration set is small: {' and '.join(short)}; pass more images with --calib/--calib-n"


def domain(calibrated: dict[str, list[float]], held_out: dict[str, list[float]]) -> dict:
    """How far the held-out images' activation ranges (``{tensor: [min, max]}``, minmax) reach beyond
    the calibrated minmax ranges: the share of tensors beyond by more than ``OOD_EXCESS`` of their
    width, and the worst tensor with its excess (a multiple of the calibrated width)."""
    excess = {}
    for name, (lo, hi) in calibrated.items():
        if name not in held_out:
            continue
        h_lo, h_hi = held_out[name]
        width = hi - lo
        beyond = max(h_hi - hi, lo - h_lo, 0.0)
        excess[name] = beyond / width if width > 0 else (0.0 if beyond == 0 else float("inf"))
    if not excess:
        return {"tensors": 0, "share_beyond": 0.0, "worst": None, "worst_excess": 0.0}
    worst = max(excess, key=excess.get)
    share = sum(e > OOD_EXCESS for e in excess.values()) / len(excess)
    return {"tensors": len(excess), "share_beyond": round(share, 4), "worst": worst,
            "worst_excess": round(min(excess[worst], 1e9), 3)}


def domain_problem(facts: dict) -> str | None:
    """One line when ``domain`` found the calibration images unlike the held-out ones, else None."""
    if facts["share_beyond"] <= OOD_SHARE:
        return None
    return (f"calibration set may be out of domain: on held-out images {facts['share_beyond']:.0%} of the "
            f"activations exceed their calibrated range by over {OOD_EXCESS:.0%} of its width (worst "
            f"'{facts['worst']}', {facts['worst_excess']:.1f}x); calibrate on images like the deployed ones")
