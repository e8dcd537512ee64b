"""Naive Glaze toward a given target image (the same rendering Sfumato's cloak aimed at), on the tiny TAE
(the LPIPS penalty needs the real LPIPS weights: slow tier)."""

from __future__ import annotations

import numpy as np
import pytest

from sfumato.baselines.glaze import glaze_style_cloak
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import round_to_bits


def _image(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return round_to_bits(rng.uniform(0.1, 0.9, (h, w, 3)).astype(np.float32))


def test_glaze_aims_at_the_given_target_image_unchanged(models_dir) -> None:
    enc = tiny_random_tae(seed=0)
    target = np.clip(_image(7) * 0.5 + 0.3, 0, 1).astype(np.float32)  # at the working size already
    r = glaze_style_cloak(_image(0), target_image=target, encoders=[(enc, 1.0)], steps=2, resolution=64, seed=1,
                          models_dir=models_dir)
    assert r.params["target"]["option"] == "given image"
    assert r.params["target"]["size"] == [40, 56]
    np.testing.assert_array_equal(r.target_image, target)  # the very tensor, not a re-rendering
    assert r.image.shape == (40, 56, 3)


def test_glaze_target_image_is_resized_to_the_working_size(models_dir) -> None:
    enc = tiny_random_tae(seed=0)
    r = glaze_style_cloak(_image(0, 72, 96), target_image=_image(3, 36, 48), encoders=[(enc, 1.0)], steps=1,
                          resolution=64, seed=1, models_dir=models_dir)
    assert r.target_image.shape == (48, 64, 3)
    with pytest.raises(ValueError, match="target_image"):
        glaze_style_cloak(_image(0), target_image=np.zeros((4, 4), np.float32), encoders=[(enc, 1.0)], steps=1,
                          resolution=64, models_dir=models_dir)
