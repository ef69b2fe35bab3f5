"""yolocc core: IR, passes, pipeline, plugin registry, report and CLI."""

__version__ = "0.1.0"
