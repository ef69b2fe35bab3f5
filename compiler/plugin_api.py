"""The one module a yolocc plugin imports.

    from yolocc.compiler.plugin_api import hookimpl, Pass, PassResult, Param

    class Sparsify(Pass):
        \"\"\"One-line description shown by `yolocc passes`.\"\"\"
        name, stage = "sparsify", "onnx"
        params = (Param("ratio", "float", 0.5, "fraction of weights zeroed", low=0.0, high=1.0),)

        def call(self, ir, ctx):
            ...  # edit ir.onnx_model (onnx stage) or ir.module (torch stage)
            return PassResult(modified=True, changes={"sparsity": 0.5})

    @hookimpl
    def yolocc_register_passes(registry):
        registry.add_pass(Sparsify)

Expose the module under the entry-point group ``yolocc`` in your ``pyproject.toml``:

    [project.entry-points.yolocc]
    my-plugin = "my_package.plugin"

Emitters that need ONNX call ``lowering.lower(ir, opset, dynamic_batch)`` when ``ir.stage`` is
"torch". ``API_VERSION`` changes its major number when this surface changes incompatibly.
"""

from . import lowering
from .errors import ExportError, PassError, PipelineError, PluginError, UsageError, YoloccError
from .fileio import write_atomic, write_with
from .hookspecs import hookimpl
from .interfaces import Emitter, Frontend, Target
from .ir import InputSpec, ModelIR
from .params import Param
from .passbase import Pass, PassContext, PassResult

API_VERSION = "1.0"

__all__ = ["API_VERSION", "lowering", "hookimpl", "Pass", "PassResult", "PassContext", "Param", "ModelIR", "InputSpec",
           "Frontend", "Emitter", "Target", "write_atomic", "write_with", "YoloccError", "UsageError",
           "PluginError", "PipelineError", "PassError", "ExportError"]
