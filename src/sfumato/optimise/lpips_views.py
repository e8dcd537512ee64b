"""How the LPIPS budget sees the image during optimisation: the full-size view a person sees, region tiling for large views, and the saved-file check (8-bit rounding at full size)."""

from __future__ import annotations

import numpy as np
import torch

from sfumato.io.tensors import capped_size, resize, to_nchw

#: LPIPS during optimisation is computed on the image as a person sees it — the full-size file, at its
#: own resolution and sampling grid — downscaled only beyond this many pixels.
LPIPS_VIEW_MAX_PIXELS = 16_000_000


#: Views larger than this are measured one region per step, round-robin (see :func:`lpips_regions`).
LPIPS_REGION_PIXELS = 1_200_000


def seen_view(rgb: np.ndarray, x0: torch.Tensor):  # noqa: ANN201
    """Map an image at the work resolution (``x0 + δ``) to the full image a person sees, ``x_full + up(δ)``
    (at most :data:`LPIPS_VIEW_MAX_PIXELS`); ``None`` when the two coincide."""
    size = capped_size(*rgb.shape[:2], LPIPS_VIEW_MAX_PIXELS)
    if size == tuple(x0.shape[-2:]):
        return None
    xb0 = resize(to_nchw(rgb), size).to(x0).contiguous(memory_format=torch.channels_last)
    x0 = x0.detach()

    def view(x: torch.Tensor) -> torch.Tensor:
        return xb0 + resize(x - x0, size)

    return view


def lpips_regions(h: int, w: int, max_pixels: int = LPIPS_REGION_PIXELS) -> list[tuple[int, int, int, int]] | None:
    """Tiles ``(top, left, height, width)`` of at most about ``max_pixels`` that cover an ``h``×``w`` view,
    with corners on multiples of 16 so each tile keeps the whole image's AlexNet sampling grid; ``None``
    when the view is small enough to measure whole."""
    h, w = capped_size(h, w, LPIPS_VIEW_MAX_PIXELS)
    if h * w <= max_pixels:
        return None
    side = max_pixels ** 0.5
    rows, cols = max(1, -(-h // int(side))), max(1, -(-w // int(side)))
    th, tw = -(-h // rows), -(-w // cols)
    th, tw = -(-th // 16) * 16, -(-tw // 16) * 16
    return [(r * th, c * tw, min(th, h - r * th), min(tw, w - c * tw))
            for r in range(rows) for c in range(cols) if h - r * th >= 32 and w - c * tw >= 32]


#: The saved-file LPIPS check during optimisation runs on at most this many pixels (a forward pass only).
LPIPS_CHECK_MAX_PIXELS = 8_000_000


def saved_file_lpips(rgb: np.ndarray, x0: torch.Tensor, net: str, models_dir=None):  # noqa: ANN001, ANN201
    """LPIPS of ``x0 + δ`` (work resolution) as the saved file will measure it: δ upsampled to the full
    image, rounded to 8 bits, compared with the original at full size (above
    :data:`LPIPS_CHECK_MAX_PIXELS`, both are downscaled to that many pixels)."""
    from sfumato.metrics.lpips import load_lpips, measure_lpips

    size = capped_size(*rgb.shape[:2], LPIPS_CHECK_MAX_PIXELS)
    full = resize(to_nchw(rgb), size).to(x0)
    lp = load_lpips(net, models_dir=models_dir).to(device=x0.device, dtype=x0.dtype)
    x0 = x0.detach()

    def check(x: torch.Tensor) -> float:
        with torch.no_grad():
            y = torch.round((full + resize(x - x0, size)).clamp(0, 1) * 255) / 255
            return float(measure_lpips(lp, y, full).max())  # tiled: bounded memory

    return check
