"""Tensor and pixel conventions shared by every stage.

Pixels are HxWx3 float32 arrays in [0, 1] (``value / (2**bits - 1)``); models see 1x3xHxW tensors.
This module converts between the two (:func:`to_nchw`/:func:`to_hwc` for the pipeline's hot paths,
:func:`to_tensor`/:func:`from_tensor` for API users: checked shapes, contiguous copies), rounds floats
to a file's integer grid (:func:`quantize`, also named :func:`round_to_bits`: exactly what a lossless
file stores), and resizes differentiably. torch is imported only when a tensor function runs, so
``import sfumato.io`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def work_size(h: int, w: int, resolution: int) -> tuple[int, int]:
    """Size at which the encoder sees an image: long side ``resolution`` (never upscaled)."""
    s = min(1.0, resolution / max(h, w))
    return max(8, round(h * s)), max(8, round(w * s))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable resize (antialiased bilinear when shrinking)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def to_nchw(rgb: np.ndarray) -> torch.Tensor:
    """``HxWx3`` array → ``1x3xHxW`` float32 tensor (a permuted view of a float32 copy when needed)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


def to_hwc(x: torch.Tensor) -> np.ndarray:
    """``1x3xHxW`` tensor → ``HxWx3`` float32 array (on the CPU)."""
    return x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``HxWx3`` float array → ``1x3xHxW`` float32 CPU tensor (a contiguous copy; the shape is checked)."""
    import torch

    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"to_tensor expects an HxWx3 array, got shape {arr.shape}")
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw).unsqueeze(0)


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """``1x3xHxW`` (or ``3xHxW``) tensor → ``HxWx3`` float32 numpy array (a copy, on the CPU)."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"from_tensor expects a single image (batch of 1), got batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"from_tensor expects a 1x3xHxW tensor, got shape {tuple(x.shape)}")
    arr = x.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(arr.transpose(1, 2, 0), dtype=np.float32)


def float_to_ints(values: np.ndarray, depth: int) -> np.ndarray:
    """Nearest grid integers (float32 arithmetic, ties to even) of values clipped to [0, 1]."""
    levels = np.float32((1 << depth) - 1)
    scaled = np.clip(np.asarray(values, dtype=np.float32), np.float32(0), np.float32(1)) * levels
    return np.rint(scaled).astype(np.uint16 if depth == 16 else np.uint8)


def ints_to_float(ints: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 ``k / (2**bits - 1)`` (one correctly rounded float32 division)."""
    return ints.astype(np.float32) / np.float32(np.iinfo(ints.dtype).max)


def quantize(rgb: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Round ``rgb`` (floats in ``[0, 1]``; values outside are clipped) to the grid ``k / (2**bits - 1)``.

    Returns float32; ``bit_depth`` is 8 or 16. The arithmetic is float32 (inputs are converted first), so
    this is exactly what :func:`sfumato.io.save_image` stores for lossless formats (for colour sources;
    greyscale sources are first projected to grey, see :func:`sfumato.io.stored_rgb`).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    return ints_to_float(float_to_ints(rgb, bit_depth))


#: The pipeline's default quantiser (8 bits unless told): the same function as :func:`quantize`.
round_to_bits = quantize


def capped_size(h: int, w: int, max_pixels: int) -> tuple[int, int]:
    """``(h, w)`` scaled down (aspect kept) to at most about ``max_pixels``; never scaled up."""
    s = min(1.0, (max_pixels / (h * w)) ** 0.5)
    return max(8, round(h * s)), max(8, round(w * s))


def fit_to(img: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop ``img`` to the aspect ratio of ``size`` (h, w) and resize it there (1x3xhxw)."""
    h, w = img.shape[:2]
    th, tw = size
    if h * tw > w * th:  # too tall
        nh = max(1, round(w * th / tw))
        top = (h - nh) // 2
        img = img[top: top + nh]
    else:
        nw = max(1, round(h * tw / th))
        left = (w - nw) // 2
        img = img[:, left: left + nw]
    return resize(to_nchw(img), size)
