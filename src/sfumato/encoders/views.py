"""The AI view: an image as a model's autoencoder reproduces it (encode then decode at a trainer's resolution)."""

from __future__ import annotations

import numpy as np
import torch

from sfumato.encoders.base import Encoder
from sfumato.io.tensors import resize, to_hwc, to_nchw, work_size


def ai_view(rgb: np.ndarray, encoder: Encoder, *, resolution: int = 512) -> np.ndarray:
    """What ``encoder``'s latent of an image looks like, decoded (requires a decoder); computed on the
    encoder's device (the array is copied there), returned on the CPU."""
    p = next(encoder.parameters(), None)
    x = resize(to_nchw(rgb).to("cpu" if p is None else p.device), work_size(*rgb.shape[:2], resolution))
    with torch.no_grad():
        y = encoder.decode(encoder.encode(x))[..., : x.shape[-2], : x.shape[-1]]
    return to_hwc(y)
