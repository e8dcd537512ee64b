"""Classical image-quality measures for protected-vs-original comparisons: PSNR, SSIM, L-inf and the
energy of the perturbation in flat regions.

SSIM follows Wang, Bovik, Sheikh, Simoncelli, "Image Quality Assessment: From Error Visibility to
Structural Similarity", IEEE TIP 13(4), 2004: an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, population (not sample) covariances, evaluated per RGB channel where the window fits
entirely inside the image, averaged over pixels and channels. This matches
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=...)``.

All functions take float NCHW batches (values in [0, 1] unless ``data_range`` says otherwise) and
return one value per image, shape ``[N]``. They are differentiable where the measure is (L-inf is a
max, so its gradient is sparse) and cheap enough to call under ``torch.no_grad()`` in reports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "linf", "flat_region_energy", "FLAT_STD_THRESHOLD", "SSIM_BAND_ROWS"]

_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03

FLAT_STD_THRESHOLD = 0.01
"""Default local-std threshold of :func:`flat_region_energy`: 0.01 on a [0, 1] scale, about 2.5 levels
of an 8-bit channel — flat fills of digital art sit near 0, edges, texture and photo noise above it."""


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{what}: {name} must be a batch shaped (N, C, H, W), got {got}")
        if not t.is_floating_point():
            raise ValueError(f"{what}: {name} must be a float tensor (e.g. in [0, 1]), got {t.dtype}; divide by 255")
    if x.shape != y.shape:
        raise ValueError(f"{what}: inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """Accumulate in at least float32 (half precision loses too much in variances)."""
    return torch.promote_types(x.dtype, torch.float32)


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``10 log10(data_range^2 / MSE)``; ``inf`` if identical."""
    _check_pair(x, y, "psnr")
    dt = _work_dtype(x)
    mse = (x.to(dt) - y.to(dt)).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range**2 / mse)


def linf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Largest absolute per-pixel, per-channel difference of each image (same units as the inputs)."""
    _check_pair(x, y, "linf")
    return (x - y).abs().amax(dim=(1, 2, 3))


def _gaussian_1d(size: int, sigma: float, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = (size - 1) / 2
    t = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


#: :func:`ssim` filters at most this many rows of an image at once (plus the window's 10 rows of overlap),
#: so its memory stays bounded (about 0.3 GB per 1000-pixel-wide band of RGB) on any image size.
SSIM_BAND_ROWS = 512


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, band_rows: int = SSIM_BAND_ROWS) -> torch.Tensor:
    """Mean structural similarity per image (Wang et al. 2004), averaged over channels; 1 if identical.

    Both sides must be at least 11 pixels (the window); border pixels whose window would leave the
    image are excluded, as in scikit-image. Tall images are filtered in bands of ``band_rows`` output
    rows (each band reads the 10 rows of window it needs from the next), which gives the same mean.
    """
    _check_pair(x, y, "ssim")
    n, c, h, w = x.shape
    if min(h, w) < _SSIM_WIN:
        raise ValueError(f"ssim needs images at least {_SSIM_WIN}x{_SSIM_WIN} pixels, got {h}x{w}")
    dt = _work_dtype(x)
    g = _gaussian_1d(_SSIM_WIN, _SSIM_SIGMA, dtype=dt, device=x.device)
    rows = h - _SSIM_WIN + 1  # output rows of the 'valid' filter
    band = max(1, int(band_rows))
    total = torch.zeros(n, dtype=dt, device=x.device)
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        xs = x[..., r0:r1 + _SSIM_WIN - 1, :].to(dt)
        ys = y[..., r0:r1 + _SSIM_WIN - 1, :].to(dt)
        total = total + _ssim_map(xs, ys, g, c, data_range).sum(dim=(1, 2, 3))
    return total / (c * rows * (w - _SSIM_WIN + 1))


def _ssim_map(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, c: int, data_range: float) -> torch.Tensor:
    """SSIM at every position where the window fits inside ``x`` / ``y``."""
    # Filter the five moments of every channel at once with a separable depthwise 'valid' convolution.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [N, 5C, H, W]
    k = 5 * c
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, _SSIM_WIN), groups=k)
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(k, 1, _SSIM_WIN, 1), groups=k)
    mx, my, mxx, myy, mxy = stack.split(c, dim=1)
    vx = mxx - mx * mx
    vy = myy - my * my
    vxy = mxy - mx * my
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _local_std(x: torch.Tensor, window: int) -> torch.Tensor:
    """Per-channel standard deviation over a ``window`` x ``window`` box (reflect-padded), same size."""
    p = window // 2
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    m = F.avg_pool2d(xp, window, stride=1)
    m2 = F.avg_pool2d(xp * xp, window, stride=1)
    return (m2 - m * m).clamp_min(0).sqrt()


def flat_region_energy(original: torch.Tensor, protected: torch.Tensor, *, window: int = 7,
                       threshold: float = FLAT_STD_THRESHOLD) -> torch.Tensor:
    """RMS of the perturbation ``protected - original`` over the flat regions of ``original``, per image.

    A pixel is *flat* when the local standard deviation of the original, over a ``window`` x ``window``
    box, is below ``threshold`` in every channel (default :data:`FLAT_STD_THRESHOLD` = 0.01 on a [0, 1]
    scale). Noise there is not masked by texture, so this measures how visible a perturbation is on
    flat-colour art: for i.i.d. noise of standard deviation s on a flat image it is about s. The RMS
    runs over the channels of the flat pixels. Images with no flat pixel give 0. Differentiable with
    respect to ``protected`` (the flat mask depends only on ``original``).
    """
    _check_pair(original, protected, "flat_region_energy")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"flat_region_energy: window must be an odd size >= 3, got {window}")
    if not threshold > 0:
        raise ValueError(f"flat_region_energy: threshold must be a positive local std, got {threshold}")
    h, w = original.shape[-2:]
    if min(h, w) <= window // 2:
        raise ValueError(f"flat_region_energy: images of {h}x{w} are too small for window {window}")
    dt = _work_dtype(original)
    orig = original.detach().to(dt)
    with torch.no_grad():
        flat = (_local_std(orig, window).amax(dim=1, keepdim=True) < threshold).to(dt)  # [N, 1, H, W]
    d2 = (protected.to(dt) - orig).square() * flat
    count = flat.sum(dim=(1, 2, 3)) * original.shape[1]
    ms = d2.sum(dim=(1, 2, 3)) / count.clamp_min(1)
    # Clamp before the root so a zero perturbation has a zero (not NaN) gradient when used as a loss.
    return ms.clamp_min(torch.finfo(dt).tiny).sqrt() * (ms > 0)
