"""Seeded fuzz test: a few hundred corrupt or unusual files made from valid seeds (truncation, bit
flips, header edits) go through ``deepexposure retouch`` in one subprocess.

Asserts: no traceback, no hang (a subprocess timeout), every failure is one ``error: <path>: ...``
line, the inputs are byte-identical afterwards, and no partial outputs (every image has its recipe and
the other way round; no temp files).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, TiffImagePlugin

from deepexposure.io import is_temp_name

SEED = 20261203
N_PER_SEED = 40


def _seeds(rng: np.random.Generator) -> dict[str, bytes]:
    """Valid small files of every supported kind."""
    h, w = 40, 48
    rgb8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    out: dict[str, bytes] = {}

    def pil(fmt: str, arr, **kw) -> bytes:
        b = io.BytesIO()
        Image.fromarray(arr).save(b, fmt, **kw)
        return b.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[271] = "FuzzCam"
    out["jpg"] = pil("JPEG", rgb8, quality=80, exif=exif.tobytes())
    out["png"] = pil("PNG", rgb8, exif=exif.tobytes())
    out["rgba.png"] = pil("PNG", np.dstack([rgb8, rgb8[..., :1]]))
    out["webp"] = pil("WEBP", rgb8, quality=80, exif=exif.tobytes())
    out["16.png"] = imagecodecs.png_encode(rgb16)
    b = io.BytesIO()
    tifffile.imwrite(b, rgb16, photometric="rgb", compression="zlib")
    out["16.tif"] = b.getvalue()
    out["8.tif"] = pil("TIFF", rgb8)
    info = TiffImagePlugin.ImageFileDirectory_v2()  # camera EXIF in sub-IFDs, as TIFF-based RAWs hold it
    info[271] = "FuzzCam"
    info[0x8769] = {0x829A: TiffImagePlugin.IFDRational(1, 250), 0x8827: 400, 0xA434: "Fuzz 50mm", 0x927C: b"MN" * 40}
    info[0x8825] = {1: "N", 2: (TiffImagePlugin.IFDRational(52), TiffImagePlugin.IFDRational(30), TiffImagePlugin.IFDRational(0))}
    info.tagtype[0x8769] = info.tagtype[0x8825] = 4
    out["exif.tif"] = pil("TIFF", rgb8, tiffinfo=info)
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 5)
    if kind == 0:  # truncation
        return bytes(b[: int(rng.integers(1, len(b)))])
    if kind == 1:  # a few bit flips anywhere
        for _ in range(int(rng.integers(1, 8))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 2:  # bit flips in the header, where sizes, offsets and counts live
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, min(len(b), 64)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 3:  # a header field overwritten with an extreme value
        i = int(rng.integers(8, min(len(b), 48)))
        b[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01"])
        return bytes(b)
    cut = int(rng.integers(0, len(b)))  # a block repeated / spliced
    return bytes(b[:cut] + b[cut // 2:])


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_fuzz_retouch(tmp_path):
    rng = np.random.default_rng(SEED)
    src = tmp_path / "fuzz"
    src.mkdir()
    for name, data in _seeds(rng).items():
        (src / f"seed.{name}").write_bytes(data)
        for i in range(N_PER_SEED):
            (src / f"m{i:02d}.{name}").write_bytes(_mutate(data, rng))
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.png").write_bytes(b"hello, not a picture\n")
    (src / "garbage.dng").write_bytes(bytes(rng.integers(0, 256, 4096, dtype=np.uint8)))
    n_files = len(list(src.iterdir()))
    assert n_files >= 200
    before = _digest(src)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "deepexposure", "retouch", str(src), "-o", str(out), "--method", "identity", "--quiet"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("retouch hung on the fuzz corpus (no result in 240 s)")
    assert res.returncode in (0, 1), res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr[-4000:]
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert all(line.startswith(f"error: {src}/") for line in errors), [e for e in errors if not e.startswith("error:")][:5]
    assert _digest(src) == before, "an input file changed"
    outs = sorted(p.name for p in out.iterdir())
    assert not [n for n in outs if is_temp_name(n) or n.startswith(".")], "temp files left"
    images = {n for n in outs if not n.endswith(".recipe.json")}
    recipes = {n[: -len(".recipe.json")] for n in outs if n.endswith(".recipe.json")}
    assert images == recipes, "an image without its recipe or a recipe without its image"
    assert len(images) + len(errors) == n_files
    assert {f"seed.{k}" for k in ("jpg", "png", "webp", "exif.tif")} <= images  # the valid seeds do get through
