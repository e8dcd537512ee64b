"""Tensor conventions shared by every stage: HxWx3 float32 arrays in [0, 1] <-> 1x3xHxW tensors, differentiable resizing, rounding to a file's bit depth and fitting to a size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def work_size(h: int, w: int, resolution: int) -> tuple[int, int]:
    """Size at which the encoder sees an image: long side ``resolution`` (never upscaled)."""
    s = min(1.0, resolution / max(h, w))
    return max(8, round(h * s)), max(8, round(w * s))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable resize (antialiased bilinear when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def to_nchw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)


def round_to_bits(rgb: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    m = float((1 << bit_depth) - 1)
    return (np.round(np.clip(rgb, 0, 1) * m) / m).astype(np.float32)


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
