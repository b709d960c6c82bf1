"""Typed errors whose message is one sentence: what is wrong and what to do.

The command line turns any :class:`MetalearnerError` into that sentence on stderr and a non-zero
exit, with no traceback (DESIGN.md rule 5).
"""

from __future__ import annotations


class MetalearnerError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(MetalearnerError):
    """The data is missing, malformed or too small for the requested tasks."""


class ConfigError(MetalearnerError):
    """A setting is unknown, of the wrong type or out of range."""
