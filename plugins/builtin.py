"""Registers the first-party frontends, emitters and targets through the public hooks."""

from yolocc.compiler.hookspecs import hookimpl

from .onnx_emitter import OnnxEmitter
from .onnx_frontend import OnnxFrontend
from .openvino_emitter import OpenVinoEmitter
from .openvino_target import OpenVinoTarget
from .ort_target import OrtCpuTarget
from .tensorrt_engine import TensorRTEngineEmitter
from .tensorrt_target import TensorRTTarget
from .torch_emitter import TorchEmitter
from .torch_frontend import TorchFrontend
from .ultralytics_frontend import UltralyticsFrontend


# tryfirst: built-ins register before any third-party plugin (pluggy calls later plugins first otherwise).
@hookimpl(tryfirst=True)
def yolocc_register_frontends(registry):
    registry.add_frontend(UltralyticsFrontend())
    registry.add_frontend(OnnxFrontend())
    registry.add_frontend(TorchFrontend())


@hookimpl(tryfirst=True)
def yolocc_register_emitters(registry):
    registry.add_emitter(OnnxEmitter())
    registry.add_emitter(TorchEmitter())
    registry.add_emitter(OpenVinoEmitter())
    registry.add_emitter(TensorRTEngineEmitter())


@hookimpl(tryfirst=True)
def yolocc_register_targets(registry):
    registry.add_target(OrtCpuTarget())
    registry.add_target(TensorRTTarget())
    registry.add_target(OpenVinoTarget())
