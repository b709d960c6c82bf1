"""The package's version: one place, read by the package root and written into checkpoints."""

__version__ = "0.1.0"
