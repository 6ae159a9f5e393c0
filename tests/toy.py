"""Toy data with known answers, built from real photos shipped in scikit-image's wheel."""

from __future__ import annotations

import torch

from deepexposure.augment import crop, random_crop_box
from deepexposure.filters import global_exposure
from deepexposure.resize import make_thumbnail

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name: str) -> torch.Tensor:
    """``(1, 3, H, W)`` sRGB photo from ``skimage.data`` (shipped in the wheel, no download)."""
    import numpy as np
    import skimage.data

    from deepexposure.io import uint8_to_tensor

    arr = getattr(skimage.data, name)()
    return uint8_to_tensor(np.ascontiguousarray(arr))


def random_crops(seed: int, n_per_photo: int, size: int = 64) -> torch.Tensor:
    """Square random crops (half to full short side) of each photo, as ``size`` thumbnails."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in PHOTOS:
        img = photo(name)
        h, w = img.shape[-2:]
        for _ in range(n_per_photo):
            box = random_crop_box(h, w, g, scale=(0.5, 1.0))
            out.append(make_thumbnail(crop(img, box), size))
    return torch.cat(out)


def toy_exposure_set(ev_offset: float = -1.5, n_per_photo: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpaired (inputs, targets): targets are well-exposed crops; inputs are *other* crops ``ev_offset`` EV off.

    The right answer for an exposure agent is ``-ev_offset`` everywhere.
    """
    targets = random_crops(0, n_per_photo)
    inputs = random_crops(1, n_per_photo)
    inputs = global_exposure(inputs, torch.full((inputs.shape[0], 1), ev_offset))
    return inputs, targets


def straight_and_resumed(make):
    """Train ``make("straight")`` to the end; train ``make("resumed")`` for 9 steps (its checkpoint is
    at step 7, steps 8-9 are lost as in a crash), then resume a fresh ``make("resumed")``.
    Returns ``(straight, resumed)`` trainers."""
    straight = make("straight")
    straight.fit()
    make("resumed").fit(stop_after=9)
    resumed = make("resumed")
    resumed.fit(resume=True)
    return straight, resumed


def assert_same_training_state(a, b, atol: float = 1e-6) -> None:
    """Same step, agent networks, discriminator and agent extra state (OU noise, buffers)."""
    assert a.step == b.step
    for name, net in a.agent.networks().items():
        other = b.agent.networks()[name].state_dict()
        for k, v in net.state_dict().items():
            assert torch.allclose(v, other[k], atol=atol), (name, k)
    for k, v in a.disc.state_dict().items():
        assert torch.allclose(v, b.disc.state_dict()[k], atol=atol), ("discriminator", k)
    for k, v in a.agent.extra_state().items():
        assert torch.allclose(v, b.agent.extra_state()[k], atol=atol), k
    assert (a.fake_pool.filled, a.fake_pool.next) == (b.fake_pool.filled, b.fake_pool.next)
    assert torch.allclose(a.fake_pool.images, b.fake_pool.images, atol=atol), "fake pool"


def write_toy_folders(root):
    """``root/ins`` (4 crops at half brightness) and ``root/tgs`` (the same 4 crops) as PNGs: a tiny unpaired training set."""
    from PIL import Image

    from deepexposure.io import tensor_to_uint8

    crops = random_crops(5, 1, size=48)
    ins, tgs = root / "ins", root / "tgs"
    ins.mkdir()
    tgs.mkdir()
    for i in range(4):
        Image.fromarray(tensor_to_uint8(crops[i : i + 1] * 0.5)).save(ins / f"in{i}.png")
        Image.fromarray(tensor_to_uint8(crops[i : i + 1])).save(tgs / f"tg{i}.png")
    return ins, tgs


def write_smooth_photos(folder, n, base_hw, height, height_step, width):
    """``n`` smooth random photos ``p{i}.png`` (a ``base_hw`` noise grid, bilinearly enlarged to
    ``(height + height_step * i, width)``, seed 0) in ``folder``; returns their sorted paths."""
    import torch

    from deepexposure.io import write_image

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = torch.rand(1, 3, *base_hw, generator=g)
        img = torch.nn.functional.interpolate(base, size=(height + height_step * i, width), mode="bilinear", align_corners=False)
        write_image(folder / f"p{i}.png", img)
    return sorted(folder.iterdir())
