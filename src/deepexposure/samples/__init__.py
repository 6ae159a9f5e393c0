"""Small real photographs shipped with the package, for demos, docs and tests.

Every file is public domain or CC0 (sources and licences: ``LICENSES.md`` next to
this file). ``*_underexposed`` / ``*_dark_*`` files are "problem" versions of an
original made by a smooth exposure ramp in linear light,
``lin_out = clip(srgb_to_linear(img) * 2 ** ev(x, y), 0, 1)``, so a retouch demo has
something to fix; :data:`PROBLEM_SAMPLES` maps each one to its original and ramp.
They are rebuilt with ``python3 scripts/collect_photos.py --make-samples
src/deepexposure/samples``.

Usage::

    from deepexposure.samples import sample_path, sample_paths
    sample_path("coffee_underexposed")      # -> pathlib.Path to the JPEG
    [p.name for p in sample_paths()]
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

__all__ = [
    "ORIGINAL_SAMPLES",
    "PROBLEM_SAMPLES",
    "sample_names",
    "sample_path",
    "sample_paths",
]

#: Unmodified photos (downscaled to at most 1024 px on the long edge, JPEG).
ORIGINAL_SAMPLES: tuple[str, ...] = (
    "astronaut.jpg",
    "chelsea.jpg",
    "coffee.jpg",
    "dandelions.jpg",
)

#: Problem samples: name -> (original, ramp axis, EV at the start, EV at the end of the axis).
#: The EV map varies linearly from left to right (axis "x") or top to bottom (axis "y").
PROBLEM_SAMPLES: dict[str, tuple[str, str, float, float]] = {
    "coffee_underexposed.jpg": ("coffee.jpg", "x", -2.0, -1.0),
    "dandelions_dark_foreground.jpg": ("dandelions.jpg", "y", 0.0, -2.5),
}

_SUFFIXES = (".jpg", ".jpeg", ".png")
_files = contextlib.ExitStack()
atexit.register(_files.close)


def _folder() -> Path:
    """The samples folder as a real directory (extracted once if the package is zipped)."""
    root = resources.files(__name__)
    if isinstance(root, Path):
        return root
    return _files.enter_context(resources.as_file(root))  # pragma: no cover - zipimport only


def sample_names() -> list[str]:
    """File names of all bundled samples, sorted (e.g. ``"coffee_underexposed.jpg"``)."""
    return sorted(set(ORIGINAL_SAMPLES) | set(PROBLEM_SAMPLES))


def sample_paths() -> list[Path]:
    """Paths of all bundled sample photos, sorted by name.

    Returns:
        ``list[pathlib.Path]`` of existing JPEG files inside the installed package.
    """
    folder = _folder()
    return [folder / name for name in sample_names()]


def sample_path(name: str) -> Path:
    """Path of one bundled sample, by file name with or without extension.

    Args:
        name: e.g. ``"coffee"``, ``"coffee.jpg"`` or ``"coffee_underexposed"``.
    Returns:
        ``pathlib.Path`` of the file.
    Raises:
        ValueError: unknown name (the message lists the available names).
    """
    names = sample_names()
    candidates = [name] if name.lower().endswith(_SUFFIXES) else [name + s for s in _SUFFIXES]
    for cand in candidates:
        if cand in names:
            return _folder() / cand
    raise ValueError(f"unknown sample {name!r}; available: {', '.join(names)}")
