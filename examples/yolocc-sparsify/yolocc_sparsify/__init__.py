"""yolocc-sparsify: an example third-party yolocc plugin (see ``plugin.py``)."""

__version__ = "0.1.0"
