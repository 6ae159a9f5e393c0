"""The one retouching code path: plan on a thumbnail, render at full resolution, write atomically.

``retouch``, ``eval``, ``apply`` and the Python API all call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .methods import Method
from .recipe import Recipe, render

__all__ = ["retouch_tensor", "retouch_file", "RetouchResult", "output_path_for"]


def retouch_tensor(method: Method, img_srgb: torch.Tensor, reference: torch.Tensor | None = None) -> tuple[torch.Tensor, Recipe]:
    """Plan a retouch with ``method`` and render it.

    Args:
        method: a :class:`~deepexposure.methods.Method`.
        img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], full resolution.
        reference: ``(1, 3, H, W)`` the well-exposed version, given only to methods with
            ``needs_reference`` (the oracle ceilings of :mod:`deepexposure.oracle`; ``eval`` only).
    Returns:
        ``(out_srgb (1, 3, H, W) in [0, 1], recipe)``.
    """
    if img_srgb.dim() != 4 or img_srgb.shape[:2] != (1, 3):
        raise ValueError(f"expected (1, 3, H, W) image, got {tuple(img_srgb.shape)}")
    with torch.no_grad():
        if getattr(method, "needs_reference", False):
            if reference is None:
                raise ValueError(f"method {method.name!r} needs the reference photo (it is an eval-only ceiling)")
            recipe = method.plan(img_srgb, reference=reference)
        else:
            recipe = method.plan(img_srgb)
        recipe.image.setdefault("width", int(img_srgb.shape[-1]))
        recipe.image.setdefault("height", int(img_srgb.shape[-2]))
        out = render(recipe, img_srgb)
    return out, recipe


@dataclass
class RetouchResult:
    source: Path
    output: Path
    recipe_path: Path | None
    explain_path: Path | None
    recipe: Recipe


def output_path_for(src: Path, out_dir: Path, fmt: str | None) -> Path:
    """``out_dir/<stem>.<ext>``; ``fmt`` None keeps JPEG/PNG/TIFF/WebP, and writes RAW as 16-bit TIFF."""
    from .io import RAW_EXTENSIONS

    ext = src.suffix.lower()
    if fmt:
        ext = "." + fmt.lower().lstrip(".")
    elif ext in RAW_EXTENSIONS:
        ext = ".tif"
    return out_dir / f"{src.stem}{ext}"


def retouch_file(
    method: Method,
    src: Path,
    dst: Path,
    *,
    overwrite: bool = False,
    quality: int = 95,
    write_recipe: bool = True,
    explain: bool = False,
    max_pixels: int | None = None,
    protect: list[Path] | None = None,
) -> RetouchResult:
    """Read ``src``, retouch it, write ``dst`` (+ ``dst.recipe.json`` and, with ``explain``, ``dst.explain.jpg``).

    Raises :class:`deepexposure.io.ImageReadError` / ``ImageWriteError`` with a one-line message.
    """
    from .io import check_output_path, read_image, write_image

    check_output_path(dst, protect or [src], overwrite=overwrite)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    loaded = read_image(src, **kwargs)
    out, recipe = retouch_tensor(method, loaded.img_srgb)
    recipe.image["source"] = src.name
    alpha = loaded.alpha if dst.suffix.lower() in (".png", ".tif", ".tiff", ".webp") else None
    if loaded.alpha is not None and alpha is None:
        recipe.notes.append(f"the alpha channel of {src.name} was dropped: {dst.suffix} has none")
    write_image(dst, out, alpha=alpha, exif=loaded.exif, quality=quality, overwrite=overwrite)
    recipe_path = None
    if write_recipe:
        recipe_path = dst.with_name(dst.name + ".recipe.json")
        recipe.save(recipe_path, overwrite=overwrite)
    explain_path = None
    if explain:
        from .explain import explain_image

        explain_path = dst.with_name(dst.stem + ".explain.jpg")
        sheet = explain_image(loaded.img_srgb, recipe, out)
        write_image(explain_path, sheet, quality=90, overwrite=overwrite)
    return RetouchResult(src, dst, recipe_path, explain_path, recipe)
