"""The cloak's target rendering: Gatys style transfer, Gram style distance, candidate order and vetting,
latent overshoot. Real LPIPS SqueezeNet weights (``SFUMATO_MODELS_DIR``), tiny random TAE for mechanics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from sfumato.config import CloakConfig
from sfumato.encoders.tae import tiny_random_tae
from sfumato.optimise.objectives import LatentTargetObjective
from sfumato.targets import gatys as neural_style
from sfumato.targets import styles as styles
from sfumato.targets.style_target import ranked_styles, render_target


def _img(seed: int, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g)


def test_activations_are_the_unnormalised_lpips_features(models_dir) -> None:  # noqa: ANN001
    from sfumato.metrics.lpips import _unit_normalise, load_lpips

    lp = load_lpips("squeeze", models_dir=models_dir)
    x = _img(0)
    raw = lp.activations(x)
    normed = lp._features(x, True)
    assert len(raw) == len(lp.taps) == len(normed)
    for a, b in zip(raw, normed, strict=True):
        torch.testing.assert_close(_unit_normalise(a), b)


def test_gram_is_symmetric_and_distance_is_zero_for_the_same_image(models_dir) -> None:  # noqa: ANN001
    f = torch.randn(1, 8, 5, 7)
    g = neural_style.gram(f)
    assert g.shape == (8, 8)
    torch.testing.assert_close(g, g.T)
    sig = neural_style.gram_signature([_img(1)], models_dir=models_dir)
    assert len(sig) == len(neural_style.STYLE_TAPS)
    assert neural_style.gram_distance(sig, sig) == pytest.approx(0.0, abs=1e-6)
    other = neural_style.gram_signature([_img(2) * 0.3], models_dir=models_dir)
    assert neural_style.gram_distance(sig, other) > 0.05


def test_gatys_transfer_moves_the_style_toward_the_exemplar_deterministically(models_dir) -> None:  # noqa: ANN001
    x = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()  # a smooth gradient
    ex = [torch.from_numpy(styles.builtin_style("pointillism").exemplars[0][:96, :96]).permute(2, 0, 1)[None]]
    y1 = neural_style.gatys_transfer(x, ex, steps=25, models_dir=models_dir)
    y2 = neural_style.gatys_transfer(x, ex, steps=25, models_dir=models_dir)
    assert y1.shape == x.shape and float(y1.min()) >= 0 and float(y1.max()) <= 1
    torch.testing.assert_close(y1, y2)
    s = neural_style.gram_signature(ex, models_dir=models_dir)
    before = neural_style.gram_distance(neural_style.gram_signature([x], models_dir=models_dir), s)
    after = neural_style.gram_distance(neural_style.gram_signature([y1], models_dir=models_dir), s)
    assert after < 0.8 * before


def test_gatys_coarse_to_fine_keeps_size_range_and_determinism_and_still_moves_the_style(models_dir) -> None:  # noqa: ANN001
    x = torch.linspace(0, 1, 72).view(1, 1, 1, 72).expand(1, 3, 64, 72).contiguous()
    ex = [torch.from_numpy(styles.builtin_style("pointillism").exemplars[0][:96, :96]).permute(2, 0, 1)[None]]
    y1 = neural_style.gatys_transfer(x, ex, steps=30, coarse_steps=20, models_dir=models_dir)
    y2 = neural_style.gatys_transfer(x, ex, steps=30, coarse_steps=20, models_dir=models_dir)
    assert y1.shape == x.shape and float(y1.min()) >= 0 and float(y1.max()) <= 1
    torch.testing.assert_close(y1, y2)
    full = neural_style.gatys_transfer(x, ex, steps=30, models_dir=models_dir)
    assert not torch.equal(full, y1)  # the coarse pass really ran
    s = neural_style.gram_signature(ex, models_dir=models_dir)
    before = neural_style.gram_distance(neural_style.gram_signature([x], models_dir=models_dir), s)
    after = neural_style.gram_distance(neural_style.gram_signature([y1], models_dir=models_dir), s)
    assert after < 0.8 * before


def test_ranked_styles_tries_every_candidate_once_band_first(models_dir) -> None:  # noqa: ANN001
    cands = styles.builtin_styles()
    x = _img(3)
    order = ranked_styles(x, cands, seed=0, models_dir=models_dir)
    assert sorted(c.name for c in order) == sorted(c.name for c in cands)
    again = ranked_styles(x, cands, seed=0, models_dir=models_dir)
    assert [c.name for c in order] == [c.name for c in again]
    assert ranked_styles(x, cands[:1], seed=0, models_dir=models_dir) == cands[:1]


@pytest.mark.parametrize("renderer", ["gatys", "latent-wct"])
def test_render_target_reports_its_vetting(models_dir, renderer) -> None:  # noqa: ANN001
    enc = tiny_random_tae(seed=5)
    x0 = _img(4)
    cfg = CloakConfig(target_renderer=renderer, target_tries=2)
    img, style, report = render_target(x0, enc, styles.builtin_styles()[:3], cfg, seed=0, models_dir=models_dir)
    assert img.shape == x0.shape and float(img.min()) >= 0 and float(img.max()) <= 1
    assert report["renderer"] == renderer
    assert 1 <= len(report["vetting"]) <= 2
    for v in report["vetting"]:
        assert set(v) == {"style", "ai_view_to_style", "ai_view_to_artwork", "accepted"}
    assert style.name in [v["style"] for v in report["vetting"]]
    # an accepted candidate ends the search
    if report["vetting"][0]["accepted"]:
        assert len(report["vetting"]) == 1 and report["vetted"]


def test_overshoot_aims_past_the_target_along_the_same_direction() -> None:
    enc = tiny_random_tae(seed=6)
    x0, t = _img(7), _img(8)
    plain = LatentTargetObjective(x0, t, [(enc, 1.0)])
    over = LatentTargetObjective(x0, t, [(enc, 1.0)], overshoot=2.0)
    with torch.no_grad():
        z0, zt = enc.encode(x0), enc.encode(t)
    torch.testing.assert_close(over.targets[0].latent, z0 + 2.0 * (zt - z0))
    assert over.targets[0].clean_dist == pytest.approx(2 * plain.targets[0].clean_dist, rel=1e-4)
    d = over.distances(x0)[0]
    assert d["relative_reduction"] == pytest.approx(0.0, abs=1e-5)
    assert d["reduction_toward_target_image"] == pytest.approx(0.0, abs=1e-5)
    assert "reduction_toward_target_image" not in plain.distances(x0)[0]


def test_cloak_config_target_fields_validate_and_round_trip() -> None:
    cfg = CloakConfig(target_renderer="latent-wct", target_tries=2, target_overshoot=1.5)
    back = CloakConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    with pytest.raises(ValueError, match="target_renderer must be one of"):
        CloakConfig(target_renderer="pix2pix")
    with pytest.raises(ValueError, match="target_tries"):
        CloakConfig(target_tries=0)
    with pytest.raises(ValueError, match="target_overshoot"):
        dataclasses.replace(cfg, target_overshoot=0.5)
    assert np.isclose(CloakConfig().style_strength, 1.0)
