"""Registry of retouching methods.

A *method* decides what to do to a photo and says so as a :class:`~deepexposure.recipe.Recipe`;
:func:`deepexposure.recipe.render` then does it at full resolution. Every front end (the
``retouch`` command, ``eval``, the Python API) goes through :func:`get_method` and
:func:`deepexposure.pipeline.retouch_tensor`, so what is scored is what users get.

Built-in names are one lazy table, :data:`BUILTIN_METHODS` (name -> ``"module:Class"``; the module is
imported only when the method is asked for):

=============================  ====================================================================================
``deepexposure``               the learned DeepExposure policy (default model shipped)
``deepexposure-local``         the same policy's exposures rendered per region (``render="local"``, docs/local.md)
``deepexposure-local-fusion``  the same, rendered ``local+fusion``
``exposure``                   the learned white-box filter agent (Hu et al. 2018)
``pixelrl``                    PixelRL agents, one per pixel: local colour/exposure actions (Furuta et al. 2019)
``exposures``                  explicit per-segment exposures (``evs=[...]``)
``identity``                   leave the photo alone
``auto``                       global auto-exposure
``clahe``                      CLAHE on luminance
``fusion``                     fixed-bracket single-image exposure fusion (``ev=[-1, 0, 1, 2]``)
``oracle-global``              ceiling: the best single exposure, chosen against the reference (eval only)
``oracle-exposures``           ceiling: the best T exposures for the fused renderer (eval only)
``oracle-local``               ceiling: the best per-region exposures for the local renderer (eval only)
``oracle-local-fusion``        ceiling: the same for the local+fusion renderer (eval only)
=============================  ====================================================================================

A method with ``needs_reference = True`` (the oracles) takes ``plan(img_srgb, reference=ref_srgb)``;
only ``eval`` has a reference to give it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from .recipe import Recipe

__all__ = ["Method", "ReferenceMethod", "BUILTIN_METHODS", "register_method", "get_method", "available_methods", "UnknownMethodError"]


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


#: The built-in methods: name -> ``"module:Class"``, imported only when asked for (so listing the
#: methods or using a baseline never imports the learned agents). ``Class(**options)`` builds it.
BUILTIN_METHODS: dict[str, str] = {
    "deepexposure": "deepexposure.agents.deepexposure:DeepExposureMethod",
    "exposure": "deepexposure.agents.whitebox:WhiteBoxMethod",
    "pixelrl": "deepexposure.pixelrl.method:PixelRLMethod",
    "exposures": "deepexposure.agents.deepexposure:ExplicitExposuresMethod",
    "identity": "deepexposure.baselines:IdentityMethod",
    "auto": "deepexposure.baselines:AutoExposureMethod",
    "clahe": "deepexposure.baselines:ClaheMethod",
    "fusion": "deepexposure.baselines:FixedFusionMethod",
    "oracle-global": "deepexposure.oracle:OracleGlobalMethod",
    "oracle-exposures": "deepexposure.oracle:OracleExposuresMethod",
    "deepexposure-local": "deepexposure.agents.deepexposure:DeepExposureLocalMethod",
    "deepexposure-local-fusion": "deepexposure.agents.deepexposure:DeepExposureLocalFusionMethod",
    "oracle-local": "deepexposure.oracle:OracleLocalMethod",
    "oracle-local-fusion": "deepexposure.oracle:OracleLocalFusionMethod",
}
# user plug-ins (register_method); they take precedence over a built-in of the same name
_PLUGINS: dict[str, Callable[..., Method]] = {}


def register_method(name: str, factory: Callable[..., Method]) -> None:
    """Register a user plug-in ``factory(**options) -> Method`` under ``name`` (replaces an earlier
    entry and shadows a built-in). The built-ins are in :data:`BUILTIN_METHODS`, not registered."""
    _PLUGINS[name] = factory


def available_methods() -> list[str]:
    """Names :func:`get_method` accepts."""
    return sorted(set(_PLUGINS) | set(BUILTIN_METHODS))


def _builtin_class(name: str) -> Callable[..., Method]:
    module, _, attr = BUILTIN_METHODS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def get_method(name: str, **options: Any) -> Method:
    """Build the method ``name`` with keyword options (e.g. ``model=PATH``, ``ev=[-1, 0, 1]``).

    Raises :class:`UnknownMethodError` for a name not in :func:`available_methods` and ``ValueError``
    (one line) for options the method does not take."""
    if name in _PLUGINS:
        return _PLUGINS[name](**options)
    if name not in BUILTIN_METHODS:
        raise UnknownMethodError(f"unknown method {name!r} (available: {', '.join(available_methods())})")
    cls = _builtin_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as e:
        raise ValueError(f"bad options for method {name!r}: {e}") from None
    return cls(**options)
