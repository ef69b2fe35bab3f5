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

A target is one class: its ``QuantScheme``, its ``Placement`` rules for Q/DQ, ``verify`` and
``runtime`` (see ``yolocc.compiler.target``), registered with ``registry.add_target(MyTarget())``.
Emitters that need ONNX call ``lowering.lower(ir, opset, dynamic_batch)`` when ``ir.stage`` is
"torch". ``API_VERSION`` changes its major number when this surface changes incompatibly
(2.0: targets are ``Target`` subclasses with a scheme, placement, verify and runtime; passes reach
the framework through ``ctx.frontend``. 3.0: ``Frontend.evaluate(ir, onnx_bytes, data, runtime, split)``
returns ``Metrics``; ``Frontend.canonicalize`` takes the target's ``capabilities`` (``skip_rewrites``
is gone); ``Frontend.train`` takes ``TrainSettings``; runtimes may give a ``native_artifact`` and an
``int8_ceiling``; search strategies register with ``yolocc_register_strategies``).
"""

from . import lowering
from .errors import ExportError, PassError, PipelineError, PluginError, UsageError, YoloccError
from .fileio import write_atomic, write_with
from .hookspecs import hookimpl
from .interfaces import Emitter, Frontend, HeadParts
from .ir import InputSpec, ModelIR
from .metrics import Metrics
from .options import CompileOptions
from .params import Param
from .passbase import Pass, PassContext, PassResult
from .search import SearchSpace, SearchStrategy, Trial, TrialResult
from .target import Capability, Placement, QuantScheme, Runtime, Target, Verification
from .training import AutoStop, DistillSettings, TrainSettings

API_VERSION = "3.0"

__all__ = ["API_VERSION", "lowering", "hookimpl", "Pass", "PassResult", "PassContext", "Param", "ModelIR", "InputSpec",
           "Frontend", "HeadParts", "Emitter", "Target", "QuantScheme", "Placement", "Verification", "Runtime",
           "Capability", "Metrics", "SearchStrategy", "SearchSpace", "Trial", "TrialResult", "TrainSettings",
           "DistillSettings", "AutoStop", "CompileOptions", "write_atomic", "write_with", "YoloccError", "UsageError",
           "PluginError", "PipelineError", "PassError", "ExportError"]
