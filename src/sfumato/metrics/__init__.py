"""Image metrics: LPIPS perceptual distance and classical quality measures (PSNR, SSIM, L-inf,
flat-region perturbation energy).

Names load lazily on first use, so ``import sfumato.metrics`` stays cheap until a metric is needed::

    from sfumato.metrics import load_lpips, psnr, ssim
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "LPIPS": "lpips",
    "LPIPSReference": "lpips",
    "load_lpips": "lpips",
    "psnr": "quality",
    "ssim": "quality",
    "linf": "quality",
    "flat_region_energy": "quality",
    "FLAT_STD_THRESHOLD": "quality",
}

__all__ = [
    "FLAT_STD_THRESHOLD", "LPIPS", "LPIPSReference", "flat_region_energy", "linf", "load_lpips", "psnr", "ssim",
]

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.metrics.lpips import LPIPS, LPIPSReference, load_lpips
    from sfumato.metrics.quality import FLAT_STD_THRESHOLD, flat_region_energy, linf, psnr, ssim


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
