"""The error hierarchy. The CLI prints any ``YoloccError`` as one line and exits 2."""


class YoloccError(Exception):
    """Root of every error yolocc raises on purpose (bad input, not bugs)."""


class UsageError(YoloccError):
    """Bad input: a missing file, a malformed argument, an unwritable path."""


class PluginError(YoloccError):
    """A plugin failed to load, or registered a name that already exists."""


class PipelineError(YoloccError):
    """The requested pass pipeline cannot be built (unknown pass, impossible order)."""


class GraphError(UsageError):
    """torch-pruning cannot trace the model's channel dependencies (an architecture it does not
    support): passes that need them are refused at plan time."""


class PassError(YoloccError):
    """A pass failed while running. ``provider``: the plugin of the pass; ``internal``: the failure is
    an unexpected exception in a built-in pass (a yolocc bug: the CLI shows the traceback, exit 1)."""

    def __init__(self, message: str, provider: str = "", internal: bool = False):
        super().__init__(message)
        self.provider, self.internal = provider, internal

    def __reduce__(self):  # keeps provider and internal when it is raised in a worker process
        return type(self), (str(self), self.provider, self.internal)


class ExportError(YoloccError):
    """Lowering or emitting the model failed."""
