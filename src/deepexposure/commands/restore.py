"""``deepexposure restore PHOTOS -o OUT``: blind restoration (e.g. text written over a photo) with the
PixelRL agents; no mask is given, the agents find the damaged pixels (docs/pixelrl.md).

Same actions and outputs as ``deepexposure denoise``. Default model: the shipped restoration model,
or the shipped denoiser if none is shipped (then expect little: it was not trained on overlays).
"""

from __future__ import annotations

from .denoise import add_restore_options, run

TASK = "restore"


def register(sub) -> None:
    p = sub.add_parser(TASK, help="blind restoration (text overlays) with PixelRL agents", description=__doc__)
    add_restore_options(p)
    p.set_defaults(func=run, task=TASK)
