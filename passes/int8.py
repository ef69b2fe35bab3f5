"""``int8``: the macro fuse-bn -> calibrate -> qdq, with the arguments of its parts."""

from __future__ import annotations

from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass

from .calibrate import METHODS, Calibrate
from .canonicalize import Canonicalize
from .fuse_bn import FuseBN
from .qdq import QDQ


class Int8(Pass):
    """INT8 post-training quantization: canonicalize, fuse-bn, calibrate, qdq (macro)."""

    name = "int8"
    stage = "torch"
    params = (
        Param("method", "choice", Calibrate.params[0].default, "calibration range estimator (auto: the one whose "
              "int8 outputs stay closest to the float model's on held-out calibration images)", choices=METHODS),
        Param("n", "int", None, "calibration images (default: --calib-n, else 128)", low=1, high=100000),
        Param("percentile", "float", 99.999, "percentile kept by method=percentile", low=90.0, high=100.0),
        Param("bias_correction", "bool|auto", "auto", "subtract each quantized convolution's mean output drift "
              "from its bias; auto: with method=auto, kept only if it raises the held-out fidelity; true: always"),
        Param("confirm", "bool|auto", "auto", "method=auto: measure the best two methods by fidelity on the val "
              "split of --data and keep the better; auto: whenever --data is given"),
        Param("exclude", "str", "", "node names/patterns kept float, separated by '|'"),
        Param("keep_tail_float", "bool", True, "keep the YOLO decode/DFL/concat/sigmoid tail float"),
        Param("float_head_convs", "bool", False, "also keep the head's last convolutions float"),
        Param("max_drop", "float", None, "mixed precision: keep the most sensitive layers float until the val "
              "metric (--data) is within this many points of the float model", low=0.0, high=100.0),
    )

    def expand(self, stage: str) -> list[Pass]:
        a = self.args
        # At the torch stage: canonical form (its DFL exports to a faster graph) and BN folding;
        # an ONNX input has its BN folded already.
        torch_part = [Canonicalize(), FuseBN()] if stage == "torch" else []
        return torch_part + [
                Calibrate(method=a["method"], n=a["n"], percentile=a["percentile"],
                          bias_correction=a["bias_correction"], confirm=a["confirm"]),
                QDQ(exclude=a["exclude"], keep_tail_float=a["keep_tail_float"],
                    float_head_convs=a["float_head_convs"], max_drop=a["max_drop"])]
