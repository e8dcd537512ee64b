"""Mechanics of the style cloak on tiny random encoders, budget invariants as property tests, config
round trips, style targets, and calibration on the saved (quantised) image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sfumato.config import Budget, CloakConfig, Effort, Robustness
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import round_to_bits, to_nchw, work_size
from sfumato.optimise.budgets import LinfBudget, LpipsBudget
from sfumato.optimise.calibrate import calibrate
from sfumato.optimise.loop import optimise
from sfumato.optimise.objectives import LatentTargetObjective
from sfumato.protections.cloak import cloak_array
from sfumato.targets import latent_wct as style_transfer
from sfumato.targets import styles as styles


def _image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return round_to_bits(np.clip(base * 0.6 + 0.2 + rng.normal(0, 0.05, (h, w, 3)).astype(np.float32), 0, 1))


def test_config_json_round_trip() -> None:
    cfg = CloakConfig.preset(intensity="high", quality="fast", seed=7, target_style="cubist",
                             encoders=(("taef2", 1.0), ("taesana", 0.5)))
    again = CloakConfig.from_json(cfg.to_json())
    assert again == cfg
    low = CloakConfig.preset(robustness=Robustness(eot="default", perturbation_scale=0.5))
    assert CloakConfig.from_json(low.to_json()) == low
    assert json.loads(cfg.to_json())["budget"]["lpips"] == pytest.approx(0.07)


@pytest.mark.parametrize("make", [
    lambda: Budget(lpips=0.05, linf=0.0),
    lambda: Budget(lpips=1.5),
    lambda: Effort(steps=0),
    lambda: CloakConfig(style_strength=0.0),
    lambda: CloakConfig(encoders=()),
    lambda: CloakConfig(seed=-1),
    lambda: Robustness(perturbation_scale=0.05),
    lambda: Robustness(perturbation_scale=1.5),
])
def test_config_rejects_bad_values_with_a_message(make) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=r"must|needed"):
        make()


def test_unknown_preset_teaches() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        CloakConfig.preset(intensity="extreme")


def test_work_size_never_upscales_and_keeps_aspect() -> None:
    assert work_size(300, 200, 512) == (300, 200)
    h, w = work_size(3000, 4000, 512)
    assert w == 512 and abs(h / w - 0.75) < 0.01


def test_builtin_styles_are_deterministic_and_valid() -> None:
    a, b = styles.builtin_style("cubist"), styles.builtin_style("cubist")
    assert len(a.exemplars) == 2
    for x, y in zip(a.exemplars, b.exemplars, strict=True):
        assert x.dtype == np.float32 and x.shape == (256, 256, 3)
        assert 0 <= x.min() and x.max() <= 1
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="built-in style"):
        styles.builtin_style("nope")
    assert len(styles.resolve_style_option("auto")) == len(styles.STYLE_FAMILIES)


def test_wct_matches_style_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    zc = torch.randn(1, 4, 16, 16, generator=g)
    mix = torch.tensor([[1.0, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0.3, 1]])
    zs = (mix @ torch.randn(4, 400, generator=g)).reshape(1, 4, 20, 20) + 3
    out = style_transfer.wct(zc, [zs]).reshape(4, -1)
    ref = zs.reshape(4, -1)
    assert torch.allclose(out.mean(1), ref.mean(1), atol=1e-3)
    assert torch.allclose(torch.cov(out), torch.cov(ref), atol=1e-2)


def test_linf_projection_keeps_box_and_valid_pixels() -> None:
    x0 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    d = torch.randn(1, 3, 8, 8) * 0.5
    out = LinfBudget(eps=4 / 255).project(d, x0)
    assert out.abs().max() <= 4 / 255 + 1e-7
    assert (x0 + out).min() >= 0 and (x0 + out).max() <= 1


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(1 / 255, 32 / 255), seed=st.integers(0, 10_000), scale=st.floats(0.01, 3.0))
def test_linf_projection_property(eps: float, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(1, 3, 6, 7, generator=g)
    d = torch.randn(1, 3, 6, 7, generator=g) * scale
    out = LinfBudget(eps=eps).project(d, x0)
    assert float(out.abs().max()) <= eps + 1e-6
    assert float((x0 + out).min()) >= -1e-7 and float((x0 + out).max()) <= 1 + 1e-7


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.002, 0.2), linf=st.integers(1, 32), bits=st.sampled_from([8, 16]))
def test_calibrate_always_meets_budget_after_quantisation(seed: int, p: float, linf: int, bits: int) -> None:
    """Budget invariant: whatever the perturbation, the calibrated *quantised* image meets LPIPS ≤ p and
    the L∞ cap (here with a cheap stand-in metric; the real LPIPS is exercised in test_cloak_real)."""
    rng = np.random.default_rng(seed)
    x = round_to_bits(rng.random((12, 10, 3)).astype(np.float32), bits)
    delta = rng.normal(0, 0.2, x.shape).astype(np.float32)

    def metric(a: np.ndarray, b: np.ndarray) -> float:  # monotone in |a-b|, like LPIPS for small δ
        return float(np.sqrt(np.mean((a - b) ** 2)))

    out, s, val = calibrate(x, delta, lpips_p=p, linf=linf / 255, quantise=lambda a: round_to_bits(a, bits),
                            lpips_fn=metric)
    assert val <= p and metric(out, x) <= p
    assert np.abs(out - x).max() <= linf / 255 + 1e-6
    np.testing.assert_array_equal(out, round_to_bits(out, bits))
    assert 0 <= s <= 2.0


def test_optimise_moves_latent_toward_target_on_tiny_encoder() -> None:
    enc = tiny_random_tae(seed=3)
    x0 = to_nchw(_image())
    target = to_nchw(_image(seed=9)[::-1].copy())
    obj = LatentTargetObjective(x0, target, [(enc, 1.0)])
    res = optimise(x0, obj, [LinfBudget(eps=16 / 255)], steps=15, lr=0.01,
                   generator=torch.Generator().manual_seed(0))
    d = obj.distances(x0 + res.delta)[0]
    assert d["protected_to_target"] < d["clean_to_target"]
    assert d["relative_reduction"] > 0.05
    assert float(res.delta.abs().max()) <= 16 / 255 + 1e-6
    assert res.steps_run == 15 and len(res.history) == 15


def test_optimise_sign_update_and_early_stop() -> None:
    enc = tiny_random_tae(seed=4)
    x0 = to_nchw(_image())
    obj = LatentTargetObjective(x0, to_nchw(_image(seed=5)), [(enc, 1.0)])
    res = optimise(x0, obj, [LinfBudget(eps=32 / 255)], steps=200, lr=2 / 255, update="sign", decay="linear",
                   generator=torch.Generator().manual_seed(0), early_stop=0.05)
    assert res.stopped_early and res.steps_run < 200


def test_optimise_on_a_coarse_grid_is_low_frequency_and_keeps_the_box() -> None:
    enc = tiny_random_tae(seed=3)
    x0 = to_nchw(_image(48, 64))
    obj = LatentTargetObjective(x0, to_nchw(_image(48, 64, seed=9)[::-1].copy()), [(enc, 1.0)])
    eps = 12 / 255
    res = optimise(x0, obj, [LinfBudget(eps=eps)], steps=12, lr=0.02, generator=torch.Generator().manual_seed(0),
                   param_size=(24, 32), init_noise=eps / 2)
    d = res.delta
    assert d.shape == x0.shape  # returned at the image's size
    assert float(d.abs().max()) <= eps + 1e-6
    assert obj.distances(x0 + d)[0]["relative_reduction"] > 0.02
    # no energy in the top octave: a 2x box-downsample/bilinear-upsample round trip changes it little,
    # while a free (full-grid) perturbation loses much more
    free = optimise(x0, obj, [LinfBudget(eps=eps)], steps=12, lr=0.02, generator=torch.Generator().manual_seed(0),
                    init_noise=eps / 2).delta

    def top_octave(v: torch.Tensor) -> float:
        lo = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(v, 2), size=v.shape[-2:],
                                             mode="bilinear", align_corners=False)
        return float((v - lo).norm() / v.norm())

    assert top_octave(d) < 0.6 * top_octave(free)


def test_cloak_array_mechanics_with_tiny_encoder_and_real_lpips(models_dir) -> None:  # noqa: ANN001
    enc = tiny_random_tae(seed=1)
    rgb = _image(40, 56)
    cfg = CloakConfig(effort=Effort(steps=6, resolution=64, lr=0.01), target_style="mosaic",
                      budget=Budget(lpips=0.05, linf=8 / 255), seed=3)
    r1 = cloak_array(rgb, cfg, encoders=[(enc, 1.0)], models_dir=models_dir)
    r2 = cloak_array(rgb, cfg, encoders=[(enc, 1.0)], models_dir=models_dir)
    assert r1.image.shape == rgb.shape and r1.image.dtype == np.float32
    np.testing.assert_array_equal(r1.image, r2.image)  # reproducible from the config (seed)
    np.testing.assert_array_equal(r1.image, round_to_bits(r1.image, 8))
    assert r1.achieved["lpips_alex"] <= 0.05 + 1e-6
    assert r1.achieved["linf"] <= 8 / 255 + 1e-6
    assert r1.target["style"] == "mosaic"
    assert r1.latent[0]["encoder"] == "tae-random"


def test_cloak_with_a_low_frequency_perturbation_meets_the_budget_on_the_saved_file(models_dir) -> None:  # noqa: ANN001
    enc = tiny_random_tae(seed=1)
    rgb = _image(40, 56)
    cfg = CloakConfig(effort=Effort(steps=6, resolution=64, lr=0.02), target_style="mosaic",
                      budget=Budget(lpips=0.05, linf=8 / 255), seed=3,
                      robustness=Robustness(perturbation_scale=0.5))
    r1 = cloak_array(rgb, cfg, encoders=[(enc, 1.0)], models_dir=models_dir)
    r2 = cloak_array(rgb, cfg, encoders=[(enc, 1.0)], models_dir=models_dir)
    np.testing.assert_array_equal(r1.image, r2.image)
    np.testing.assert_array_equal(r1.image, round_to_bits(r1.image, 8))
    assert r1.achieved["lpips_alex"] <= 0.05 + 1e-6
    assert r1.achieved["linf"] <= 8 / 255 + 1e-6
    assert float(np.abs(r1.image - rgb).max()) > 0  # it did perturb
    assert r1.config.robustness.perturbation_scale == 0.5


def test_cloak_needs_a_decoder_for_the_target() -> None:
    enc = tiny_random_tae(with_decoder=False)
    with pytest.raises(ValueError, match="decoder"):
        cloak_array(_image(), CloakConfig(effort=Effort(steps=1, resolution=64)), encoders=[(enc, 1.0)])


def test_lpips_budget_penalty_is_zero_inside_and_positive_outside(models_dir) -> None:  # noqa: ANN001
    x0 = to_nchw(_image(64, 64))
    b = LpipsBudget(p=0.05, alpha=30, models_dir=models_dir, margin=1.0)
    b.prepare(x0)
    assert float(b.penalty(x0)) == 0.0
    noisy = (x0 + torch.randn_like(x0) * 0.3).clamp(0, 1)
    assert float(b.penalty(noisy)) > 0
    # with a gradient: inside the ceiling a detached zero (no backward pass through LPIPS), outside one
    # differentiable pass whose gradient pulls the image back toward x0
    inside = (x0 + 0).requires_grad_(True)
    assert not b.penalty(inside).requires_grad
    outside = noisy.clone().requires_grad_(True)
    pen = b.penalty(outside)
    pen.backward()
    assert outside.grad is not None and float(outside.grad.abs().sum()) > 0
    with torch.no_grad():
        stepped = (outside - 1e-3 * outside.grad.sign()).clamp(0, 1)
    assert float(b.penalty(stepped)) < float(pen.detach())


def test_lpips_budget_every_k_steps_skips_the_others_at_k_times_the_weight(models_dir) -> None:  # noqa: ANN001
    x0 = to_nchw(_image(64, 64))
    noisy = (x0 + torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * 0.3).clamp(0, 1)
    one = LpipsBudget(p=0.05, alpha=30, models_dir=models_dir, margin=1.0)
    one.prepare(x0)
    every = LpipsBudget(p=0.05, alpha=30, models_dir=models_dir, margin=1.0, every=3)
    every.prepare(x0)
    full = float(one.penalty(noisy))
    got = [float(every.penalty(noisy)) for _ in range(7)]
    assert got[0] == pytest.approx(3 * full, rel=1e-5) and got[3] == got[6] == got[0]  # steps 1, 4, 7
    assert got[1] == got[2] == got[4] == got[5] == 0.0  # the skipped steps pay no LPIPS pass
    every.prepare(x0)  # a new image restarts the count
    assert float(every.penalty(noisy)) == pytest.approx(3 * full, rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(40, 6000), w=st.integers(40, 6000), cap=st.sampled_from([200_000, 1_200_000]))
def test_lpips_regions_tile_the_view_on_the_16px_grid(h: int, w: int, cap: int) -> None:
    from sfumato.io.tensors import capped_size
    from sfumato.optimise.lpips_views import LPIPS_VIEW_MAX_PIXELS, lpips_regions

    regions = lpips_regions(h, w, cap)
    vh, vw = capped_size(h, w, LPIPS_VIEW_MAX_PIXELS)
    if vh * vw <= cap:
        assert regions is None
        return
    assert regions
    covered = np.zeros((vh, vw), bool)
    for top, left, th, tw in regions:
        assert top % 16 == 0 and left % 16 == 0  # same AlexNet sampling grid as the whole image
        assert th >= 32 and tw >= 32 and top + th <= vh and left + tw <= vw
        assert th * tw <= cap * 1.2 + 16 * (th + tw)
        covered[top:top + th, left:left + tw] = True
    # Only slivers thinner than 32 px at the far edges may stay uncovered.
    assert covered[: vh - 32, : vw - 32].all()


def test_lpips_budget_regions_round_robin_and_check_rescales_the_ceiling(models_dir) -> None:  # noqa: ANN001
    from sfumato.metrics.lpips import load_lpips

    x0 = to_nchw(_image(64, 96))
    crops = [(0, 0, 64, 48), (0, 48, 64, 48)]
    measured = []

    def check(x: torch.Tensor) -> float:
        measured.append(1)
        return 0.08

    b = LpipsBudget(p=0.05, alpha=30, models_dir=models_dir, margin=1.0, crops=crops, check=check,
                    check_from=1, check_every=2)
    b.prepare(x0)
    x = (x0 + torch.randn_like(x0, generator=None) * 0.05).clamp(0, 1)
    lp = load_lpips("alex", models_dir=models_dir)
    for k, (t, left, hh, ww) in enumerate(crops):
        want = float(lp(x[..., t:t + hh, left:left + ww], x0[..., t:t + hh, left:left + ww])[0])
        assert float(b.value(x, k)) == pytest.approx(want, rel=1e-5)
    b.penalty(x)
    b.penalty(x)
    assert b._calls == 2 and set(b._last) == {0, 1}  # each region measured once, in turn
    assert b.ceiling == pytest.approx(0.05)
    b.observe(x, 1)  # check: the saved file measures 0.08, the regions say less -> lower ceiling
    mean_regions = sum(b._last.values()) / 2
    assert measured == [1]
    assert b.ceiling == pytest.approx(0.05 * mean_regions / 0.08, rel=1e-4)
    b.observe(x, 2)  # not a check step
    assert measured == [1]
    b.prepare(x0)  # a new image starts from the plain ceiling again
    assert b.ceiling == pytest.approx(0.05)


def test_step_size_schedules() -> None:
    from sfumato.optimise.loop import step_size

    assert [step_size(0.01, k, 5) for k in (1, 3, 5)] == [0.01, 0.01, 0.01]
    assert [step_size(0.01, k, 5, "linear") for k in (1, 3, 5)] == pytest.approx([0.01, 0.005, 0.0])
    cos = [step_size(0.01, k, 5, "cosine") for k in range(1, 6)]
    assert cos[0] == pytest.approx(0.01) and cos[-1] == pytest.approx(0.001)
    assert cos[2] == pytest.approx(0.0055) and all(a > b for a, b in zip(cos, cos[1:], strict=False))


def test_saved_file_lpips_matches_the_metric_on_the_rounded_full_image(models_dir) -> None:  # noqa: ANN001
    from sfumato.io.tensors import resize
    from sfumato.metrics.lpips import load_lpips
    from sfumato.optimise.lpips_views import saved_file_lpips

    rgb = _image(90, 120)
    x0 = resize(to_nchw(rgb), (45, 60))
    delta = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * 0.03
    check = saved_file_lpips(rgb, x0, "alex", models_dir)
    full = to_nchw(rgb)
    saved = to_nchw(round_to_bits(rgb + resize(delta, (90, 120))[0].permute(1, 2, 0).numpy()))
    want = float(load_lpips("alex", models_dir=models_dir)(saved, full)[0])
    # (x0 + δ) − x0 differs from δ in the last float bit, so a few pixels sitting on a half-level round the
    # other way: a 0.5 % tolerance still catches a wrong size, a missing rounding step or a wrong reference.
    assert check(x0 + delta) == pytest.approx(want, rel=5e-3, abs=1e-6)


def test_lpips_penalty_gradient_only_outside_the_ceiling(models_dir) -> None:  # noqa: ANN001
    x0 = to_nchw(_image(64, 64))
    b = LpipsBudget(p=0.05, alpha=30, models_dir=models_dir, margin=1.0)
    b.prepare(x0)
    inside = (x0 + 0.001).requires_grad_(True)
    pen = b.penalty(inside)
    assert float(pen) == 0.0 and not pen.requires_grad  # no graph built for a zero penalty
    outside = (x0 + torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * 0.3).clamp(0, 1)
    outside.requires_grad_(True)
    pen = b.penalty(outside)
    pen.backward()
    assert float(pen.detach()) > 0 and outside.grad is not None and float(outside.grad.abs().sum()) > 0


def test_radial_lpips_projection_shrinks_only_the_region_that_went_over(models_dir) -> None:  # noqa: ANN001
    x0 = to_nchw(_image(64, 96))
    b = LpipsBudget(p=0.02, alpha=30, models_dir=models_dir, margin=1.0, radial=True,
                    crops=[(0, 0, 64, 48), (0, 48, 64, 48)])
    b.prepare(x0)
    delta = torch.zeros_like(x0)
    delta[..., :48] = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 0.2
    x = (x0 + delta).clamp(0, 1)
    delta = x - x0
    b.penalty(x)  # region 0 (left half) is far above the ceiling
    assert b._last[0] > 0.02
    out = b.project(delta, x0)
    f = (0.02 / b._last[0]) ** 0.5
    torch.testing.assert_close(out[..., :48], delta[..., :48] * f)
    torch.testing.assert_close(out[..., 48:], delta[..., 48:])
    assert b.project(out, x0) is out  # once per measurement
    b.penalty((x0 + out).clamp(0, 1))
    assert b._last[1] <= 0.02 and b._over is None  # region 1 untouched and inside
    plain = LpipsBudget(p=0.02, models_dir=models_dir)  # radial off: projection is the identity
    plain.prepare(x0)
    plain.penalty(x)
    assert plain.project(delta, x0) is delta
