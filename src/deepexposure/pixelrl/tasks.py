"""PixelRL's environments: what the agents start from, what they aim at, and their reward.

- ``denoise`` (section VI-A): a clean grey crop plus noise (:class:`NoiseModel`: Gaussian of
  standard deviation sigma on the 0..255 scale, Poisson of a given peak intensity, salt-and-pepper of
  a given density). Actions: Table I. Reward eq. (19), ``r_i = (I_i - s_i)^2 - (I_i - s'_i)^2`` on
  [0, 1] images times 255 (the authors' scale). ``t_max`` 5. Colour photos: each channel on its own.
- ``restore`` (section VI-B): text in random fonts, sizes 10-30 px and intensity 0 or 255 written
  over a clean grey crop (:func:`overlay_text`), no mask given. Same actions and reward, ``t_max`` 15.
- ``enhance`` (section VI-C): the project's synthetic exposure pairs
  (:class:`deepexposure.pairs.SyntheticPairs`, the DeepExposure agent's degradations and references);
  actions Table VII; the network sees CIELab (``L/100, a/110, b/110``); reward eq. (21), the decrease of
  the per-pixel Euclidean distance to the reference in CIELab. ``t_max`` 10.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..metrics import srgb_to_lab
from .actions import DENOISE_ACTIONS, ENHANCE_ACTIONS, ActionSet, luminance601

__all__ = ["TASKS", "Task", "to_gray", "NoiseModel", "parse_noise", "add_noise", "overlay_text", "squared_error_reward", "lab_reward",
           "lab_input", "DEFAULT_T_MAX", "fonts", "noise_sigma"]

TASKS = ("denoise", "restore", "enhance")
DEFAULT_T_MAX = {"denoise": 5, "restore": 15, "enhance": 10}
NOISE_KINDS = ("gaussian", "poisson", "saltpepper")
#: noise of a ``--noise`` given by kind only
DEFAULT_NOISE = {"gaussian": "gaussian:25", "poisson": "poisson:30", "saltpepper": "saltpepper:0.5"}


@dataclass(frozen=True)
class NoiseModel:
    """A noise kind and the range its level is drawn from (uniformly; ``lo == hi`` for a fixed level).

    Levels: Gaussian sigma on the 0..255 scale, Poisson peak intensity, salt-and-pepper density."""

    kind: str
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.lo:g}" + (f"-{self.hi:g}" if self.hi != self.lo else "")


def parse_noise(text: str) -> NoiseModel:
    """``"gaussian:25"``, ``"gaussian:5-50"``, ``"poisson:30"``, ``"saltpepper:0.5"``, or a kind alone
    (its :data:`DEFAULT_NOISE`) -> :class:`NoiseModel`; ``ValueError`` (one line) otherwise."""
    text = DEFAULT_NOISE.get(text.strip(), text.strip())
    kind, _, level = text.partition(":")
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)} (optionally ':LEVEL' or ':LO-HI'), got {text!r}")
    try:
        lo_s, _, hi_s = level.partition("-")
        lo = float(lo_s)
        hi = float(hi_s) if hi_s else lo
    except ValueError:
        raise ValueError(f"noise level must be a number or a range LO-HI, got {text!r}") from None
    top = {"gaussian": 255.0, "poisson": 1e6, "saltpepper": 1.0}[kind]
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= top):
        raise ValueError(f"noise level of {kind} must be in (0, {top:g}] with LO <= HI, got {text!r}")
    return NoiseModel(kind, lo, hi)


def add_noise(clean: torch.Tensor, noise: NoiseModel, generator: torch.Generator) -> torch.Tensor:
    """``clean (B, C, H, W)`` in [0, 1] plus noise (one level per image, drawn from ``noise``'s range),
    clipped to [0, 1]. Gaussian ``x + sigma/255 n``; Poisson ``Poisson(peak x) / peak``; salt-and-pepper:
    each pixel is replaced with probability ``density`` by 0 or 1 (equally likely). Random numbers
    come from ``generator`` on the CPU."""
    B = clean.shape[0]
    u = torch.rand(B, generator=generator, dtype=torch.float64)
    level = (noise.lo + (noise.hi - noise.lo) * u).to(torch.float32).view(B, 1, 1, 1)
    x = clean.detach().cpu().float()
    if noise.kind == "gaussian":
        out = x + level / 255.0 * torch.randn(x.shape, generator=generator)
    elif noise.kind == "poisson":
        out = torch.poisson(x * level, generator=generator) / level
    else:
        r = torch.rand(x.shape, generator=generator)
        salt = torch.rand(x.shape, generator=generator) < 0.5
        out = torch.where(r < level, salt.float(), x)
    return out.clamp(0.0, 1.0).to(clean.device)


_WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you "
          "were her she there been one all we their has would when if so no will my what up out more about some into can "
          "them only other time could these two may first then do any like new now over such our man me even most made after "
          "also did many before must through back years where much your way well down should because each just those people "
          "how too little state good very make world still own see men work long get here between both life being under never "
          "day same another know while last might us great old year off come since against go came right used take three").split()


def fonts() -> list[Path]:
    """TrueType fonts for the text overlays: the system's sans, serif, bold and italic faces
    (DejaVu, Liberation), or none (then Pillow's built-in scalable font is used)."""
    found: list[Path] = []
    for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path("/Library/Fonts"), Path("C:/Windows/Fonts")):
        if root.is_dir():
            found += sorted(p for p in root.rglob("*.ttf") if any(n in p.name for n in ("DejaVuSans", "DejaVuSerif", "Liberation", "Arial", "Times")))
    return [p for p in found if "Mono" not in p.name]


def overlay_text(clean: torch.Tensor, generator: torch.Generator, size_range: tuple[int, int] = (10, 30)) -> torch.Tensor:
    """Write random words over each image of ``clean (B, C, H, W)`` (section VI-B): lines in a random font
    and size in ``size_range`` px, every line black (0) or white (1). Returns the degraded images."""
    from PIL import Image, ImageDraw, ImageFont

    faces = fonts()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    rng = random.Random(seed)
    out = clean.detach().cpu().clone()
    H, W = clean.shape[-2:]
    for b in range(clean.shape[0]):
        size = rng.randint(*size_range)
        font = ImageFont.truetype(str(rng.choice(faces)), size) if faces else ImageFont.load_default(size)
        ink = Image.new("L", (W, H), 0)
        value = Image.new("L", (W, H), 0)
        d_ink, d_val = ImageDraw.Draw(ink), ImageDraw.Draw(value)
        y = rng.randint(-size // 2, max(0, size // 2))
        while y < H:
            line = " ".join(rng.choice(_WORDS) for _ in range(max(1, W // (2 * size) + 2)))
            x = rng.randint(-2 * size, size)
            v = 255 * rng.randint(0, 1)
            d_ink.text((x, y), line, fill=255, font=font)
            d_val.text((x, y), line, fill=v, font=font)
            y += int(size * rng.uniform(1.1, 2.2))
        m = torch.from_numpy(np.asarray(ink, dtype="float32") / 255.0)
        v_t = torch.from_numpy(np.asarray(value, dtype="float32") / 255.0)
        mask = (m > 0.5).to(out.dtype)
        out[b] = out[b] * (1 - mask) + (v_t > 0.5).to(out.dtype) * mask
    return out.to(clean.device)


def squared_error_reward(prev: torch.Tensor, nxt: torch.Tensor, target: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """Eq. (19): ``scale ((I - s)^2 - (I - s')^2)`` per pixel, summed over channels: ``(B, C, H, W) -> (B, 1, H, W)``."""
    return scale * ((target - prev).pow(2) - (target - nxt).pow(2)).sum(1, keepdim=True)


def lab_reward(prev_lab: torch.Tensor, nxt_lab: torch.Tensor, target_lab: torch.Tensor) -> torch.Tensor:
    """Eq. (21): ``||I - s||_2 - ||I - s'||_2`` per pixel in CIELab: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    dist = lambda a: (target_lab - a).pow(2).sum(1, keepdim=True).clamp_min(1e-12).sqrt()
    return dist(prev_lab) - dist(nxt_lab)


_LAB_SCALE = (100.0, 110.0, 110.0)


def lab_input(img_srgb: torch.Tensor) -> torch.Tensor:
    """The enhancement network's input: CIELab scaled to about [-1, 1] (``L/100, a/110, b/110``). ``(B, 3, H, W)``."""
    s = torch.tensor(_LAB_SCALE, dtype=img_srgb.dtype, device=img_srgb.device).view(1, 3, 1, 1)
    return srgb_to_lab(img_srgb) / s


@dataclass(frozen=True)
class Task:
    """One PixelRL task: its action set, episode length, network input and reward."""

    name: str
    actions: ActionSet
    t_max: int

    @property
    def in_channels(self) -> int:
        return 3 if self.name == "enhance" else 1

    def net_input(self, state: torch.Tensor) -> torch.Tensor:
        """The network's view of a state ``(B, C, H, W)``: the grey level itself, or Lab for ``enhance``."""
        return lab_input(state) if self.name == "enhance" else state

    def reward(self, prev: torch.Tensor, nxt: torch.Tensor, target: torch.Tensor, target_lab: torch.Tensor | None = None) -> torch.Tensor:
        """``r^(t) (B, 1, H, W)`` for the step ``prev -> nxt``: eq. (19), or eq. (21) for ``enhance``."""
        if self.name == "enhance":
            tl = srgb_to_lab(target) if target_lab is None else target_lab
            return lab_reward(srgb_to_lab(prev), srgb_to_lab(nxt), tl)
        return squared_error_reward(prev, nxt, target)

    @staticmethod
    def make(name: str, t_max: int = 0) -> Task:
        """The task ``name`` (:data:`TASKS`) with episode length ``t_max`` (0: the paper's)."""
        if name not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
        acts = ENHANCE_ACTIONS if name == "enhance" else DENOISE_ACTIONS
        return Task(name, acts, int(t_max) or DEFAULT_T_MAX[name])


def noise_sigma(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation of additive white noise, estimated per image on the 0..255 scale:
    ``(B, C, H, W)`` in [0, 1] -> ``(B,)``. Donoho and Johnstone's robust estimate
    ``sigma = median(|HH|) / 0.6745`` on the diagonal band ``HH`` of a one-level orthonormal Haar
    transform, over all channels (``skimage.restoration.estimate_sigma`` computes the same estimate
    on a Daubechies-2 band). Images smaller than 2 x 2 give 0."""
    B, C, H, W = x.shape
    h, w = H // 2 * 2, W // 2 * 2
    if h == 0 or w == 0:
        return x.new_zeros(B)
    hh = (x[..., 0:h:2, 0:w:2] - x[..., 0:h:2, 1:w:2] - x[..., 1:h:2, 0:w:2] + x[..., 1:h:2, 1:w:2]) / 2
    return hh.abs().flatten(1).median(1).values / 0.6745 * 255.0


def to_gray(img_srgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)`` grey level (Rec. 601, as ``cv2.IMREAD_GRAYSCALE``)."""
    return luminance601(img_srgb)
