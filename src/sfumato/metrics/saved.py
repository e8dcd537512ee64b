"""The quality report of a protected image against its original (LPIPS, PSNR, SSIM, L-inf), used by manifests,
check and benchmarks. Every figure is computed in bounded memory at any image size: LPIPS tile by tile
(:meth:`sfumato.metrics.lpips.LPIPS.measure`, exact), SSIM in bands of rows, PSNR and L∞ in float64 sums."""

from __future__ import annotations

import numpy as np
import torch

from sfumato.io.tensors import to_nchw


def protected_quality(protected: np.ndarray, original: np.ndarray, *, lpips_net: str = "alex",
                      models_dir=None, device: torch.device | str | None = None) -> dict[str, float]:  # noqa: ANN001
    """LPIPS, PSNR, SSIM and L∞ of a protected image against its original (HxWx3 float arrays), computed
    on ``device`` (default: the CPU, where the arrays are)."""
    from sfumato.metrics.lpips import load_lpips, measure_lpips
    from sfumato.metrics.quality import linf, psnr, ssim

    a, b = to_nchw(protected).to(device or "cpu"), to_nchw(original).to(device or "cpu")
    with torch.no_grad():
        return {
            f"lpips_{lpips_net}": float(measure_lpips(load_lpips(lpips_net, models_dir=models_dir), a, b)[0]),
            "psnr": float(psnr(a, b)[0]),
            "ssim": float(ssim(a, b)[0]),
            "linf": float(linf(a, b)[0]),
        }
