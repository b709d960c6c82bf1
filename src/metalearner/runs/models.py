"""The network a run's ``model`` settings describe: a built-in backbone, or a user's own.

A checkpoint's ``backbone`` field (``{"name": ..., "out_features": ..., **options}``) is
rebuilt here by training, ``evaluate``, ``adapt`` and ``load`` alike, so each sees the same
network. ``name: python`` is a user's network: ``factory`` names a function,
``package.module:function``, imported from the current folder or ``PYTHONPATH`` (as
``python -m`` and uvicorn find an app) and called with those of ``input_shape`` (one example's
shape, a tuple) and ``out_features`` (the ways) that it takes; the ``nn.Module`` it returns is
wrapped by :func:`metalearner.nn.user.as_network`, its weights (the factory's own
initialisation, drawn with the run's seed) kept as the starting point.

A checkpoint of a ``python`` model names its factory and holds no code: loading it imports that
module from the import path, as training did. A run folder is data, never put on the path.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from metalearner.errors import ConfigError
from metalearner.nn.backbones import Network, build_model

PYTHON = "python"
"""``model.name`` of a network built by the user's factory (``model.factory``)."""

_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
ARGUMENTS = ("input_shape", "out_features")
"""What a factory may take, by keyword: one example's shape (a tuple) and the number of ways."""


@dataclass(frozen=True)
class BuiltModel:
    """A run's network and, for a user's module, its own names of the network's tensors.

    Attributes:
        network: the :class:`~metalearner.nn.backbones.Network` (``features.*``, ``head.*``).
        own_names: the factory module's ``state_dict`` names to the network's (only where
            they differ), so a weights file saved from the user's module loads by its names.
    """

    network: Network
    own_names: dict[str, str] = field(default_factory=dict)


def check_factory(spec: str | None) -> str:
    """``spec`` if it reads ``package.module:function``; otherwise one sentence.

    Raises:
        ConfigError: ``spec`` is missing or not of that form.
    """
    if spec is None:
        raise ConfigError(
            "model.name=python needs model.factory, the function that builds your network, "
            "e.g. model.factory=mymodels:make_net."
        )
    if not _FACTORY.fullmatch(spec):
        raise ConfigError(
            f"model.factory is {spec!r}, not package.module:function; name the function that "
            "builds your network, e.g. model.factory=mymodels:make_net."
        )
    return spec


def build_network(
    backbone: Mapping[str, Any], input_shape: Sequence[int], *, seed: int
) -> BuiltModel:
    """Builds the network ``backbone`` (a checkpoint's description) describes.

    Args:
        backbone: ``name``, ``out_features`` and the model's options (``width``, ``factory``).
        input_shape: one example's shape.
        seed: the initialisation's seed (a built-in's, and the global RNG a factory draws
            from, restored after it).

    Raises:
        ConfigError: an unknown model or option, or a factory that cannot be imported, fails
            or returns no ``nn.Module``.
    """
    options = dict(backbone)
    name, out_features = options.pop("name"), int(options.pop("out_features"))
    if name != PYTHON:
        return BuiltModel(build_model(name, tuple(input_shape), out_features, generator=seed,
                                      **options))  # fmt: skip
    from metalearner.nn.user import as_network

    spec = check_factory(options.pop("factory", None))
    if options:
        raise ConfigError(f"Model 'python' has no option {sorted(options)[0]!r}.")
    # The factory (and a head as_network adds) draws from the global RNG: seeded, so one seed
    # gives one network, and restored, so the run's own draws are untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = call_factory(spec, tuple(int(s) for s in input_shape), out_features)
        network = as_network(module, out_features=out_features, init="module")
    return BuiltModel(network, _own_names(module, network))


def call_factory(spec: str, input_shape: tuple[int, ...], out_features: int) -> nn.Module:
    """Imports the factory ``spec`` names and calls it with the arguments it takes.

    Raises:
        ConfigError: it cannot be imported, raises, or returns no ``nn.Module``.
    """
    factory = import_factory(spec)
    given: dict[str, Any] = {"input_shape": input_shape, "out_features": out_features}
    kwargs = {k: v for k, v in given.items() if _takes(factory, k)}
    try:
        module = factory(**kwargs)
    except Exception as err:  # the user's code: any failure is theirs to fix, in one sentence
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
        raise ConfigError(
            f"model.factory {spec!r} raised {type(err).__name__} ({_first_line(err)}) when called "
            f"with {shown}; fix the function (it may take {' and '.join(ARGUMENTS)})."
        ) from err
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"model.factory {spec!r} returned a {type(module).__name__}, not a torch.nn.Module; "
            "return the network itself."
        )
    return module


def import_factory(spec: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names, imported from the current folder or
    the import path (``PYTHONPATH``).

    Raises:
        ConfigError: the module cannot be found or fails on import, or has no such function.
    """
    module_name, _, attribute = check_factory(spec).partition(":")
    with _current_folder_on_path():
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is None or not module_name.startswith(err.name):
                raise _import_failed(spec, module_name, err) from err  # a module it imports
            top = module_name.split(".")[0]
            raise ConfigError(
                f"model.factory {spec!r} cannot be imported (no module {err.name!r}); run from "
                f"the folder that holds {top}.py (or {top}/), or add that folder to PYTHONPATH."
            ) from None
        except Exception as err:
            raise _import_failed(spec, module_name, err) from err
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"model.factory {spec!r}: {module_name} has no {attribute!r}; name a function "
                "defined in that module."
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(
            f"model.factory {spec!r} is a {type(target).__name__}, not a function; name the "
            "function that returns your network."
        )
    return typing.cast(Callable[..., Any], target)


def _import_failed(spec: str, module: str, err: BaseException) -> ConfigError:
    return ConfigError(
        f"model.factory {spec!r}: importing {module} raised {type(err).__name__} "
        f"({_first_line(err)}); fix that module."
    )


@contextmanager
def _current_folder_on_path() -> Iterator[None]:
    # `python -m metalearner` puts the current folder on the path, the `metalearner` script
    # does not: both find a factory beside the user, as they would with `python -m`.
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _takes(function: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): give it nothing
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return name in params and params[name].kind in keyword


def _own_names(module: nn.Module, network: nn.Module) -> dict[str, str]:
    # as_network shares the module's tensors: the same object under two names.
    by_tensor = {id(t): n for n, t in network.state_dict(keep_vars=True).items()}
    out = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        theirs = by_tensor.get(id(tensor))
        if theirs is not None and theirs != name:
            out[name] = theirs
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else "no message"
