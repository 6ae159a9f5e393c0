"""Registry of retouching methods.

A *method* decides what to do to a photo and says so as a :class:`~deepexposure.recipe.Recipe`;
:func:`deepexposure.recipe.render` then does it at full resolution. Every front end (the
``retouch`` command, ``eval``, the Python API) goes through :func:`get_method` and
:func:`deepexposure.pipeline.retouch_tensor`, so what is scored is what users get.

Built-in names are resolved lazily (importing torch networks only when needed):

========================  ==========================================================
``deepexposure``          the learned DeepExposure policy (default model shipped)
``exposure``              the learned white-box filter agent (Hu et al. 2018)
``exposures``             explicit per-segment exposures (``evs=[...]``)
``identity``              leave the photo alone
``auto``                  global auto-exposure
``clahe``                 CLAHE on luminance
``fusion``                fixed-bracket single-image exposure fusion (``ev=[-1, 0, 1, 2]``)
``oracle-global``         ceiling: the best single exposure, chosen against the reference (eval only)
``oracle-exposures``      ceiling: the best T exposures for the fused renderer (eval only)
========================  ==========================================================

A method with ``needs_reference = True`` (the oracles) takes ``plan(img_srgb, reference=ref_srgb)``;
only ``eval`` has a reference to give it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from .recipe import Recipe

__all__ = ["Method", "ReferenceMethod", "register_method", "get_method", "available_methods", "UnknownMethodError"]


@runtime_checkable
class Method(Protocol):
    """Something that plans a retouch: ``plan(img_srgb (1,3,H,W) in [0,1]) -> Recipe``."""

    name: str

    def plan(self, img_srgb: torch.Tensor) -> Recipe: ...


@runtime_checkable
class ReferenceMethod(Protocol):
    """An eval-only ceiling (``needs_reference = True``): ``plan(img_srgb, reference=ref_srgb) -> Recipe``."""

    name: str
    needs_reference: bool

    def plan(self, img_srgb: torch.Tensor, reference: torch.Tensor | None = None) -> Recipe: ...


class UnknownMethodError(ValueError):
    pass


_REGISTRY: dict[str, Callable[..., Method]] = {}
# name -> module that registers it on import
_BUILTIN_MODULES = {
    "deepexposure": "deepexposure.agents.deepexposure",
    "exposure": "deepexposure.agents.whitebox",
    "exposures": "deepexposure.agents.deepexposure",
    "identity": "deepexposure.baselines",
    "auto": "deepexposure.baselines",
    "clahe": "deepexposure.baselines",
    "fusion": "deepexposure.baselines",
    "oracle-global": "deepexposure.oracle",
    "oracle-exposures": "deepexposure.oracle",
}


def register_method(name: str, factory: Callable[..., Method]) -> None:
    """Register ``factory(**options) -> Method`` under ``name`` (replaces an earlier entry)."""
    _REGISTRY[name] = factory


def available_methods() -> list[str]:
    """Names :func:`get_method` accepts."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def get_method(name: str, **options: Any) -> Method:
    """Build the method ``name`` with keyword options (e.g. ``model=PATH``, ``ev=[-1, 0, 1]``)."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r} (available: {', '.join(available_methods())})")
    return _REGISTRY[name](**options)
