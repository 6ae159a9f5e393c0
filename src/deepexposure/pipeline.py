"""The one retouching code path: plan on a thumbnail, render at full resolution, write atomically.

``retouch``, ``eval``, ``apply`` and the Python API all call these functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from .methods import Method, ReferenceMethod
from .recipe import Recipe, render
from .threads import torch_threads

__all__ = ["retouch_tensor", "retouch_file", "RetouchResult", "output_path_for", "output_paths", "Progress", "STAGES"]

#: ``progress(stage, done, total)``: how far one photo is. ``stage`` is one of :data:`STAGES`, in that
#: order (``explain`` only with an explain sheet); each stage reports ``(0, total)`` when it starts and
#: ``(total, total)`` when it ends, ``render`` also each step between (each frame of a fused bracket
#: built, each other op: :func:`deepexposure.recipe.render_steps`). A callback only observes: the
#: outputs are the same with or without it.
Progress = Callable[[str, int, int], None]
#: The stages of :func:`retouch_file`: decode the file; plan (the method segments and decides, on a
#: thumbnail); render at full resolution; explain (the sheet); encode (write the image, recipe, sheet).
STAGES = ("decode", "plan", "render", "explain", "encode")


#: what the exposures of a segmented fusion recipe are (added to such recipes' notes)
BRACKET_NOTE = ("the evs are the exposures of a fused bracket: each is applied to the whole frame and the frames are "
                "fused (Mertens); exposure t was chosen for segment t, but is not confined to it")


def retouch_tensor(method: Method, img_srgb: torch.Tensor, reference: torch.Tensor | None = None,
                   progress: Progress | None = None) -> tuple[torch.Tensor, Recipe]:
    """Plan a retouch with ``method`` and render it.

    Args:
        method: a :class:`~deepexposure.methods.Method`.
        img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], full resolution.
        reference: ``(1, 3, H, W)`` the well-exposed version, given only to methods with
            ``needs_reference`` (the oracle ceilings of :mod:`deepexposure.oracle`; ``eval`` only).
        progress: :data:`Progress` callback for the ``plan`` and ``render`` stages, or None.
    Returns:
        ``(out_srgb (1, 3, H, W) in [0, 1], recipe)``.
    """
    if img_srgb.dim() != 4 or img_srgb.shape[:2] != (1, 3):
        raise ValueError(f"expected (1, 3, H, W) image, got {tuple(img_srgb.shape)}")
    report = progress or _no_progress
    with torch.no_grad():
        report("plan", 0, 1)
        recipe = _plan(method, img_srgb, reference)
        recipe.image.setdefault("width", int(img_srgb.shape[-1]))
        recipe.image.setdefault("height", int(img_srgb.shape[-2]))
        if recipe.segments and any(op.get("op") == "exposure_fusion" for op in recipe.ops):
            recipe.notes.append(BRACKET_NOTE)
        report("plan", 1, 1)
        out = render(recipe, img_srgb, None if progress is None else lambda done, total: report("render", done, total))
    return out, recipe


def _plan(method: Method, img_srgb: torch.Tensor, reference: torch.Tensor | None) -> Recipe:
    if getattr(method, "needs_reference", False):
        if reference is None:
            raise ValueError(f"method {method.name!r} needs the reference photo (it is an eval-only ceiling)")
        return cast(ReferenceMethod, method).plan(img_srgb, reference=reference)
    return method.plan(img_srgb)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class RetouchResult:
    source: Path
    output: Path
    recipe_path: Path | None
    explain_path: Path | None
    recipe: Recipe


def output_path_for(src: Path, out_dir: Path, fmt: str | None, rel: Path | None = None) -> Path:
    """``out_dir/<rel folder>/<stem>.<ext>``; ``fmt`` None keeps JPEG/PNG/TIFF/WebP, and writes RAW as 16-bit TIFF.

    ``rel`` is the path of ``src`` relative to the folder it was found in (folder inputs are mirrored
    under ``out_dir``, so ``a/x.jpg`` and ``b/x.jpg`` never share an output); None: just the name.
    """
    from .io import RAW_EXTENSIONS

    ext = src.suffix.lower()
    if fmt:
        ext = "." + fmt.lower().lstrip(".")
    elif ext in RAW_EXTENSIONS:
        ext = ".tif"
    sub = rel.parent if rel is not None else Path()
    return out_dir / sub / f"{src.stem}{ext}"


def recipe_path_for(dst: Path) -> Path:
    """``<output>.recipe.json`` beside the output image."""
    return dst.with_name(dst.name + ".recipe.json")


def explain_path_for(dst: Path) -> Path:
    """``<output stem>.explain.jpg`` beside the output image."""
    return dst.with_name(dst.stem + ".explain.jpg")


def output_paths(dst: Path, *, write_recipe: bool = True, explain: bool = False) -> list[Path]:
    """Every file :func:`retouch_file` writes for the output image ``dst``: image, recipe, explain sheet."""
    return [dst] + ([recipe_path_for(dst)] if write_recipe else []) + ([explain_path_for(dst)] if explain else [])


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
    progress: Progress | None = None,
) -> RetouchResult:
    """Read ``src``, retouch it, write ``dst`` (+ ``dst.recipe.json`` and, with ``explain``, ``dst.explain.jpg``).

    The outputs are one unit: every path is checked before the photo is decoded, everything is
    rendered before the first file is written, and if a write still fails the files this call
    created are removed again. 16-bit inputs are written with 16 bits where the format holds them.
    ``progress`` (:data:`Progress`) is told each stage of :data:`STAGES` as it starts and ends.

    Raises :class:`deepexposure.io.ImageReadError` / ``WriteError`` (``ImageWriteError`` for images) with a one-line message.
    """
    from .io import _WRITE_DEPTHS, _WRITE_FORMATS, check_output_path, read_image

    paths = output_paths(dst, write_recipe=write_recipe, explain=explain)
    for p in paths:
        check_output_path(p, protect or [src], overwrite=overwrite)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    report = progress or _no_progress
    report("decode", 0, 1)
    loaded = read_image(src, **kwargs)
    report("decode", 1, 1)
    from .fusion import PARALLEL_MIN_PIXELS

    small = loaded.img_srgb.shape[-2] * loaded.img_srgb.shape[-1] < PARALLEL_MIN_PIXELS
    with torch_threads(1) if small else contextlib.nullcontext():  # small photos: one thread (deepexposure.threads)
        out, recipe = retouch_tensor(method, loaded.img_srgb, progress=progress)
    recipe.image["source"] = src.name
    alpha = loaded.alpha if dst.suffix.lower() in (".png", ".tif", ".tiff", ".webp") else None
    if loaded.alpha is not None and alpha is None:
        recipe.notes.append(f"the alpha channel of {src.name} was dropped: {dst.suffix} has none")
    if loaded.icc_note:
        recipe.notes.append(loaded.icc_note)
    fmt = _WRITE_FORMATS.get(dst.suffix.lower())
    depth = 16 if loaded.bit_depth == 16 and fmt is not None and 16 in _WRITE_DEPTHS[fmt] else None
    sheet = None
    if explain:
        from .explain import explain_image

        report("explain", 0, 1)
        sheet = explain_image(loaded.img_srgb, recipe, out)
        report("explain", 1, 1)
    from .atomic import atomic_write_many, bytes_file
    from .encode import image_file

    files = [image_file(dst, out, alpha=alpha, exif=loaded.exif, quality=quality, bit_depth=depth,
                        overwrite=overwrite, protect=protect or [src])]
    if write_recipe:
        files.append(bytes_file(paths[1], (recipe.to_json() + "\n").encode("utf-8")))
    if sheet is not None:
        files.append(image_file(paths[-1], sheet, quality=90, overwrite=overwrite, protect=protect or [src]))
    report("encode", 0, len(paths))
    placed: list[Path] = []

    def done(path: Path) -> None:
        placed.append(path)
        report("encode", len(placed), len(paths))

    # one unit, synced together: no image without its recipe and sheet
    atomic_write_many(files, overwrite, placed=done)
    return RetouchResult(src, dst, paths[1] if write_recipe else None, paths[-1] if explain else None, recipe)
