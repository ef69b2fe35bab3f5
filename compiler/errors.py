"""The error hierarchy. The CLI prints any ``YoloccError`` as one line and exits 2."""


class YoloccError(Exception):
    """Root of every error yolocc raises on purpose (bad input, not bugs)."""


class UsageError(YoloccError):
    """Bad input: a missing file, a malformed argument, an unwritable path."""


class PluginError(YoloccError):
    """A plugin failed to load, or registered a name that already exists."""


class PipelineError(YoloccError):
    """The requested pass pipeline cannot be built (unknown pass, impossible order)."""


class PassError(YoloccError):
    """A pass failed while running."""


class ExportError(YoloccError):
    """Lowering or emitting the model failed."""
