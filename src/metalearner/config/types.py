"""Checking settings against their type annotations, shared by every config: runs, strategies,
RL, benchmark and search plans."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal


def match_type(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits type ``hint``, and the value in that type's form.

    YAML has no tuples and writes ``1`` for ``1.0``, so lists become tuples and integers become
    floats where the hint says so; booleans are never numbers.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, out = match_type(value, arg)
            if ok:
                return True, out
        return False, value
    if origin is Literal:
        return value in typing.get_args(hint), value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
            args = (args[0],) * len(value) if isinstance(value, list | tuple) else ()
        if not isinstance(value, list | tuple) or len(value) != len(args):
            return False, value
        pairs = [match_type(v, a) for v, a in zip(value, args, strict=True)]
        return all(ok for ok, _ in pairs), tuple(v for _, v in pairs)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False, value
        key, item = typing.get_args(hint) or (Any, Any)
        mapped: dict[Any, Any] = {}
        for k, v in value.items():
            k_ok, k_out = match_type(k, key)
            v_ok, v_out = match_type(v, item)
            if not (k_ok and v_ok):
                return False, value
            mapped[k_out] = v_out
        return True, mapped
    if hint is type(None):
        return value is None, value
    if hint is float:
        good = isinstance(value, int | float) and not isinstance(value, bool)
        return good, float(value) if good else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, hint), value


def describe_type(hint: Any) -> str:
    """``hint`` in words, for error messages ("a number", "one of sgd, adam", ...)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list, each {describe_type(args[0])}"
        return f"a list of {len(args)} numbers"
    if origin in (dict, Mapping):
        return "a mapping"
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    return names.get(hint, "null" if hint is type(None) else str(hint))
