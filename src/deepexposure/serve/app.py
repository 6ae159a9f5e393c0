"""The local web page of ``deepexposure serve``: a Starlette app over the library's own functions.

Nothing here decides or renders pictures by itself: photos are read with
:func:`deepexposure.io.read_image`, planned with :func:`deepexposure.methods.get_method` +
:func:`deepexposure.pipeline.retouch_tensor`, re-rendered with :func:`deepexposure.recipe.render`,
explained with :func:`deepexposure.explain.explain_image` and written with
:func:`deepexposure.io.write_image`, exactly as the command line does.

Previews. Each upload is decoded once at full resolution and kept as a float16 copy with the long
edge :attr:`ServeConfig.preview_size` (1024 px) in the work folder (plus a small in-memory LRU of
float32 copies). Planning and every slider move render on that copy; only *export* reads the full
file again and renders the recipe at full resolution. The methods decide on a 64x64 thumbnail, so
planning on the preview gives the command line's decision to within resampling. While a slider is
being dragged the page asks for *draft* renders on a half-size copy (about 7x faster on a CPU);
when it is let go, the preview is rendered again at full preview size.

State and safety. Every browser tab gets a session (``POST /api/session``: a random id); a session
holds its photos, recipes, jobs and exports under ``WORK/sessions/<id>/`` and a lock that guards
them. Uploads are streamed (python-multipart's parser) straight into that folder with a byte limit,
never into the served static tree; file names from the browser are only shown, never used as paths.
Interactive renders share a bounded semaphore; batch jobs (retouch, apply, export) run one at a time
on a single worker thread. Errors are answered as ``{"error": "<one line>"}`` with a 4xx status;
unexpected failures are logged on the server and answered with one line, never a traceback.

Endpoints (JSON unless noted; ``S`` is the session id, ``P`` a photo id):

====================================  ============================================================
``GET  /``                            the page (``static/index.html``; ``/static/*`` its files)
``GET  /api/info``                    methods, filters and their ranges, formats, limits
``POST /api/session``                 new session ``{"session": S}``
``GET  /api/s/S/photos``              the session's photos
``POST /api/s/S/photos``              multipart upload of one or more files -> photos + errors
``GET  /api/s/S/photos/P``            one photo with its recipe
``DELETE /api/s/S/photos/P``          forget a photo (its files are deleted)
``GET  /api/s/S/photos/P/original.jpg``   the preview of the original (``?thumb=1``: 160 px)
``GET  /api/s/S/photos/P/result.jpg``     the preview of the current recipe (JPEG)
``GET  /api/s/S/photos/P/explain.jpg``    the explain sheet of the current recipe (JPEG)
``POST /api/s/S/photos/P/retouch``    ``{"method", "model", "ev", "segments"}`` -> photo + recipe
``POST /api/s/S/photos/P/render``     ``{"recipe", "draft"}`` -> preview JPEG of that recipe (slider move)
``POST /api/s/S/recipe/check``        ``{"recipe"}`` -> the validated recipe
``POST /api/s/S/jobs``                ``{"kind": retouch|apply|export, "photos": [P..], ...}`` -> job
``GET  /api/s/S/jobs/J``              progress of a job; ``POST .../J/cancel`` stops it
``GET  /api/s/S/exports/NAME``        download an exported photo or recipe
====================================  ============================================================
"""

from __future__ import annotations

import argparse
import io as _stdio
import json
import logging
import re
import secrets
import shutil
import threading
import time
import unicodedata
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

log = logging.getLogger("deepexposure.serve")

__all__ = ["ServeConfig", "create_app", "STATIC_DIR", "EXPORT_FORMATS"]

#: the page's files (HTML, JS, CSS), served under ``/static``; uploads never go here
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: formats the page can export, as ``retouch --format`` offers them
EXPORT_FORMATS = ("jpg", "png", "tif", "webp")

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_EXPORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_THUMB_SIZE = 160
_JOB_KINDS = ("retouch", "apply", "export")


@dataclass
class ServeConfig:
    """Settings of one server (the ``serve`` command's options)."""

    work_dir: Path
    """folder for sessions, uploads, previews and exports; nothing is written elsewhere"""
    max_upload_bytes: int = 300 * 2**20
    """largest accepted request body of an upload, in bytes (all files of the request together)"""
    max_pixels: int = 100_000_000
    """largest accepted photo, in pixels (declared size, checked before decoding)"""
    preview_size: int = 1024
    """long edge of the preview copy that planning and slider moves render on"""
    max_sessions: int = 32
    """sessions kept at once; the least recently used idle one is dropped beyond this"""
    max_photos: int = 500
    """photos per session"""
    workers: int = 2
    """interactive computations (retouch, slider render, explain) running at once"""
    max_json_bytes: int = 4 * 2**20
    """largest JSON request body"""
    preview_cache: int = 24
    """float32 previews kept in memory (across sessions)"""
    allowed_hosts: list[str] | None = None
    """accepted ``Host`` headers (DNS-rebinding guard); None accepts any"""


class ApiError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())


@dataclass
class Photo:
    id: str
    name: str  # the browser's file name, sanitised, for display only
    path: Path  # the stored upload
    width: int
    height: int
    format: str
    preview_path: Path
    original_jpg: Path
    thumb_jpg: Path
    recipe: dict | None = None
    recipe_from: str | None = None  # a loaded recipe's source photo, when applied to this one
    result_jpg: bytes | None = None
    version: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self, with_recipe: bool = False) -> dict:
        d: dict[str, Any] = {
            "id": self.id, "name": self.name, "width": self.width, "height": self.height,
            "format": self.format, "retouched": self.recipe is not None, "version": self.version,
            "method": (self.recipe or {}).get("method", {}).get("name"), "recipe_from": self.recipe_from,
            "notes": self.notes,
        }  # fmt: skip
        if with_recipe:
            d["recipe"] = self.recipe
        return d


@dataclass
class Job:
    id: str
    kind: str
    items: list[dict]
    state: str = "queued"  # queued, running, done, cancelled
    cancel: bool = False

    def to_json(self) -> dict:
        done = sum(it["status"] in ("done", "error") for it in self.items)
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": done, "total": len(self.items),
                "items": self.items}


class Session:
    def __init__(self, sid: str, root: Path) -> None:
        self.id = sid
        self.dir = root
        self.uploads = root / "uploads"
        self.exports_dir = root / "exports"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.exports_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.photos: OrderedDict[str, Photo] = OrderedDict()
        self.jobs: dict[str, Job] = {}
        self.exports: dict[str, Path] = {}
        self.last_used = time.monotonic()

    def photo(self, pid: str) -> Photo:
        with self.lock:
            p = self.photos.get(pid)
        if p is None:
            raise ApiError(404, "no such photo in this session (it may have been removed)")
        return p

    def busy(self) -> bool:
        return any(j.state in ("queued", "running") for j in self.jobs.values())


# ----------------------------------------------------------------------------------------------
# helpers


def safe_display_name(raw: str | None) -> str:
    """The browser's file name reduced to a printable base name (never used as a path)."""
    name = PurePosixPath(str(raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().strip(".")
    return name[:120] or "upload"


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._-")
    return (stem or "photo")[:80]


def _jpeg_bytes(img_srgb: torch.Tensor, quality: int = 90) -> bytes:
    from PIL import Image

    from ..io import tensor_to_uint8

    buf = _stdio.BytesIO()
    Image.fromarray(tensor_to_uint8(img_srgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _float_list(v: Any, what: str) -> list[float] | None:
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, str):
        try:
            return [float(x) for x in v.replace(" ", "").split(",") if x]
        except ValueError:
            raise ApiError(400, f"{what}: expected comma-separated numbers, got {v[:40]!r}") from None
    if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return [float(x) for x in v]
    raise ApiError(400, f"{what}: expected a list of numbers")


# ----------------------------------------------------------------------------------------------
# the server state


class Server:
    """All state of one running server; the routes below are thin wrappers around its methods."""

    def __init__(self, config: ServeConfig) -> None:
        self.cfg = config
        self.root = Path(config.work_dir).resolve()
        (self.root / "sessions").mkdir(parents=True, exist_ok=True)
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.sessions_lock = threading.Lock()
        self.compute = threading.BoundedSemaphore(max(1, config.workers))
        self.previews: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.previews_lock = threading.Lock()
        self.methods: OrderedDict[tuple, Any] = OrderedDict()
        self.methods_lock = threading.Lock()
        self.jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepexposure-job")
        self._info: dict | None = None

    # -- sessions -----------------------------------------------------------------------------

    def new_session(self) -> Session:
        sid = secrets.token_urlsafe(18)
        with self.sessions_lock:
            while len(self.sessions) >= self.cfg.max_sessions:
                idle = [s for s in self.sessions.values() if not s.busy()]
                if not idle:
                    raise ApiError(503, f"the server already holds {self.cfg.max_sessions} busy sessions; try again later")
                old = min(idle, key=lambda s: s.last_used)
                self._drop(old)
            s = Session(sid, self.root / "sessions" / sid)
            self.sessions[sid] = s
        return s

    def _drop(self, s: Session) -> None:
        self.sessions.pop(s.id, None)
        with self.previews_lock:
            for pid in list(s.photos):
                self.previews.pop(pid, None)
                self.previews.pop(pid + "/draft", None)
        shutil.rmtree(s.dir, ignore_errors=True)

    def session(self, sid: str) -> Session:
        if not _ID_RE.match(sid or ""):
            raise ApiError(404, "unknown session; reload the page")
        with self.sessions_lock:
            s = self.sessions.get(sid)
        if s is None:
            raise ApiError(404, "unknown session (the server may have restarted); reload the page")
        s.last_used = time.monotonic()
        return s

    # -- info ---------------------------------------------------------------------------------

    def info(self) -> dict:
        if self._info is None:
            from .. import __version__
            from ..filters import FILTERS
            from ..io import IMAGE_EXTENSIONS, RAW_EXTENSIONS
            from ..methods import available_methods

            methods = []
            for name in available_methods():
                try:
                    m = self.method({"method": name})
                except ApiError:
                    methods.append(name)  # needs options (``exposures``): offered, built on demand
                    continue
                if not getattr(m, "needs_reference", False):
                    methods.append(name)
            order = ["deepexposure", "exposure", "fusion", "identity"]
            methods.sort(key=lambda n: (order.index(n) if n in order else len(order), n))
            self._info = {
                "version": __version__,
                "methods": methods,
                "filters": {n: {"n_params": s.n_params, "low": list(s.low), "high": list(s.high),
                                "neutral": list(s.neutral)} for n, s in FILTERS.items()},
                "export_formats": list(EXPORT_FORMATS),
                "extensions": sorted(IMAGE_EXTENSIONS),
                "raw_extensions": sorted(RAW_EXTENSIONS),
                "max_upload_bytes": self.cfg.max_upload_bytes,
                "max_pixels": self.cfg.max_pixels,
                "preview_size": self.cfg.preview_size,
            }
        return self._info

    # -- methods ------------------------------------------------------------------------------

    def method(self, spec: dict):
        """Build (or reuse) the method a request asks for, through the CLI's own option handling."""
        from ..commands._common import method_from_args

        name = spec.get("method") or "deepexposure"
        if not isinstance(name, str) or len(name) > 64:
            raise ApiError(400, "method: expected a method name")
        model = spec.get("model") or None
        if model is not None and (not isinstance(model, str) or len(model) > 1000):
            raise ApiError(400, "model: expected a folder path")
        ev = _float_list(spec.get("ev"), "ev")
        segments = spec.get("segments") or None
        if segments is not None and (not isinstance(segments, int) or isinstance(segments, bool) or not 1 <= segments <= 36):
            raise ApiError(400, "segments: expected a whole number from 1 to 36")
        args = argparse.Namespace(method=name, model=model, ev=ev if name != "exposures" else None,
                                  exposures=ev if name == "exposures" else None, segments=segments)
        if name == "exposures" and not ev:
            raise ApiError(400, "method 'exposures' needs one exposure per region in the EV field, e.g. 1,0.5,0")
        key = (name, model, tuple(ev or ()), segments)
        with self.methods_lock:
            if key in self.methods:
                self.methods.move_to_end(key)
                return self.methods[key]
            try:
                m = method_from_args(args)
            except (ValueError, OSError, RuntimeError) as e:
                raise ApiError(400, str(e)) from None
            self.methods[key] = m
            while len(self.methods) > 6:
                self.methods.popitem(last=False)
            return m

    # -- photos -------------------------------------------------------------------------------

    def add_upload(self, s: Session, tmp: Path, raw_name: str) -> Photo:
        """Decode a stored upload, make its preview; on failure delete it and raise a one-line ApiError."""
        from ..io import IMAGE_EXTENSIONS, ImageReadError, read_image
        from ..resize import resize_long_edge

        name = safe_display_name(raw_name)
        ext = Path(name).suffix.lower()
        pid = secrets.token_hex(8)
        path = s.uploads / (pid + (ext if ext in IMAGE_EXTENSIONS else ".bin"))
        tmp.replace(path)
        try:
            with s.lock:
                if len(s.photos) >= self.cfg.max_photos:
                    raise ApiError(413, f"{name}: this session already holds {self.cfg.max_photos} photos; remove some first")
            try:
                with self._computing():
                    loaded = read_image(path, max_pixels=self.cfg.max_pixels)
                    h, w = loaded.img_srgb.shape[-2:]
                    prev = resize_long_edge(loaded.img_srgb, self.cfg.preview_size, upscale=False).clamp_(0, 1)
                    del loaded
                    thumb = resize_long_edge(prev, _THUMB_SIZE, upscale=False)
            except ImageReadError as e:
                raise ApiError(415, f"{name}: {e.problem}") from None
            except MemoryError:
                raise ApiError(413, f"{name}: not enough memory to decode this photo") from None
            except (ValueError, OSError, RuntimeError) as e:
                raise ApiError(415, f"{name}: cannot read this file ({' '.join(str(e).split())[:200]})") from None
            photo = Photo(pid, name, path, int(w), int(h), _format_of(path, name),
                          s.uploads / f"{pid}.preview.npy", s.uploads / f"{pid}.original.jpg",
                          s.uploads / f"{pid}.thumb.jpg")
            np.save(photo.preview_path, prev[0].numpy().astype(np.float16), allow_pickle=False)
            photo.original_jpg.write_bytes(_jpeg_bytes(prev))
            photo.thumb_jpg.write_bytes(_jpeg_bytes(thumb, 85))
        except BaseException:
            for p in (path, s.uploads / f"{pid}.preview.npy", s.uploads / f"{pid}.original.jpg", s.uploads / f"{pid}.thumb.jpg"):
                p.unlink(missing_ok=True)
            raise
        self._remember_preview(pid, prev)
        with s.lock:
            s.photos[pid] = photo
        return photo

    def remove_photo(self, s: Session, pid: str) -> None:
        p = s.photo(pid)
        with s.lock:
            s.photos.pop(pid, None)
        with self.previews_lock:
            self.previews.pop(pid, None)
            self.previews.pop(pid + "/draft", None)
        for f in (p.path, p.preview_path, p.original_jpg, p.thumb_jpg):
            f.unlink(missing_ok=True)

    def _remember_preview(self, pid: str, prev: torch.Tensor) -> None:
        with self.previews_lock:
            self.previews[pid] = prev
            self.previews.move_to_end(pid)
            while len(self.previews) > self.cfg.preview_cache:
                self.previews.popitem(last=False)

    def preview(self, p: Photo, draft: bool = False) -> torch.Tensor:
        """``(1, 3, h, w)`` float32 sRGB preview (long edge ``preview_size``; half that for a ``draft``)."""
        key = p.id + ("/draft" if draft else "")
        with self.previews_lock:
            t = self.previews.get(key)
            if t is not None:
                self.previews.move_to_end(key)
                return t
        if draft:
            from ..resize import resize_long_edge

            t = resize_long_edge(self.preview(p), max(64, self.cfg.preview_size // 2), upscale=False).clamp_(0, 1)
        else:
            arr = np.load(p.preview_path, allow_pickle=False)
            t = torch.from_numpy(arr.astype(np.float32)).unsqueeze(0)
        self._remember_preview(key, t)
        return t

    def _computing(self):
        sem = self.compute

        class _Guard:
            def __enter__(self_inner):
                if not sem.acquire(timeout=120):
                    raise ApiError(503, "the server is busy; try again in a moment")

            def __exit__(self_inner, *exc):
                sem.release()

        return _Guard()

    # -- retouch and render -------------------------------------------------------------------

    def retouch(self, s: Session, p: Photo, spec: dict) -> Photo:
        from ..pipeline import retouch_tensor

        method = self.method(spec)
        prev = self.preview(p)
        with self._computing():
            try:
                out, recipe = retouch_tensor(method, prev)
            except (ValueError, RuntimeError) as e:
                raise ApiError(422, f"{p.name}: {e}") from None
        recipe.image.update({"width": p.width, "height": p.height, "source": p.name})
        ph, pw = prev.shape[-2:]
        recipe.notes.append(f"planned in the web page on a {pw}x{ph} preview of the {p.width}x{p.height} photo")
        jpg = _jpeg_bytes(out)
        with s.lock:
            p.recipe, p.recipe_from, p.result_jpg = recipe.to_dict(), None, jpg
            p.version += 1
        return p

    def parse_recipe(self, d: Any, source: str = "recipe"):
        from ..recipe import Recipe, RecipeError

        try:
            return Recipe.from_dict(d, source)
        except RecipeError as e:
            raise ApiError(422, str(e)) from None
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise ApiError(422, f"{source}: not a valid recipe ({type(e).__name__})") from None

    def render_preview(self, s: Session, p: Photo, recipe_d: Any, draft: bool = False) -> tuple[bytes, float]:
        """Render a recipe on the preview (``draft``: on a half-size copy, for a slider being dragged)."""
        from ..recipe import render

        recipe = self.parse_recipe(recipe_d)
        prev = self.preview(p, draft)
        with self._computing():
            t0 = time.perf_counter()
            try:
                out = render(recipe, prev)
            except (ValueError, RuntimeError) as e:
                raise ApiError(422, f"recipe: {e}") from None
            jpg = _jpeg_bytes(out)
            ms = (time.perf_counter() - t0) * 1000
        d = recipe.to_dict()
        d["image"] = {**d.get("image", {}), "width": p.width, "height": p.height}
        with s.lock:
            p.recipe = d
            if not draft:
                p.result_jpg = jpg
            p.version += 1
        return jpg, ms

    def explain(self, p: Photo) -> bytes:
        from ..explain import explain_image
        from ..recipe import render

        if p.recipe is None:
            raise ApiError(409, f"{p.name}: retouch it first")
        recipe = self.parse_recipe(p.recipe)
        prev = self.preview(p)
        with self._computing():
            sheet = explain_image(prev, recipe, render(recipe, prev))
            return _jpeg_bytes(sheet, 88)

    # -- jobs ---------------------------------------------------------------------------------

    def submit_job(self, s: Session, body: dict) -> Job:
        kind = body.get("kind")
        if kind not in _JOB_KINDS:
            raise ApiError(400, f"kind: expected one of {', '.join(_JOB_KINDS)}")
        ids = body.get("photos")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "photos: expected a non-empty list of photo ids")
        photos = [s.photo(i) for i in dict.fromkeys(ids)]
        opts: dict[str, Any] = {}
        if kind == "retouch" or (kind == "export" and body.get("method")):
            opts["method"] = self.method(body)  # fail now, not per photo
            opts["spec"] = body
        if kind == "apply":
            opts["recipe"] = self.parse_recipe(body.get("recipe"))
        if kind == "export":
            fmt = body.get("format") or None
            if fmt is not None and fmt not in EXPORT_FORMATS:
                raise ApiError(400, f"format: expected one of {', '.join(EXPORT_FORMATS)} (or none: as the input)")
            q = body.get("quality", 95)
            if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100:
                raise ApiError(400, "quality: expected a whole number from 1 to 100")
            opts.update(format=fmt, quality=q)
        with s.lock:
            if sum(j.state in ("queued", "running") for j in s.jobs.values()) >= 4:
                raise ApiError(429, "this session already has 4 jobs waiting; let them finish first")
            job = Job(secrets.token_hex(6), kind, [{"photo": p.id, "name": p.name, "status": "queued"} for p in photos])
            s.jobs[job.id] = job
        self.jobs.submit(self._run_job, s, job, photos, opts)
        return job

    def _run_job(self, s: Session, job: Job, photos: list[Photo], opts: dict) -> None:
        def update(item: dict | None = None, **kw: Any) -> None:
            with s.lock:  # the job is read (and serialised) under the same lock
                if item is None:
                    job.state = kw["state"]
                else:
                    item.update(kw)

        update(state="running")
        for item, p in zip(job.items, photos, strict=True):
            if job.cancel:
                update(item, status="cancelled")
                continue
            update(item, status="running")
            try:
                with s.lock:
                    if p.id not in s.photos:
                        raise ApiError(404, f"{p.name}: removed from the session")
                if job.kind == "retouch":
                    self.retouch(s, p, opts["spec"])
                elif job.kind == "apply":
                    self.apply_recipe(s, p, opts["recipe"])
                else:
                    if p.recipe is None:
                        if "spec" not in opts:
                            raise ApiError(409, f"{p.name}: not retouched yet; retouch it or choose a method for the export")
                        self.retouch(s, p, opts["spec"])
                    update(item, **self.export(s, p, opts["format"], opts["quality"]))
                update(item, status="done")
            except ApiError as e:
                update(item, status="error", error=e.message)
            except Exception as e:  # noqa: BLE001 - one photo must not stop the batch
                log.exception("job %s: %s", job.id, p.name)
                update(item, status="error", error=f"{p.name}: internal error ({type(e).__name__}); see the server log")
        update(state="cancelled" if job.cancel else "done")

    def apply_recipe(self, s: Session, p: Photo, recipe) -> None:
        d = recipe.to_dict()
        src = d.get("image", {}).get("source")
        d["image"] = {**d.get("image", {}), "width": p.width, "height": p.height, "source": p.name}
        jpg, _ = self.render_preview(s, p, d)
        with s.lock:
            p.recipe_from = src or "a loaded recipe"

    def export(self, s: Session, p: Photo, fmt: str | None, quality: int) -> dict:
        """Render the photo's recipe at full resolution into the session's export folder."""
        from ..io import ImageReadError, ImageWriteError, read_image, write_image
        from ..pipeline import output_path_for
        from ..recipe import render

        recipe = self.parse_recipe(p.recipe)
        recipe.image.update({"width": p.width, "height": p.height, "source": p.name})
        base = _safe_stem(p.name) + Path(p.name).suffix.lower()
        dst = output_path_for(Path(base), s.exports_dir, fmt)
        if dst.suffix.lower() not in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"):
            dst = dst.with_suffix(".jpg")
        with s.lock:
            if dst.exists() or dst.name in s.exports:
                dst = dst.with_name(f"{dst.stem}-{p.id[:6]}-{secrets.token_hex(2)}{dst.suffix}")
            s.exports[dst.name] = dst  # reserve the name
        try:
            loaded = read_image(p.path, max_pixels=self.cfg.max_pixels)
            out = render(recipe, loaded.img_srgb)
            alpha = loaded.alpha if dst.suffix.lower() in (".png", ".tif", ".tiff", ".webp") else None
            write_image(dst, out, alpha=alpha, exif=loaded.exif, quality=quality)
            del out, loaded
            rpath = dst.with_name(dst.name + ".recipe.json")
            recipe.save(rpath)
        except (ImageReadError, ImageWriteError) as e:
            with s.lock:
                s.exports.pop(dst.name, None)
            raise ApiError(422, f"{p.name}: {e.problem}") from None
        with s.lock:
            s.exports[rpath.name] = rpath
        return {"file": dst.name, "recipe": rpath.name, "url": f"/api/s/{s.id}/exports/{dst.name}",
                "recipe_url": f"/api/s/{s.id}/exports/{rpath.name}", "bytes": dst.stat().st_size}

    def close(self) -> None:
        self.jobs.shutdown(wait=False, cancel_futures=True)


def _format_of(path: Path, name: str) -> str:
    from ..io import RAW_EXTENSIONS

    ext = Path(name).suffix.lower()
    if ext in RAW_EXTENSIONS:
        return ext[1:].upper()
    with open(path, "rb") as f:
        head = f.read(12)
    if head.startswith(b"\xff\xd8"):
        return "JPEG"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head[:4] == b"RIFF":
        return "WEBP"
    return "TIFF"


# ----------------------------------------------------------------------------------------------
# HTTP


def create_app(config: ServeConfig):
    """Build the Starlette app. ``app.state.server`` is the :class:`Server` (state, limits)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from .uploads import UploadError, stream_multipart

    server = Server(config)

    def err(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(msg).split())}, status_code=status)

    async def read_json(request: Request) -> dict:
        cl = request.headers.get("content-length")
        if cl is not None and (not cl.isdigit() or int(cl) > config.max_json_bytes):
            raise ApiError(413, f"request too large (limit {config.max_json_bytes // 2**20} MB)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_json_bytes:
                raise ApiError(413, f"request too large (limit {config.max_json_bytes // 2**20} MB)")
        try:
            d = json.loads(bytes(body) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(d, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return d

    def sess(request: Request) -> Session:
        return server.session(request.path_params["sid"])

    def jpeg(data: bytes, **headers: str) -> Response:
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store", **headers})

    async def index(request: Request):
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def info(request: Request):
        return JSONResponse(await run_in_threadpool(server.info))

    async def new_session(request: Request):
        s = await run_in_threadpool(server.new_session)
        return JSONResponse({"session": s.id})

    async def list_photos(request: Request):
        s = sess(request)
        with s.lock:
            return JSONResponse({"photos": [p.to_json() for p in s.photos.values()]})

    async def upload(request: Request):
        s = sess(request)
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(415, "upload photos as multipart/form-data (field 'files')")
        try:
            parts = await stream_multipart(request, s.uploads, config.max_upload_bytes, max_files=200)
        except UploadError as e:
            raise ApiError(e.status, str(e)) from None
        photos, errors, statuses = [], [], []
        for tmp, raw_name in parts:
            try:
                p = await run_in_threadpool(server.add_upload, s, tmp, raw_name)
                photos.append(p.to_json())
            except ApiError as e:
                errors.append({"name": safe_display_name(raw_name), "error": e.message})
                statuses.append(e.status)
            finally:
                tmp.unlink(missing_ok=True)
        if not parts:
            raise ApiError(400, "no file in the upload (field 'files')")
        status = 200 if photos else statuses[0]
        return JSONResponse({"photos": photos, "errors": errors,
                             **({"error": errors[0]["error"]} if not photos else {})}, status_code=status)

    async def get_photo(request: Request):
        s = sess(request)
        p = s.photo(request.path_params["pid"])
        with s.lock:
            return JSONResponse(p.to_json(with_recipe=True))

    async def delete_photo(request: Request):
        s = sess(request)
        await run_in_threadpool(server.remove_photo, s, request.path_params["pid"])
        return JSONResponse({"ok": True})

    async def original(request: Request):
        s = sess(request)
        p = s.photo(request.path_params["pid"])
        f = p.thumb_jpg if request.query_params.get("thumb") else p.original_jpg
        return FileResponse(f, media_type="image/jpeg")

    async def result(request: Request):
        s = sess(request)
        p = s.photo(request.path_params["pid"])
        if p.result_jpg is None:
            raise ApiError(409, f"{p.name}: not retouched yet")
        return jpeg(p.result_jpg)

    async def explain(request: Request):
        s = sess(request)
        p = s.photo(request.path_params["pid"])
        return jpeg(await run_in_threadpool(server.explain, p))

    async def retouch(request: Request):
        s = sess(request)
        p = s.photo(request.path_params["pid"])
        body = await read_json(request)
        p = await run_in_threadpool(server.retouch, s, p, body)
        with s.lock:
            return JSONResponse(p.to_json(with_recipe=True))

    async def render(request: Request):
        s = sess(request)
        p = s.photo(request.path_params["pid"])
        body = await read_json(request)
        jpg, ms = await run_in_threadpool(server.render_preview, s, p, body.get("recipe"), bool(body.get("draft")))
        return jpeg(jpg, **{"X-Render-Ms": f"{ms:.1f}", "X-Photo-Version": str(p.version)})

    async def check_recipe(request: Request):
        sess(request)
        body = await read_json(request)
        r = server.parse_recipe(body.get("recipe"), str(body.get("source") or "recipe")[:120])
        return JSONResponse({"recipe": r.to_dict()})

    async def submit_job(request: Request):
        s = sess(request)
        body = await read_json(request)
        job = await run_in_threadpool(server.submit_job, s, body)
        return JSONResponse(job.to_json())

    def job_request(request: Request, cancel: bool) -> JSONResponse:
        s = sess(request)
        with s.lock:
            job = s.jobs.get(request.path_params["jid"])
            if job is None:
                raise ApiError(404, "no such job")
            if cancel:
                job.cancel = True
            return JSONResponse(job.to_json())

    async def get_job(request: Request):
        return job_request(request, cancel=False)

    async def cancel_job(request: Request):
        return job_request(request, cancel=True)

    async def download(request: Request):
        s = sess(request)
        name = request.path_params["name"]
        with s.lock:
            path = s.exports.get(name) if _EXPORT_NAME_RE.match(name) else None
        if path is None or not path.is_file():
            raise ApiError(404, "no such export in this session")
        media = "application/json" if name.endswith(".json") else None
        return FileResponse(path, media_type=media, filename=name)

    async def api_error(request: Request, exc: ApiError):
        return err(exc.status, exc.message)

    async def http_error(request: Request, exc):
        return err(getattr(exc, "status_code", 500), getattr(exc, "detail", "error") or "error")

    async def internal_error(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return err(500, f"internal error ({type(exc).__name__}); the server log has the details")

    from starlette.exceptions import HTTPException

    api = "/api/s/{sid}"
    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/session", new_session, methods=["POST"]),
        Route(api + "/photos", list_photos, methods=["GET"]),
        Route(api + "/photos", upload, methods=["POST"]),
        Route(api + "/photos/{pid}", get_photo, methods=["GET"]),
        Route(api + "/photos/{pid}", delete_photo, methods=["DELETE"]),
        Route(api + "/photos/{pid}/original.jpg", original),
        Route(api + "/photos/{pid}/result.jpg", result),
        Route(api + "/photos/{pid}/explain.jpg", explain),
        Route(api + "/photos/{pid}/retouch", retouch, methods=["POST"]),
        Route(api + "/photos/{pid}/render", render, methods=["POST"]),
        Route(api + "/recipe/check", check_recipe, methods=["POST"]),
        Route(api + "/jobs", submit_job, methods=["POST"]),
        Route(api + "/jobs/{jid}", get_job),
        Route(api + "/jobs/{jid}/cancel", cancel_job, methods=["POST"]),
        Route(api + "/exports/{name}", download),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if config.allowed_hosts:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=config.allowed_hosts))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},  # type: ignore[dict-item]
        lifespan=_lifespan(server),
    )
    app.state.server = server
    return app


def _lifespan(server: Server):
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        server.close()

    return lifespan


class _SecurityHeaders:
    """Adds a strict Content-Security-Policy (nothing loads from outside this server) and nosniff."""

    CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", self.CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
