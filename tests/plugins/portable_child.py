"""Run in a subprocess by ``test_portable_checkpoint.py``: load a yolocc ``.pt`` with Ultralytics
alone (importing yolocc is blocked), then predict, val (when a data YAML is given), export to ONNX
and try ``train()``; print one JSON line of what happened.

usage: python portable_child.py CKPT IMGSZ IMAGE INPUT.npy OUT_DIR [DATA]
"""

import copy
import importlib.abc
import json
import sys


class BlockYolocc(importlib.abc.MetaPathFinder):
    """Any ``import yolocc...`` fails, as on a machine where yolocc is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "yolocc" or name.startswith("yolocc."):
            raise ModuleNotFoundError(f"No module named '{name}' (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, BlockYolocc())
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("wt-ckpt")]  # no source checkout either

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

ckpt, imgsz, image, inp, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
data = sys.argv[6] if len(sys.argv) > 6 else None
facts = {}
model = YOLO(ckpt)
facts["classes"] = sorted({f"{type(m).__module__}.{type(m).__name__}" for m in model.model.modules()})
facts["task"] = model.task
facts["params"] = sum(p.numel() for p in model.model.parameters())
net = copy.deepcopy(model.model).float().eval()
for m in net.modules():  # the heads' export form: the tensors an exported model returns
    if hasattr(m, "export") and type(m).__module__.startswith("ultralytics.nn.modules"):
        m.export, m.format = True, "onnx"
with torch.no_grad():
    y = net(torch.from_numpy(np.load(inp)))
np.save(f"{out_dir}/output.npy", (y[0] if isinstance(y, (list, tuple)) else y).numpy())
res = model.predict(image, imgsz=imgsz, verbose=False, device="cpu")
facts["predict"] = len(res)
if data:
    metrics = model.val(data=data, imgsz=imgsz, batch=16, workers=0, verbose=False, plots=False, device="cpu",
                        project=out_dir, name="val")
    facts["val"] = float(metrics.fitness if not hasattr(metrics, "box") else metrics.box.map)
exported = model.export(format="onnx", imgsz=imgsz, device="cpu", simplify=False)
facts["export"] = str(exported)
try:
    if not data:
        raise SystemExit(print("FACTS " + json.dumps(facts)))
    YOLO(ckpt).train(data=data, epochs=1, imgsz=imgsz, workers=0, device="cpu",
                     project=out_dir, name="train", plots=False)
    facts["train"] = "ran"
except KeyError as e:
    facts["train"] = f"KeyError: {e.args[0]}"
except Exception as e:  # noqa: BLE001 - reported to the test, which checks which
    facts["train"] = f"{type(e).__name__}: {e}"
print("FACTS " + json.dumps(facts))
