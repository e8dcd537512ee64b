"""Peer baselines (PhotoGuard, Glaze, Nightshade, Mist) on the tiny random TAE: mechanics, budgets,
determinism, the step schedules, and matched-budget calibration with the real LPIPS weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sfumato.baselines import BASELINES, BaselineResult, get_baseline, quantise_within
from sfumato.baselines.mist import mist_pattern
from sfumato.config import Budget
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import round_to_bits

H, W = 40, 56  # small and cheap: the encoders see it as it is
BIG = (72, 96)  # with resolution=64 the encoders see 48x64 and δ is upsampled to 72x96
RES = 64
STEPS = 3
EPS_DEFAULT = {"photoguard": 0.06, "glaze": 0.1, "nightshade": 0.05, "mist": 16 / 255}


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    y, x = y / (h - 1), x / (w - 1)
    img = np.stack([0.2 + 0.6 * x, 0.25 + 0.5 * y, 0.5 + 0.25 * np.sin(7 * x * y + 3 * x)], -1)
    img = img + rng.normal(0, 0.04, img.shape)
    return round_to_bits(np.clip(img, 0.08, 0.92).astype(np.float32))  # on the 8-bit grid, like a loaded PNG


@pytest.fixture(scope="module")
def enc():
    return tiny_random_tae(seed=0)


@pytest.fixture(scope="module")
def style_folder(tmp_path_factory) -> str:
    """A small target-style folder (two 64x64 exemplars) so the Glaze target is cheap to render."""
    from PIL import Image

    d = tmp_path_factory.mktemp("style") / "stripes"
    d.mkdir()
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(2):
        a = (((xx + yy + 5 * i) // 6) % 2).astype(np.float32)
        rgb = np.stack([a, 0.3 + 0.4 * a, 1 - a], -1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(d / f"ex{i}.png")
    return str(d)


def _kwargs(name: str, enc, style_folder: str) -> dict:
    kw = {"encoders": [(enc, 1.0)], "steps": STEPS, "resolution": RES, "seed": 3}
    if name == "nightshade":
        kw["target"] = _image(99, 90, 60)[::-1].copy()  # an "anchor" of another aspect ratio
    if name == "glaze":
        kw["target"] = style_folder
    return kw


@pytest.fixture(scope="module")
def runs(enc, style_folder) -> dict[str, tuple[BaselineResult, BaselineResult]]:
    img = _image(0)
    out = {}
    for name in BASELINES:
        fn = get_baseline(name)
        kw = _kwargs(name, enc, style_folder)
        out[name] = (fn(img, **kw), fn(img, **kw))
    return out


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_output_budget_and_latent(name: str, runs) -> None:
    img = _image(0)
    r, _ = runs[name]
    assert r.name == name
    assert r.image.shape == img.shape and r.image.dtype == np.float32
    assert r.image.min() >= 0 and r.image.max() <= 1
    assert np.array_equal(r.image, round_to_bits(r.image)), "output must be exactly what the codec stores"
    linf = float(np.abs(r.image.astype(np.float64) - img).max())
    assert linf <= EPS_DEFAULT[name] + 1e-6
    assert r.achieved["linf"] == pytest.approx(linf, abs=1e-6)
    assert linf > 0, "the baseline changed nothing"
    assert len(r.latent) == 1
    d = r.latent[0]
    assert d["encoder"] == "tae-random"
    assert d["protected_to_target"] < d["clean_to_target"]
    assert d["relative_reduction"] == pytest.approx(1 - d["protected_to_target"] / d["clean_to_target"])
    assert r.steps_run == STEPS and len(r.history) == STEPS
    assert r.params["resolution_used"] == [H, W]
    assert r.params["eps"] == pytest.approx(EPS_DEFAULT[name])
    assert r.target_image is not None and r.target_image.shape == (H, W, 3)
    assert {"lpips_alex", "psnr", "ssim", "linf"} <= set(r.achieved)
    import json

    json.dumps(r.to_dict())  # manifests need JSON


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_deterministic_with_seed(name: str, runs) -> None:
    a, b = runs[name]
    assert np.array_equal(a.image, b.image)
    assert a.latent == b.latent


def test_photoguard_target_is_mid_grey_and_step_schedule(runs) -> None:
    r, _ = runs["photoguard"]
    assert np.allclose(r.target_image, 0.5)
    assert r.params["step_size"] == pytest.approx(0.06 / 12)
    assert r.params["step_schedule"] == "linear decay to 0"
    assert runs["mist"][0].params["step_size"] == pytest.approx(1 / 255)


def test_glaze_targets_a_rendering_in_the_chosen_style(runs) -> None:
    r, _ = runs["glaze"]
    assert r.params["target"]["style"] == "stripes"
    assert r.params["lpips_p"] == 0.05 and r.params["alpha"] == 30.0 and r.params["update"] == "adam"
    from sfumato.io.tensors import resize, to_hwc, to_nchw

    clean_view = to_hwc(resize(to_nchw(_image(0)), (H, W)))
    assert np.abs(r.target_image - clean_view).mean() > 0.05  # the target is a re-rendering, not the input


def test_nightshade_step_size_decays_linearly(enc, monkeypatch) -> None:
    """Record x0 + δ at every step: each signed step moves unclipped pixels by exactly the step size."""
    from sfumato.baselines import nightshade
    from sfumato.optimise import loop
    from sfumato.optimise.loop import optimise as real_optimise

    seen: list[torch.Tensor] = []

    def recording_optimise(x0, objective, budgets, **kw):
        def obj(x):
            seen.append(x.detach().clone())
            return objective(x)

        return real_optimise(x0, obj, budgets, **kw)

    monkeypatch.setattr(loop, "optimise", recording_optimise)
    steps, lr = 5, 0.002  # total travel 0.006 < eps: the box never clips
    nightshade.nightshade_poison(_image(1), target=_image(2), encoders=[(enc, 1.0)], steps=steps, step_size=lr,
                                 lpips_p=0, resolution=RES)
    assert len(seen) == steps
    moves = [float((b - a).abs().amax()) for a, b in zip(seen, seen[1:], strict=False)]
    expected = [lr * (1 - t / (steps - 1)) for t in range(steps - 1)]  # 0.002, 0.0015, 0.001, 0.0005 (then 0)
    assert moves == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_matched_budget_respects_lpips_and_linf(name: str, enc, style_folder) -> None:
    budget = Budget(lpips=0.003, linf=6 / 255)
    img = _image(4, *BIG)
    kw = _kwargs(name, enc, style_folder)
    kw["steps"] = 2
    r = get_baseline(name)(img, matched_budget=budget, **kw)
    assert r.params["eps"] == pytest.approx(6 / 255)
    assert r.params["matched_budget"] == budget.to_dict()
    assert r.image.shape == img.shape and r.params["resolution_used"] == [48, 64]  # δ was upsampled
    assert r.achieved["lpips_alex"] <= budget.lpips + 1e-6
    assert r.achieved["linf"] <= budget.linf + 1e-6
    assert r.params["calibration"]["lpips"] == pytest.approx(r.achieved["lpips_alex"], abs=1e-5)
    assert 0 <= r.params["calibration"]["scale"] <= 1.5


def test_quantise_within_holds_the_cap_for_off_grid_inputs_and_odd_eps() -> None:
    rng = np.random.default_rng(5)
    rgb = rng.uniform(0.1, 0.9, (40, 40, 3)).astype(np.float32)  # not on the 8-bit grid
    delta = rng.uniform(-0.2, 0.2, rgb.shape).astype(np.float32)
    eps = 0.05  # 12.75/255: plain rounding would overshoot by up to half a level
    naive = round_to_bits(np.clip(rgb + np.clip(delta, -eps, eps), 0, 1))
    assert np.abs(naive - rgb).max() > eps + 1e-6  # the problem is real
    out, info = quantise_within(rgb, delta, eps=eps, quantise=round_to_bits, matched_budget=None, models_dir=None)
    assert np.abs(out.astype(np.float64) - rgb).max() <= eps + 1e-6
    assert np.array_equal(out, round_to_bits(out))
    assert info["linf_clip_bound"] < eps


def test_mist_pattern_is_a_binary_repeating_text_pattern() -> None:
    p = mist_pattern(96, 256)
    assert p.shape == (96, 256, 3) and p.dtype == np.float32
    assert set(np.unique(p)) == {0.0, 1.0}
    assert 0.1 < (p == 0).mean() < 0.6  # ink and paper both present
    assert np.array_equal(p[..., 0], p[..., 2])
    cell = 2
    tile_w = (4 * 5 + 3 + 4) * cell  # "MIST" in 5-wide glyphs, 1-pixel gaps, 2-pixel margins
    assert np.array_equal(p[:20, :tile_w], p[:20, tile_w: 2 * tile_w])


def test_validation_messages(enc, tmp_path: Path) -> None:
    img = _image(0)
    encs = [(enc, 1.0)]
    with pytest.raises(ValueError, match="anchor image"):
        get_baseline("nightshade")(img, encoders=encs)
    with pytest.raises(ValueError, match="either eps or matched_budget"):
        get_baseline("photoguard")(img, encoders=encs, eps=0.03, matched_budget=Budget())
    with pytest.raises(ValueError, match="HxWx3"):
        get_baseline("mist")(img[..., 0], encoders=encs)
    with pytest.raises(ValueError, match="float"):
        get_baseline("mist")((img * 255).astype(np.uint8), encoders=encs)
    with pytest.raises(ValueError, match="decoder"):
        get_baseline("glaze")(img, encoders=[(tiny_random_tae(with_decoder=False), 1.0)], resolution=RES)
    with pytest.raises(ValueError, match="steps"):
        get_baseline("mist")(img, encoders=encs, steps=0)
    with pytest.raises(ValueError, match="unknown baseline"):
        get_baseline("fawkes")
