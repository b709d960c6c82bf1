"""The ``metalearner`` command: one module per command, each option declared once in options."""

from __future__ import annotations

from metalearner.cli.app import app, main

__all__ = ["app", "main"]
