"""Real image operations that a scraper or a mimic applies to protected images, used to *evaluate* protections.

These are the actual operations (Pillow, numpy, a real autoencoder), not differentiable stand-ins: what
survives them is what survives in the wild. Every attack is a pure function
``fn(rgb, **params) -> rgb`` on float32 ``HxWx3`` arrays in ``[0, 1]`` that returns an array of the same
size, **quantised to 8 bits** like the file an attacker would save or feed to a trainer. Randomness
comes only from an explicit ``seed``.

The operations (names as in :data:`sfumato.attacks.registry.ATTACKS`):

* ``jpeg-q{95,85,75,60}-{420,444}`` — Pillow (libjpeg) JPEG at that quality, with 4:2:0 (halved chroma
  resolution, what most websites and Pillow's default use) or 4:4:4 chroma;
* ``resize-x{0.5,0.75}-{bicubic,lanczos}`` — Pillow resize down by that factor per side and back up to
  the original size with the same filter (Pillow's filters widen their support when shrinking, i.e.
  they antialias);
* ``crop-90`` — the central 90 % of each side, resized back to the original size with Pillow Lanczos (a
  geometric change: measurements compare it with references cropped the same way,
  :func:`sfumato.attacks.registry.align_reference`);
* ``noise-{0.02,0.05}`` — additive i.i.d. Gaussian noise of that standard deviation (seeded), clipped;
* ``blur-r{1,2}`` — Pillow ``GaussianBlur(radius)``; Pillow's radius is the standard deviation in pixels
  (Pillow approximates the Gaussian with three box-blur passes);
* ``median-3`` — Pillow ``MedianFilter(3)``, per channel;
* ``noisy-upscale`` — *noisy upscaling* of Hönig, Rando, Carlini and Tramèr, "Adversarial Perturbations
  Cannot Reliably Protect Artists From Generative AI" (ICLR 2025): Gaussian noise of standard deviation 0.1
  (as in the authors' release), then an upscaler. The paper's upscaler is the Stable Diffusion x4 upscaler,
  run on the noisy full-size (512 px) image; pass any such model as ``upscaler`` (a callable, e.g. a
  diffusers pipeline wrapped to take and return float arrays) and its output is resized back to the original
  size with Pillow Lanczos. Without one, a *classical stand-in* is used and named as such: a Pillow
  box-filter downscale by ``factor`` per side (``0.5``: each output pixel averages 4 noisy pixels, halving
  the noise) and a Pillow Lanczos upscale back. The stand-in is far weaker than a diffusion upscaler.
* ``tae-roundtrip`` — encode and decode through an autoencoder (TAEF2 by default), see
  :func:`tae_roundtrip`;
* ``impress-fast`` / ``impress`` / ``impress-paper`` — IMPRESS purification
  (:mod:`sfumato.attacks.impress`) with 20 steps at 256 px, 200 steps at 512 px and the paper's 3000
  steps at 512 px. ``impress-fast`` starts from the protected image itself: the paper's starting noise
  (standard deviation 0.05 here) first raises the autoencoder inconsistency, and a short budget spends
  its steps removing it again (measured on a 64 px painting with a crude perturbation: with the noise,
  8 steps end above the protected image's consistency loss and 15 just below it; without it, 8 steps
  reach the clean image's level).

The named attacks, the suites and ``apply_attack`` are in :mod:`sfumato.attacks.registry`; the
attack families (real operation, differentiable stand-in, parameter sampler) in
:mod:`sfumato.attacks.table`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from sfumato.attacks.params import SUBSAMPLING
from sfumato.attacks.views import apply_work_delta, check_rgb, from_uint8, quantise, to_uint8, work_view

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder

__all__ = [
    "RESAMPLING",
    "Upscaler",
    "center_crop",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "median_filter",
    "noisy_upscale",
    "resize_roundtrip",
    "tae_roundtrip",
]

RESAMPLING = ("bicubic", "lanczos", "bilinear", "box")
"""Pillow filters the real resizes accept."""


def _pil(rgb: np.ndarray):  # noqa: ANN202
    from PIL import Image

    return Image.fromarray(to_uint8(rgb))


def _filter(method: str):  # noqa: ANN202
    from PIL import Image

    if method not in RESAMPLING:
        raise ValueError(f"unknown resampling filter {method!r}; choose one of {RESAMPLING}")
    return {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
            "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}[method]


def _resize_pil(rgb: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Pillow resize of an 8-bit RGB rendering of ``rgb`` to ``size = (width, height)``."""
    return from_uint8(np.asarray(_pil(rgb).resize(size, _filter(method))))


# ------------------------------------------------------------------------------------------- operations
def jpeg(rgb: np.ndarray, *, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """Pillow/libjpeg JPEG encode and decode at ``quality`` (1-100) with ``"4:2:0"`` or ``"4:4:4"`` chroma."""
    x = check_rgb(rgb, "jpeg")
    if not (isinstance(quality, (int, np.integer)) and 1 <= int(quality) <= 100):
        raise ValueError(f"jpeg: quality must be an integer in 1..100, got {quality!r}")
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"jpeg: subsampling must be one of {SUBSAMPLING}, got {subsampling!r}")
    from PIL import Image

    buf = io.BytesIO()
    _pil(x).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as im:
        return from_uint8(np.asarray(im.convert("RGB")))


def resize_roundtrip(rgb: np.ndarray, *, scale: float, method: str = "lanczos") -> np.ndarray:
    """Pillow resize by ``scale`` per side (0 < scale < 1) and back to the original size, same filter."""
    x = check_rgb(rgb, "resize_roundtrip")
    if not 0 < scale < 1:
        raise ValueError(f"resize_roundtrip: scale must be in (0, 1) (a downscale), got {scale}")
    h, w = x.shape[:2]
    small = _resize_pil(x, (max(1, round(w * scale)), max(1, round(h * scale))), method)
    return _resize_pil(small, (w, h), method)


def center_crop(rgb: np.ndarray, *, fraction: float = 0.9, method: str = "lanczos") -> np.ndarray:
    """Keep the central ``fraction`` of each side and resize it back to the original size (Pillow)."""
    x = check_rgb(rgb, "center_crop")
    if not 0 < fraction <= 1:
        raise ValueError(f"center_crop: fraction must be in (0, 1], got {fraction}")
    h, w = x.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize_pil(x[top:top + ch, left:left + cw], (w, h), method)


def gaussian_noise(rgb: np.ndarray, *, sigma: float, seed: int) -> np.ndarray:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` (``np.random.default_rng(seed)``), clip."""
    x = check_rgb(rgb, "gaussian_noise")
    if not sigma >= 0:
        raise ValueError(f"gaussian_noise: sigma must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
    return quantise(noisy)


def gaussian_blur(rgb: np.ndarray, *, radius: float) -> np.ndarray:
    """Pillow ``ImageFilter.GaussianBlur(radius)`` (``radius`` is the standard deviation in pixels)."""
    x = check_rgb(rgb, "gaussian_blur")
    if not radius > 0:
        raise ValueError(f"gaussian_blur: radius must be > 0 pixels, got {radius}")
    from PIL import ImageFilter

    return from_uint8(np.asarray(_pil(x).filter(ImageFilter.GaussianBlur(radius))))


def median_filter(rgb: np.ndarray, *, size: int = 3) -> np.ndarray:
    """Pillow ``ImageFilter.MedianFilter(size)`` applied to each channel (``size`` odd, >= 3)."""
    x = check_rgb(rgb, "median_filter")
    if not (isinstance(size, (int, np.integer)) and size >= 3 and size % 2 == 1):
        raise ValueError(f"median_filter: size must be an odd integer >= 3, got {size!r}")
    from PIL import ImageFilter

    return from_uint8(np.asarray(_pil(x).filter(ImageFilter.MedianFilter(int(size)))))


Upscaler = Callable[[np.ndarray], np.ndarray]


def noisy_upscale(rgb: np.ndarray, *, sigma: float = 0.1, seed: int, factor: float = 0.5,
                  upscaler: Upscaler | None = None) -> np.ndarray:
    """Noisy upscaling (Hönig et al., ICLR 2025): Gaussian noise (``sigma``, seeded, clipped, 8-bit), then
    an upscaler, then back to the original size with Pillow Lanczos.

    ``upscaler`` takes the noisy float32 ``HxWx3`` image in [0, 1] and returns a float image in [0, 1]
    (typically 4x larger, as the Stable Diffusion x4 upscaler the paper uses). Without it, the classical
    stand-in runs: Pillow box downscale by ``factor`` per side, then Pillow Lanczos upscale back.
    """
    x = check_rgb(rgb, "noisy_upscale")
    if not 0 < factor < 1:
        raise ValueError(f"noisy_upscale: factor must be in (0, 1) (the stand-in's downscale), got {factor}")
    h, w = x.shape[:2]
    noisy = gaussian_noise(x, sigma=sigma, seed=seed)
    if upscaler is not None:
        up = np.asarray(upscaler(noisy))
        if up.ndim != 3 or up.shape[2] != 3 or not np.issubdtype(up.dtype, np.floating):
            raise ValueError(f"noisy_upscale: the upscaler must return a float HxWx3 image in [0, 1], got "
                             f"{up.dtype} {up.shape}")
        return _resize_pil(np.clip(up, 0, 1), (w, h), "lanczos")
    small = _resize_pil(noisy, (max(1, round(w * factor)), max(1, round(h * factor))), "box")
    return _resize_pil(small, (w, h), "lanczos")


def tae_roundtrip(rgb: np.ndarray, *, autoencoder: Encoder, resolution: int | None = 512) -> np.ndarray:
    """Encode→decode through ``autoencoder`` (TAEF2 in the registry).

    Images whose long side is at most ``resolution`` go through at full size. Larger ones go through at
    the encoder's working size (long side ``resolution``, the size the protection targets and a trainer
    resizes to), and the round trip's *change* is upsampled (bilinear) and added to the full-size image,
    so the full-resolution detail is kept. ``resolution=None`` runs the full image (memory grows with it).
    """
    x = check_rgb(rgb, "tae_roundtrip")
    if not getattr(autoencoder, "has_decoder", False):
        raise ValueError(f"tae_roundtrip: encoder {getattr(autoencoder, 'id', '?')!r} has no decoder; use taef2")
    import torch

    from sfumato.io.tensors import to_nchw

    dev = next(autoencoder.parameters()).device
    xf = to_nchw(x).to(dev)
    xw = work_view(xf, resolution)
    with torch.no_grad():
        yw = autoencoder.decode(autoencoder.encode(xw))[..., : xw.shape[-2], : xw.shape[-1]].float()
    return apply_work_delta(x, xw.cpu(), yw.cpu())

