"""The parameters of each attack family: one small frozen dataclass per family, shared by its real
operation (:mod:`sfumato.attacks.real`, used by ``sfumato check``) and its differentiable stand-in
(:mod:`sfumato.attacks.differentiable`, used by EOT). Plain numbers only, so a draw can be logged and
replayed: the same params give the same output. :mod:`sfumato.attacks.sampling` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RESIZE_MODES",
    "ROUNDING",
    "SUBSAMPLING",
    "BlurParams",
    "CropParams",
    "ImpressParams",
    "JpegParams",
    "MedianParams",
    "NoiseParams",
    "NoisyUpscaleParams",
    "ResizeParams",
    "TaeParams",
]

SUBSAMPLING = ("4:2:0", "4:4:4")
"""JPEG chroma subsampling: halved chroma resolution (what most websites and Pillow use) or full."""
RESIZE_MODES = ("bilinear", "bicubic")
"""Filters of the differentiable resize (the real one also has Pillow's ``lanczos`` and ``box``)."""
ROUNDING = ("ste", "cubic")
"""Differentiable rounding of the JPEG coefficients: straight-through or Shin & Song's cubic."""


@dataclass(frozen=True)
class JpegParams:
    """JPEG at ``quality`` (1-100) with ``subsampling`` chroma; ``rounding`` is the stand-in's gradient."""

    quality: int
    subsampling: str = "4:2:0"
    rounding: str = "ste"


@dataclass(frozen=True)
class ResizeParams:
    """Down by ``scale`` per side and back up with the ``mode`` filter."""

    scale: float
    mode: str = "bilinear"


@dataclass(frozen=True)
class CropParams:
    """Keep a ``fraction`` x ``fraction`` window and resize it back; ``top``/``left`` place the window
    inside the slack (0 = top/left edge, 1 = bottom/right edge; the real crop is always centred, 0.5)."""

    fraction: float
    top: float = 0.5
    left: float = 0.5


@dataclass(frozen=True)
class NoiseParams:
    """Additive Gaussian noise of standard deviation ``sigma`` drawn from ``seed``."""

    sigma: float
    seed: int


@dataclass(frozen=True)
class BlurParams:
    """Gaussian blur of standard deviation ``sigma`` pixels (Pillow's ``GaussianBlur`` radius)."""

    sigma: float


@dataclass(frozen=True)
class MedianParams:
    """``size`` x ``size`` median filter (odd, >= 3)."""

    size: int = 3


@dataclass(frozen=True)
class NoisyUpscaleParams:
    """Noise of standard deviation ``sigma`` (from ``seed``), then an upscaler; the classical stand-in
    downscales by ``factor`` per side first."""

    sigma: float
    seed: int
    factor: float = 0.5


@dataclass(frozen=True)
class TaeParams:
    """The TAE round trip has no parameters (the real one runs at its default working size, 512 px)."""


@dataclass(frozen=True)
class ImpressParams:
    """IMPRESS purification budget: Adam ``steps`` at long side ``resolution``, starting noise, seed."""

    steps: int = 200
    resolution: int = 512
    init_noise: float = 0.05
    seed: int = 0
