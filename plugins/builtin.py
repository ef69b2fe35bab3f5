"""Registers the first-party frontends and emitters through the public hooks."""

from yolocc.compiler.hookspecs import hookimpl

from .onnx_emitter import OnnxEmitter
from .targets import TARGETS
from .onnx_frontend import OnnxFrontend
from .torch_emitter import TorchEmitter
from .torch_frontend import TorchFrontend
from .ultralytics_frontend import UltralyticsFrontend


@hookimpl
def yolocc_register_frontends(registry):
    registry.add_frontend(UltralyticsFrontend())
    registry.add_frontend(OnnxFrontend())
    registry.add_frontend(TorchFrontend())


@hookimpl
def yolocc_register_emitters(registry):
    registry.add_emitter(OnnxEmitter())
    registry.add_emitter(TorchEmitter())


@hookimpl
def yolocc_register_targets(registry):
    for target in TARGETS:
        registry.add_target(target)
