"""HDR environment maps as a source of real scene radiance: read, look through a camera, expose.

An equirectangular map ``(1, 3, H, W)`` (linear, scene-referred, any positive value) covers the
sphere: column centre ``x`` is longitude ``lon = 2 pi (x + 0.5) / W - pi`` (``-pi`` at the left
edge, 0 in the middle), row centre ``y`` is latitude ``lat = pi / 2 - pi (y + 0.5) / H`` (up is
+pi/2). Directions ``d = (dx, dy, dz)`` with ``y`` up: ``lon = atan2(dx, dz)``,
``lat = asin(dy / |d|)``.

**Perspective view** (pinhole camera, :func:`perspective_directions`): pixel ``(i, j)`` of an
``h x w`` view with horizontal field of view ``fov``::

    x_c = (2 (j + 0.5) / w - 1) tan(fov / 2)
    y_c = -(2 (i + 0.5) / h - 1) tan(fov / 2) h / w
    d   = R_yaw R_pitch (x_c, y_c, 1)
    R_pitch: (x, y, z) -> (x, y cos p + z sin p, -y sin p + z cos p)        (p > 0 looks up)
    R_yaw:   (x, y, z) -> (x cos a + z sin a, y, -x sin a + z cos a)        (yaw a = the centre's longitude)

and the view is the map sampled bilinearly at ``(lon(d), lat(d))`` (``torch.nn.functional.grid_sample``,
the map wrapped around in longitude). The centre ray of a view looks at ``(lon, lat) = (yaw, pitch)``.

**Exposure** (:func:`key_exposure`): a well-exposed rendering multiplies the radiance by
``k = key / exp(mean(log(Y + 1e-4)))`` (Reinhard's log-average "key", ``key = 0.18``), then applies
the camera response :func:`shoulder` and the sRGB encoding. A wrongly exposed shot of the same view
applies a degradation (:mod:`deepexposure.synth`, e.g. ``k 2^E``) to the same radiance before the
same response: real radiance, so an underexposed input still holds the detail the reference shows
and an overexposed one really loses it.

Reading EXR needs the optional ``OpenEXR`` package (``pip install 'deepexposure[hdr]'``); Pillow
and OpenCV cannot read the DWAB-compressed maps shipped by Blender.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .color import LUM_WEIGHTS_REC709, luminance

__all__ = [
    "HDRReadError",
    "read_exr",
    "list_hdr",
    "View",
    "perspective_directions",
    "directions_to_lonlat",
    "wrap_equirect",
    "equirect_to_perspective",
    "sample_view",
    "key_exposure",
    "shoulder",
    "KEY",
    "SHOULDER_KNEE",
]

#: Reinhard's key: the log-average luminance of a well-exposed rendering.
KEY = 0.18
#: Knee of the camera response :func:`shoulder` (linear up to here, white at ``2 - knee``).
SHOULDER_KNEE = 0.5
_LOG_EPS = 1e-4


class HDRReadError(ValueError):
    """An HDR map that cannot be read; ``str()`` is one line naming the file."""


def read_exr(path: str | Path) -> torch.Tensor:
    """Read an OpenEXR file's RGB as ``(1, 3, H, W)`` float32 linear radiance.

    Uses the ``OpenEXR`` bindings (>= 3.2): an ``"RGB"`` (or separate ``R``, ``G``, ``B``) channel.
    Non-finite values become 0, negative values 0.

    Raises:
        HDRReadError: OpenEXR not installed, unreadable file or no RGB channels (one line).
    """
    path = Path(path)
    try:
        import OpenEXR
    except ImportError:
        raise HDRReadError(f"{path}: reading EXR needs the OpenEXR package (pip install 'deepexposure[hdr]' or pip install OpenEXR)") from None
    if not path.is_file():
        raise HDRReadError(f"{path}: no such file")
    try:
        with OpenEXR.File(str(path)) as f:
            ch = f.channels()
            if "RGB" in ch:
                arr = np.asarray(ch["RGB"].pixels, dtype=np.float32)
            elif all(c in ch for c in "RGB"):
                arr = np.stack([np.asarray(ch[c].pixels, dtype=np.float32) for c in "RGB"], axis=-1)
            else:
                raise HDRReadError(f"{path}: no RGB channels (found {', '.join(sorted(ch)) or 'none'})")
    except HDRReadError:
        raise
    except Exception as e:  # the bindings raise plain RuntimeError / OSError with multi-line text
        raise HDRReadError(f"{path}: not a readable EXR file ({' '.join(str(e).split())})") from None
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise HDRReadError(f"{path}: unexpected pixel array shape {arr.shape}")
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].contiguous()


def list_hdr(folder: str | Path) -> list[Path]:
    """The ``*.exr`` files in ``folder`` (not recursive), sorted. Raises HDRReadError if it is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HDRReadError(f"{folder}: HDR folder does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".exr" and not p.name.startswith("."))


@dataclass(frozen=True)
class View:
    """A pinhole camera: ``yaw`` (longitude of the centre), ``pitch`` (latitude), horizontal ``fov`` (radians)."""

    yaw: float
    pitch: float
    fov: float

    def to_dict(self) -> dict:
        return asdict(self)


def perspective_directions(view: View, h: int, w: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Ray directions of the ``h x w`` view (formula in the module docstring), ``(h, w, 3)``, not normalised."""
    if not (0 < view.fov < math.pi):
        raise ValueError(f"field of view must be in (0, pi) radians, got {view.fov}")
    t = math.tan(view.fov / 2)
    xc = ((2 * (torch.arange(w, dtype=dtype, device=device) + 0.5) / w - 1) * t).view(1, w).expand(h, w)
    yc = (-(2 * (torch.arange(h, dtype=dtype, device=device) + 0.5) / h - 1) * t * h / w).view(h, 1).expand(h, w)
    zc = torch.ones(h, w, dtype=dtype, device=device)
    cp, sp = math.cos(view.pitch), math.sin(view.pitch)
    y1 = yc * cp + zc * sp
    z1 = -yc * sp + zc * cp
    ca, sa = math.cos(view.yaw), math.sin(view.yaw)
    x2 = xc * ca + z1 * sa
    z2 = -xc * sa + z1 * ca
    return torch.stack([x2, y1, z2], dim=-1)


def directions_to_lonlat(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lon, lat)`` in radians of directions ``(..., 3)``: ``atan2(dx, dz)``, ``asin(dy / |d|)``."""
    n = d.norm(dim=-1).clamp(min=1e-12)
    return torch.atan2(d[..., 0], d[..., 2]), torch.asin((d[..., 1] / n).clamp(-1.0, 1.0))


def wrap_equirect(env_lin: torch.Tensor) -> torch.Tensor:
    """The map with one column copied around each side (``(1, C, H, W + 2)``), for seamless sampling."""
    return torch.cat([env_lin[..., -1:], env_lin, env_lin[..., :1]], dim=-1)


def equirect_to_perspective(env_lin: torch.Tensor, view: View, size: tuple[int, int], *, wrapped: bool = False) -> torch.Tensor:
    """Render a perspective view of an equirectangular map (bilinear, wrapped in longitude).

    Args:
        env_lin: ``(1, C, H, W)`` linear map (or, with ``wrapped``, :func:`wrap_equirect` of it,
            ``(1, C, H, W + 2)``, to avoid copying the map on every call).
        view: the camera.
        size: ``(h, w)`` of the view in px.
    Returns:
        ``(1, C, h, w)``, dtype/device of ``env_lin`` (ray directions computed in its dtype). No
        antialiasing: render at a multiple of the wanted size and shrink (as
        :class:`deepexposure.pairs.SyntheticPairs` does) when a view pixel covers several map pixels.
    """
    if env_lin.dim() != 4 or env_lin.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) map, got {tuple(env_lin.shape)}")
    h, w = size
    padded = env_lin if wrapped else wrap_equirect(env_lin)
    H, W = padded.shape[-2], padded.shape[-1] - 2
    d = perspective_directions(view, h, w, dtype=env_lin.dtype, device=env_lin.device)
    lon, lat = directions_to_lonlat(d)
    # map pixel coordinates (centres at integers) -> normalised coordinates of the padded map
    x = (lon + math.pi) / (2 * math.pi) * W - 0.5
    y = (math.pi / 2 - lat) / math.pi * H - 0.5
    gx = 2 * (x + 1 + 0.5) / (W + 2) - 1
    gy = 2 * (y + 0.5) / H - 1
    grid = torch.stack([gx, gy], dim=-1)[None]
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sample_view(
    generator: torch.Generator,
    *,
    pitch_deg: tuple[float, float] = (-25.0, 25.0),
    fov_deg: tuple[float, float] = (45.0, 90.0),
) -> View:
    """A random camera: yaw uniform on the circle, pitch and horizontal field of view uniform in the ranges (degrees)."""
    u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
    yaw = -math.pi + 2 * math.pi * u[0]
    pitch = math.radians(pitch_deg[0] + (pitch_deg[1] - pitch_deg[0]) * u[1])
    fov = math.radians(fov_deg[0] + (fov_deg[1] - fov_deg[0]) * u[2])
    return View(yaw, pitch, fov)


def key_exposure(img_lin: torch.Tensor, key: float = KEY) -> float:
    """The gain that puts the log-average luminance at ``key``: ``key / exp(mean(log(Y + 1e-4)))``.

    ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` of ``img_lin`` (``(1, 3, H, W)``, linear).
    """
    y = luminance(img_lin.detach().double(), LUM_WEIGHTS_REC709)
    return float(key / torch.exp(torch.log(y + _LOG_EPS).mean()))


def shoulder(img_lin: torch.Tensor, knee: float = SHOULDER_KNEE) -> torch.Tensor:
    """The renders' camera response, per channel, C1-continuous, monotone, onto [0, 1]::

        T(x) = x                                  x <= k
        T(x) = x - (x - k)^2 / (4 (1 - k))        k < x < 2 - k
        T(x) = 1                                  x >= 2 - k     (white point 2 - k)

    with ``k = knee`` in (0, 1); negative values become 0.
    """
    if not (0 < knee < 1):
        raise ValueError(f"knee must be in (0, 1), got {knee}")
    x = img_lin.clamp(min=0.0, max=2.0 - knee)
    return torch.where(x <= knee, x, x - (x - knee) ** 2 / (4.0 * (1.0 - knee)))
