"""The AI-view style loss (sfumato.optimise.ai_view_style) and its place in the trainer-view objective:
normalised to 1 on the clean view and 0 at the target's AI view, differentiable down to the pixels,
mixed with the latent term by ``Effort.objective``, and validated at the boundary (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfumato.config import CLOAK_OBJECTIVES, Budget, CloakConfig, Effort
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import round_to_bits, to_nchw
from sfumato.metrics.lpips import tiny_random_lpips
from sfumato.optimise.ai_view_style import MIN_CLEAN_DISTANCE, OBJECTIVES, AiViewGram
from sfumato.optimise.budgets import LinfBudget
from sfumato.optimise.loop import optimise
from sfumato.optimise.view_sampling import ViewSampledObjective, over_trainer_views


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return round_to_bits(np.clip(base * 0.6 + 0.2 + rng.normal(0, 0.08, (h, w, 3)).astype(np.float32), 0, 1))


def test_style_term_is_one_on_the_clean_view_zero_at_the_target_and_differentiable() -> None:
    enc, net = tiny_random_tae(seed=0), tiny_random_lpips("squeeze", seed=0)
    style = AiViewGram(enc, net)
    clean, target = to_nchw(_image(48, 48)), to_nchw(_image(48, 48, seed=5)[::-1].copy())
    with torch.no_grad():
        zc, zt = enc.encode(clean), enc.encode(target)
    ref = style.reference(zt, zc, (48, 48))
    assert ref.clean > 0 and len(ref.grams) == len(style.taps) == 5
    assert float(style.loss(zc, (48, 48), ref)) == pytest.approx(1.0, rel=1e-5)
    assert float(style.loss(zt, (48, 48), ref)) == pytest.approx(0.0, abs=1e-6)
    x = clean.clone().requires_grad_(True)
    style.loss(enc.encode(x), (48, 48), ref).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # a view whose clean AI view already is the target's has no style term (not a 1/0 blow-up)
    same = style.reference(zc, zc, (48, 48))
    assert same.clean < MIN_CLEAN_DISTANCE and float(style.loss(zt, (48, 48), same)) == 0.0


def test_style_weight_zero_is_the_latent_objective_and_one_optimises_the_style_term() -> None:
    enc, net = tiny_random_tae(seed=3), tiny_random_lpips("squeeze", seed=1)
    x0 = to_nchw(_image(32, 40))
    target = to_nchw(_image(32, 40, seed=9)[::-1].copy())
    buckets = (64, 96)
    plain = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=48, seed=0, buckets=buckets)
    zero = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=48, seed=0, buckets=buckets,
                                style=AiViewGram(enc, net), style_weight=0.0)
    x = (x0 + 0.02).clamp(0, 1)
    for _ in range(4):  # the same views, the same losses: weight 0 is the latent objective
        assert float(plain(x)[0]) == pytest.approx(float(zero(x)[0]), rel=1e-6)
    assert zero.style is None and not zero._style_refs

    # one view (the native size, whole): the style term alone, optimised, falls below its clean value of 1
    # (random networks give AI views with nearly equal Gram matrices, so the single view keeps this exact)
    obj = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=64, seed=0, buckets=(),
                               style=AiViewGram(enc, net), style_weight=1.0)
    assert float(obj(x0)[0]) == pytest.approx(1.0, rel=1e-2)
    res = optimise(x0, obj, [LinfBudget(eps=16 / 255)], steps=30, lr=0.002,
                   generator=torch.Generator().manual_seed(0))
    assert float(res.delta.abs().max()) <= 16 / 255 + 1e-6 and len(obj._style_refs) == 1  # reference cached
    assert float(obj(x0 + res.delta)[0]) < 0.9


def test_objective_is_validated_round_trips_and_old_manifests_load_as_latent() -> None:
    assert set(CLOAK_OBJECTIVES) == set(OBJECTIVES) and OBJECTIVES["latent"] == 0 and OBJECTIVES["ai-view-gram"] == 1
    e = Effort(views="trainer", objective="mix")
    assert Effort.from_json(e.to_json()) == e
    with pytest.raises(ValueError, match="objective must be 'latent'"):
        Effort(views="trainer", objective="gram")
    with pytest.raises(ValueError, match="set views='trainer'"):
        Effort(views="work", objective="ai-view-gram")
    with pytest.raises(ValueError, match="early_stop measures the latent"):
        Effort(views="trainer", objective="mix", early_stop=0.3)
    old = {k: v for k, v in Effort().to_dict().items() if k != "objective"}
    assert Effort.from_dict(old).objective == "latent"
    assert CloakConfig.preset().effort.objective == "latent"  # every preset keeps Glaze's latent distance
    enc, net = tiny_random_tae(seed=0, with_decoder=False), tiny_random_lpips("squeeze")
    with pytest.raises(ValueError, match="decoder"):
        AiViewGram(enc, net)
    with pytest.raises(ValueError, match="needs an AiViewGram"):
        ViewSampledObjective(to_nchw(_image(16, 16)), to_nchw(_image(16, 16)), [(enc, 1.0)], style_weight=0.5)


def test_over_trainer_views_builds_the_style_term_from_the_effort() -> None:
    rgb = _image(24, 32)
    x0 = to_nchw(rgb)
    cfg = CloakConfig(effort=Effort(steps=2, resolution=64, views="trainer", view_crop=32, objective="mix"),
                      budget=Budget(lpips=0.05, linf=8 / 255))
    dec = tiny_random_tae(seed=1)
    obj, eot = over_trainer_views(None, x0, x0.flip(-1), [(dec, 1.0)], rgb=rgb, effort=cfg.effort, seed=0,
                                  transform=None, style_net=tiny_random_lpips("squeeze"))
    assert eot is None and obj.style_weight == 0.5 and obj.style is not None and obj.style.decoder is dec
    loss, prog = obj(x0)
    assert torch.isfinite(loss) and prog is not None
    with pytest.raises(ValueError, match="needs an encoder with a decoder"):
        over_trainer_views(None, x0, x0, [(tiny_random_tae(seed=1, with_decoder=False), 1.0)], rgb=rgb,
                           effort=cfg.effort, seed=0, transform=None, style_net=tiny_random_lpips("squeeze"))
