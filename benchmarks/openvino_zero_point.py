"""Check: does OpenVINO's CPU plugin compute small zero-point-0 INT8 graphs as their Q/DQ operators say?

    # needs openvino (which ``make`` installs)
    .venv/bin/python benchmarks/openvino_zero_point.py [--threads 1] [--save DIR]
        [--out runs/bench/openvino-zero-point.json]

Why: on an AMD EPYC with AVX-512 VNNI and no AMX (sessions 23-24), OpenVINO 2026.4.1 computed the digits
detector's zero-point-0 INT8 graph unlike onnxruntime (mean cosine per output row 0.64-0.74; test
mAP50-95 -16.7 pt at 160), so ``qdq`` falls back to asymmetric activations there (README, "OpenVINO:
zero point 0 computes other numbers without AMX"). Cutting that graph after every layer and comparing
the two runtimes showed the first wrong tensor is a C2f block's Concat, where a Split's outputs meet a
convolution that read one of them. This script builds that pattern and its neighbours as graphs of a
few nodes and runs each on OpenVINO and on onnxruntime (the reference execution of QuantizeLinear and
DequantizeLinear) on one fixed input:

  s8_split_conv_concat   x -> Q/DQ (S8, zero point 0) -> Split -> [a, b]; b -> Conv (S8 per-channel
                         weights) -> Q/DQ (S8, zero point 0) -> y; Concat(a, y)
  s8_conv_concat         the same without the Split: Concat(x, y)
  s8_split_concat        the Split's outputs concatenated again, no Conv
  u8_zp128_split_conv_concat  the first graph on U8 with zero point 128 (the same numbers)
  u8_asym_split_conv_concat   the first graph on U8 with zero point 10
  float_split_conv_concat     the first graph without Q/DQ (control)

Per graph it writes the largest absolute difference, the cosine, whether the two agree (difference at
most one activation step: a rounding tie may go either way) and the share of OpenVINO's outputs that
are whole numbers (where it goes wrong here the outputs are the values rounded to integers, as if the
scale were 1).
``--save DIR`` writes each graph as ``DIR/NAME.onnx`` (for a report to OpenVINO). Writes ``{"isa",
"openvino", "onnxruntime", "threads", "graphs": {NAME: {"max_abs_diff", "cosine", "agrees",
"whole_numbers"}}}``; prints one line per graph. Exit 0 whatever the runtimes compute (this measures);
exit 2 with one line where openvino or onnxruntime is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, where openvino.py would shadow the openvino package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

from yolocc.compiler.measure import cpu_isa  # noqa: E402

CHANNELS, SIZE = 16, 20
#: Activation scale: S8 over about +-20, so the input (-1.5 .. 10.5) and the conv's output fit.
SCALE = 0.158
#: Two runtimes "agree" within one activation step: they may round a tie to different neighbours.
STEP_TOLERANCE = 1.01


def graph(dtype: str, zero_point: int, *, split: bool = True, conv: bool = True, quantize: bool = True):
    """One test graph (``onnx.ModelProto``, opset 17): input ``x`` [1, CHANNELS, SIZE, SIZE] float,
    activations on ``dtype`` ("int8"/"uint8") with ``zero_point``, see the module docstring."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    qtype = np.int8 if dtype == "int8" else np.uint8
    scale, zp = const("scale", np.float32(SCALE)), const("zero_point", qtype(zero_point))

    def qdq(tensor: str) -> str:
        if not quantize:
            return tensor
        nodes.append(helper.make_node("QuantizeLinear", [tensor, scale, zp], [tensor + "_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [tensor + "_q", scale, zp], [tensor + "_dq"]))
        return tensor + "_dq"

    x = qdq("x")
    half = CHANNELS // 2
    if split:
        sizes = const("split_sizes", np.array([half, half], np.int64))
        nodes.append(helper.make_node("Split", [x, sizes], ["a", "b"], axis=1))
        first, branch, width = "a", "b", half
    else:
        first, branch, width = x, x, CHANNELS
    parts = [first]
    if conv:
        w = (rng.standard_normal((width, width, 3, 3)) * 0.1).astype(np.float32)
        w_scale = (np.abs(w).reshape(width, -1).max(1) / 127).astype(np.float32)
        if quantize:
            w_q = np.round(w / w_scale[:, None, None, None]).astype(np.int8)
            nodes.append(helper.make_node("DequantizeLinear", [const("w_q", w_q), const("w_scale", w_scale),
                                                               const("w_zero_point", np.zeros(width, np.int8))],
                                          ["w"], axis=0))
        else:
            const("w", w)
        nodes.append(helper.make_node("Conv", [branch, "w", const("bias", np.zeros(width, np.float32))], ["y"],
                                      pads=[1, 1, 1, 1]))
        parts.append(qdq("y"))
    else:
        parts.append(branch)
    nodes.append(helper.make_node("Concat", parts, ["out"], axis=1))
    g = helper.make_graph(nodes, "zero_point_check",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=onnx.IR_VERSION)


GRAPHS = {
    "s8_split_conv_concat": dict(dtype="int8", zero_point=0),
    "s8_conv_concat": dict(dtype="int8", zero_point=0, split=False),
    "s8_split_concat": dict(dtype="int8", zero_point=0, conv=False),
    "u8_zp128_split_conv_concat": dict(dtype="uint8", zero_point=128),
    "u8_asym_split_conv_concat": dict(dtype="uint8", zero_point=10),
    "float_split_conv_concat": dict(dtype="int8", zero_point=0, quantize=False),
}


def compare(model, threads: int) -> dict:
    """``model`` on onnxruntime's and OpenVINO's CPU (f32 inference precision), one fixed input."""
    import onnxruntime as ort
    import openvino as ov

    data = model.SerializeToString()
    x = (np.random.default_rng(1).random((1, CHANNELS, SIZE, SIZE), dtype=np.float32) * 12 - 1.5)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(data), "CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f32,
                                                                 "INFERENCE_NUM_THREADS": threads})
    got = compiled({0: x})[compiled.output(0)].reshape(want.shape)
    a, b = want.ravel().astype(np.float64), got.ravel().astype(np.float64)
    diff = float(np.abs(a - b).max())
    return {"max_abs_diff": round(diff, 6),
            "cosine": round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)), 6),
            "agrees": diff <= STEP_TOLERANCE * SCALE,
            "whole_numbers": round(float(np.mean(b == np.round(b))), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="OpenVINO inference threads")
    ap.add_argument("--save", type=Path, help="also write each graph as DIR/NAME.onnx")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/bench/openvino-zero-point.json")
    args = ap.parse_args(argv)
    try:
        import onnxruntime
        import openvino
    except ImportError as e:
        print(f"openvino_zero_point: needs openvino and onnxruntime ({e}); pip install -e '.[openvino]'",
              file=sys.stderr)
        return 2
    import onnx

    result = {"isa": cpu_isa(), "openvino": openvino.__version__, "onnxruntime": onnxruntime.__version__,
              "threads": args.threads, "graphs": {}}
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    for name, spec in GRAPHS.items():
        model = graph(**spec)
        if args.save:
            onnx.save(model, str(args.save / f"{name}.onnx"))
        row = result["graphs"][name] = compare(model, args.threads)
        print(f"{name:28s} {'agrees' if row['agrees'] else 'DIFFERS'}: max |diff| {row['max_abs_diff']:.4f}, "
              f"cosine {row['cosine']:.5f}, whole-number outputs {row['whole_numbers']:.0%}")
    print(f"OpenVINO {result['openvino']} against onnxruntime {result['onnxruntime']} on {result['isa']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
