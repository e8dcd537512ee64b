"""Shared plumbing of the real attacks: input checking, 8-bit quantisation and the encoder's *work view*.

Every real attack takes a float32 ``HxWx3`` array in ``[0, 1]`` (:func:`check_rgb`) and returns one of the
same size quantised to 8 bits (:func:`quantise`), like the file an attacker would save. Attacks that run
an autoencoder work at its working size (long side ``resolution``, :func:`work_view`) and bring their
*change* back to full resolution (:func:`apply_work_delta`), keeping the image's full-resolution detail.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["apply_work_delta", "check_rgb", "from_uint8", "quantise", "to_uint8", "work_view"]


def check_rgb(rgb: Any, where: str) -> np.ndarray:
    """``rgb`` as float32 ``HxWx3`` in [0, 1] (at least 8x8), or a ValueError naming ``where``."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{where}: expected an HxWx3 RGB array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{where}: pixels must be floats in [0, 1], got dtype {a.dtype}; divide uint8 data by 255")
    if min(a.shape[:2]) < 8:
        raise ValueError(f"{where}: image of {a.shape[1]}x{a.shape[0]} is too small; attacks need at least 8x8")
    lo, hi = float(a.min()), float(a.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{where}: float pixels must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return np.clip(a, 0.0, 1.0).astype(np.float32, copy=False)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] → uint8, rounded to nearest."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def from_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 → float32 [0, 1]."""
    return np.asarray(a, dtype=np.float32) / 255.0


def quantise(rgb: np.ndarray) -> np.ndarray:
    """Round a float image to the nearest 8-bit level (still float32 in [0, 1])."""
    return from_uint8(to_uint8(rgb))


def work_view(x_full: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """``x_full`` (NCHW) resized to the working size of long side ``resolution`` (unchanged for ``None``)."""
    from sfumato.io.tensors import resize, work_size

    h, w = x_full.shape[-2:]
    if resolution is None:
        return x_full
    return resize(x_full, work_size(h, w, resolution))


def apply_work_delta(x: np.ndarray, x_work: torch.Tensor, y_work: torch.Tensor) -> np.ndarray:
    """Full-resolution result: ``y_work`` itself when no downscale happened, else ``x`` plus the change
    ``y_work - x_work`` upsampled (bilinear) to full size; quantised to 8 bits."""
    from sfumato.io.tensors import resize, to_hwc

    h, w = x.shape[:2]
    if tuple(y_work.shape[-2:]) == (h, w):
        return quantise(to_hwc(y_work))
    delta = to_hwc(resize((y_work - x_work).float().cpu(), (h, w)))
    return quantise(x + delta)
