"""Differentiable stand-ins of the real attacks (:mod:`sfumato.attacks.real`), for expectation over
transformation (EOT, :mod:`sfumato.optimise.eot`).

Every stand-in is a pure function ``fn(x, params) -> x`` on float RGB ``Nx3xHxW`` in ``[0, 1]`` that keeps
the size; ``params`` is the family's :mod:`sfumato.attacks.params` dataclass, the same one the real
operation takes (:mod:`sfumato.attacks.table`), so the same params give the same output (replayable).

* ``jpeg`` — :func:`sfumato.attacks.diff_jpeg.diff_jpeg` (its own module: a JPEG codec from the standard);
* ``resize`` — :func:`resize_roundtrip`: down by a scale and back up (bilinear or bicubic, antialiased
  when shrinking);
* ``crop`` — :func:`random_crop`: keep a window at a position and resize it back (bilinear);
* ``noise`` — :func:`gaussian_noise`: additive Gaussian noise (seeded), clipped to [0, 1];
* ``blur`` — :func:`gaussian_blur`: separable Gaussian blur (standard deviation in pixels), edge-replicated;
* ``tae`` — :func:`tae_roundtrip`: encode→decode through an :class:`~sfumato.encoders.base.Encoder` with a
  decoder (TAEF2). Expensive.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from sfumato.attacks.params import RESIZE_MODES, BlurParams, CropParams, NoiseParams, ResizeParams, TaeParams
from sfumato.config import require

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder

__all__ = ["gaussian_blur", "gaussian_noise", "random_crop", "resize_roundtrip", "tae_roundtrip"]


def resize_roundtrip(x: torch.Tensor, params: ResizeParams) -> torch.Tensor:
    """Resize by ``scale`` per side (antialiased) and back to the original size with the same filter."""
    require(0 < params.scale <= 1, f"resize scale must be in (0, 1], got {params.scale}")
    require(params.mode in RESIZE_MODES, f"resize mode must be one of {RESIZE_MODES}, got {params.mode!r}")
    h, w = x.shape[-2:]
    small = (max(1, round(h * params.scale)), max(1, round(w * params.scale)))
    y = F.interpolate(x, size=small, mode=params.mode, align_corners=False, antialias=True)
    y = F.interpolate(y, size=(h, w), mode=params.mode, align_corners=False)
    return y.clamp(0, 1)


def random_crop(x: torch.Tensor, params: CropParams) -> torch.Tensor:
    """Keep a ``fraction`` x ``fraction`` window at relative position (``top``, ``left``), resize back."""
    require(0 < params.fraction <= 1, f"crop fraction must be in (0, 1], got {params.fraction}")
    require(0 <= params.top <= 1 and 0 <= params.left <= 1,
           f"crop position (top, left) must be in [0, 1], got ({params.top}, {params.left})")
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * params.fraction)), max(1, round(w * params.fraction))
    t, lft = round((h - ch) * params.top), round((w - cw) * params.left)
    y = x[..., t:t + ch, lft:lft + cw]
    if (ch, cw) == (h, w):
        return y
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)


def gaussian_noise(x: torch.Tensor, params: NoiseParams) -> torch.Tensor:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` drawn from ``seed`` (CPU generator, so the
    same on every device), then clip to [0, 1]."""
    require(params.sigma >= 0, f"noise sigma must be >= 0, got {params.sigma}")
    g = torch.Generator(device="cpu").manual_seed(int(params.seed))
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return (x + params.sigma * noise).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, params: BlurParams) -> torch.Tensor:
    """Separable Gaussian blur, standard deviation ``sigma`` pixels, radius ``ceil(3 sigma)``, edges
    replicated (Pillow's ``GaussianBlur(radius)`` uses the same sigma, via box passes)."""
    require(params.sigma > 0, f"blur sigma must be > 0 pixels, got {params.sigma}")
    rad = max(1, math.ceil(3 * params.sigma))
    t = torch.arange(-rad, rad + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / params.sigma) ** 2)
    k = (k / k.sum()).to(dtype=x.dtype, device=x.device)
    c = x.shape[1]
    y = F.pad(x, (rad, rad, rad, rad), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def tae_roundtrip(x: torch.Tensor, params: TaeParams, *, encoder: Encoder) -> torch.Tensor:
    """``encoder.decode(encoder.encode(x))`` cropped to ``x``'s size (the encoder pads to its stride)."""
    if encoder is None or not encoder.has_decoder:
        raise ValueError("the tae transform needs an encoder with a decoder, e.g. load_encoder('taef2')")
    h, w = x.shape[-2:]
    return encoder.decode(encoder.encode(x))[..., :h, :w].to(x.dtype)

