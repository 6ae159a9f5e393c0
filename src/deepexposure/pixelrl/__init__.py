"""PixelRL (Furuta, Inoue, Yamasaki 2019): one agent per pixel, a fully convolutional A2C shared by
all of them, and reward map convolution.

- :mod:`.net`: the fully convolutional network of Fig. 1 (dilated trunk, convGRU policy head, value head).
- :mod:`.a2c`: pixel-wise advantage actor-critic, eqs. (8)-(18), Algorithm 1 (``t_max``, entropy term,
  the learnable 33x33 reward-map filter ``w``).
- :mod:`.actions`: the action sets of Table I (denoising and restoration, 9 filters) and Table VII
  (local colour enhancement, 13 gains).
- :mod:`.tasks`: the environments (noise models, text overlays, the project's exposure pairs) and their
  rewards, eqs. (19) and (21).
- :mod:`.model`: the model folder (``config.json`` + ``model.safetensors``) and inference with action maps.
- :mod:`.train`: the training loop behind ``deepexposure train --algo pixelrl``.
- :mod:`.method`: ``deepexposure retouch --method pixelrl`` and the ``pixelrl_actions`` recipe op.
- :mod:`.evaluate`: the denoising / restoration benchmark with its classical baselines.

See ``docs/pixelrl.md``.
"""
