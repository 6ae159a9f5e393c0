"""Decompression bombs: refused from the header, before decoding, with bounded memory."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from deepexposure import decode, io as dio


def jpeg_bomb(path, width: int = 14000, height: int = 14000):
    """A few-KB JPEG whose SOF header declares ``width x height`` (the scan data is for 64x64)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_default_limit_is_pillows():
    """Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; we refuse where Pillow does."""
    assert dio.DEFAULT_MAX_PIXELS <= 2 * Image.MAX_IMAGE_PIXELS


@pytest.mark.slow
def test_jpeg_bomb_refused_with_bounded_memory(tmp_path):
    """In a fresh process: refused from the header, and the peak RSS grows by far less than the image."""
    p = jpeg_bomb(tmp_path / "bomb.jpg")
    assert p.stat().st_size < 8000 and dio.read_image_header(p) == (14000, 14000)
    code = textwrap.dedent(f"""
        import resource, sys
        from deepexposure import io as dio
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            dio.read_image({str(p)!r})
        except dio.ImageReadError as e:
            print("refused:", e)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("grew_kib:", after - before)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert "196000000 pixels" in lines["refused"] and "decompression bomb" in lines["refused"]
    assert int(lines["grew_kib"]) < 100 * 1024  # the decoded image alone would be 588 MB


def test_memory_estimate_refuses_what_would_not_fit(tmp_path, monkeypatch):
    p = jpeg_bomb(tmp_path / "bomb.jpg", 4000, 3000)
    monkeypatch.setattr(decode, "_available_memory", lambda: 256 << 20)
    with pytest.raises(dio.ImageReadError) as e:
        dio.read_image(p, max_pixels=None)
    msg = str(e.value)
    assert "12000000 pixels" in msg and "0.9 GiB" in msg and "0.2 GiB is available" in msg and "\n" not in msg
