"""Small images for reports: float thumbnails kept in a :class:`~sfumato.verification.results.CheckReport`
(:func:`thumbnail`) and their base64 JPEG data URIs for JSON and HTML (:func:`encode_thumbnail`)."""

from __future__ import annotations

import base64
import io

import numpy as np

__all__ = ["ATTACK_THUMB_SIDE", "MAX_THUMB_SIDE", "THUMB_SIDE", "encode_thumbnail", "thumbnail"]

MAX_THUMB_SIDE = 256
"""Longest side of an embedded thumbnail."""
THUMB_SIDE = 256
"""Longest side of the protected/original/target/AI-view thumbnails a check keeps."""
ATTACK_THUMB_SIDE = 192
"""Longest side of each attacked image's thumbnails."""


def thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` (float ``HxWx3`` in [0, 1]) shrunk with Pillow Lanczos to a longest side of ``side`` (float32)."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return np.ascontiguousarray(rgb, dtype=np.float32)
    from PIL import Image

    im = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def encode_thumbnail(rgb: np.ndarray, *, max_side: int = MAX_THUMB_SIDE, quality: int = 85) -> str:
    """A ``data:image/jpeg;base64,...`` URI of ``rgb`` (float ``HxWx3`` in [0, 1]) shrunk to ``max_side``."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"encode_thumbnail expects an HxWx3 image, got shape {a.shape}")
    im = Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8))
    h, w = a.shape[:2]
    s = max_side / max(h, w)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
