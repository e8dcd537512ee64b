"""Adaptive perceptual masking (sfumato.masking): the budget map and the visible-noise report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfumato.optimise.budgets import LinfBudget
from sfumato.optimise.masking import MaskConfig, budget_map, texture_density, visible_noise_metric


def _half_textured(h: int = 64, w: int = 96, seed: int = 0) -> torch.Tensor:
    """Left half a flat fill, right half random texture."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(1, 3, h, w)
    x[..., : w // 2] = torch.tensor([0.8, 0.4, 0.3]).view(1, 3, 1, 1)
    x[..., w // 2:] = 0.5 + 0.25 * (torch.rand(1, 3, h, w - w // 2, generator=g) * 2 - 1)
    return x


def test_flat_image_gets_the_floor() -> None:
    cfg = MaskConfig(floor=0.2)
    m = budget_map(torch.full((1, 3, 40, 50), 0.37), cfg)
    assert m.shape == (1, 1, 40, 50)
    assert torch.allclose(m, torch.full_like(m, 0.2), atol=1e-6)


def test_smooth_gradients_stay_near_the_floor() -> None:
    """Linear ramps (even steep ones, 2 levels per pixel) and a radial vignette, saved in 8 bits."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    ramp = torch.stack([xx, 0.3 + 0.5 * yy, 1 - xx])[None]
    vignette = (0.9 - 0.6 * ((xx - 0.5).square() + (yy - 0.4).square())).expand(1, 3, 96, 128)
    for x in (ramp, vignette):
        x8 = torch.round(x.clamp(0, 1) * 255) / 255
        m = budget_map(x8, MaskConfig())
        assert float(m.max()) < 0.15 + 0.05


def test_half_flat_half_textured() -> None:
    cfg = MaskConfig()
    x = _half_textured()
    m = budget_map(x, cfg)[0, 0]
    w = x.shape[-1]
    assert float(m[:, : w // 2 - 12].max()) < cfg.floor + 0.02  # flat, away from the boundary
    assert float(m[:, w // 2 + 12:].min()) > 0.9  # texture, away from the boundary
    assert float(m[:, w // 2:].mean()) > 3 * float(m[:, : w // 2].mean())
    # Smooth: no hard edge at the boundary (the map is blurred): the rise from floor to texture spreads
    # over several pixels, no single step above a third of the range (a hard edge would be 1 - floor).
    step = (m[:, 1:] - m[:, :-1]).abs().max()
    assert float(step) < (1 - cfg.floor) / 3
    # ... and it rises within a few pixels of the boundary, not ~10 px into the flat fill (issue 20).
    assert float(m[:, : w // 2 - 6].max()) < cfg.floor + 0.05


def test_range_shape_dtype_batch_and_determinism() -> None:
    x = torch.cat([_half_textured(seed=1), torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))])
    for cfg in (MaskConfig(), MaskConfig(floor=0.3, window=5, gamma=4.0, smooth=0.0)):
        m = budget_map(x, cfg)
        assert m.shape == (2, 1, 64, 96) and m.dtype == torch.float32
        assert float(m.min()) >= cfg.floor - 1e-6 and float(m.max()) <= 1.0
        assert torch.equal(m, budget_map(x, cfg))
    assert budget_map(x.double()).dtype == torch.float64
    xg = x.clone().requires_grad_(True)
    assert not budget_map(xg).requires_grad


def test_edges_of_line_art_count_less_than_texture() -> None:
    """A single sharp edge between two fills has a lower texture density than texture everywhere."""
    x = torch.full((1, 3, 48, 48), 0.9)
    x[..., 24:] = 0.1
    edge = texture_density(x).max()
    tex = texture_density(_half_textured(48, 96))[..., 60:].min()
    assert float(edge) < 0.4 * float(tex)


def test_map_in_linf_budget_caps_each_pixel() -> None:
    x0 = _half_textured()
    m = budget_map(x0)
    budget = LinfBudget(eps=8 / 255, eps_map=m)
    delta = torch.full_like(x0, 0.1)
    p = budget.project(delta, x0)
    assert torch.allclose(p, (8 / 255 * m).expand_as(p), atol=1e-6)
    # a map at another resolution is resized to δ's
    small = budget.project(torch.full((1, 3, 32, 48), 0.1), torch.full((1, 3, 32, 48), 0.5))
    assert float(small.max()) <= 8 / 255 + 1e-6 and float(small[..., :10].max()) < 0.3 * 8 / 255


def test_config_round_trip_and_validation() -> None:
    cfg = MaskConfig(window=7, floor=0.25, gamma=3.0)
    assert MaskConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="window"):
        MaskConfig(window=4)
    with pytest.raises(ValueError, match="floor"):
        MaskConfig(floor=0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        budget_map(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="255"):
        budget_map(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_visible_noise_metric_masked_noise_is_less_visible_on_flat_art(corpus_dir) -> None:  # noqa: ANN001
    from PIL import Image

    with Image.open(corpus_dir / "illustration/flat_vector/gopher_egon_ballet.png") as im:
        im = im.convert("RGB").resize((233, 256), Image.Resampling.LANCZOS)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    m = budget_map(x)
    assert float(m.mean()) < 0.5  # mostly flat colour
    r0 = visible_noise_metric(x, x)
    assert set(r0) == {"flat_region_energy", "lpips", "psnr", "linf"}
    assert r0["flat_region_energy"] == 0 and r0["linf"] == 0 and r0["lpips"] < 1e-6
    g = torch.Generator().manual_seed(0)
    n = (torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1) * (8 / 255)
    masked = m * n * (n.norm() / (m * n).norm())  # same L2 energy as the plain noise
    plain = visible_noise_metric(x, (x + n).clamp(0, 1))
    mask = visible_noise_metric(x, (x + masked).clamp(0, 1))
    assert mask["flat_region_energy"] < 0.6 * plain["flat_region_energy"]
    assert mask["lpips"] < plain["lpips"]
