"""``deepexposure serve``: a local web page over the library (see :mod:`deepexposure.serve.app`)."""

from .app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
