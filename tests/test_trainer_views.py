"""Trainer views (:mod:`sfumato.attacks.trainer_views`) and the latent measure at every view
(:mod:`sfumato.verification.views`): the view list, its replay, and the measure's fixed points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sfumato.attacks.trainer_views import TrainerView, apply_view, apply_view_np, trainer_views
from sfumato.verification.views import ceiling_blend, measure_views, view_toward, worst_views


# ------------------------------------------------------------------------------------------ the view list
@pytest.mark.parametrize("hw", [(683, 1024), (128, 128), (1500, 2300), (600, 800), (512, 512), (96, 160)])
def test_views_cover_the_named_views_and_crops_lie_inside(hw: tuple[int, int]) -> None:
    h, w = hw
    work = (round(h * 480 / max(h, w)), round(w * 480 / max(h, w)))
    vs = trainer_views(h, w, work_size=work, seed=3)
    names = [v.name for v in vs]
    assert names[:4] == ["work", "bucket-512", "bucket-768", "bucket-1024"]
    assert 1 <= len(vs) <= 8 and len(set(names)) == len(names)
    assert len({(v.size, v.crop) for v in vs}) == len(vs)  # no geometry twice
    assert ("native" in names) == (max(h, w) < 1024 and max(h, w) not in (512, 768))
    assert any(v.kind == "crop" for v in vs)
    for v in vs:
        assert v.source == (h, w)
        assert abs(v.size[0] / v.size[1] - h / w) < 0.02 * h / w + 1 / min(v.size)  # aspect kept
        assert max(v.size) <= 1024  # capped
        assert v.upscaled == (max(v.size) > max(h, w))
        if v.crop is not None:
            top, left, ch, cw = v.crop
            assert 0 <= top and 0 <= left and top + ch <= v.size[0] and left + cw <= v.size[1]
            assert ch == cw == min(512, *v.size) and (ch, cw) != v.size
            assert v.out_size == (ch, cw)
        assert TrainerView.from_dict(v.to_dict()) == v
    small = trainer_views(h, w, work_size=None, seed=3)
    assert all(v.kind != "work" for v in small)


def test_views_are_deterministic_for_a_seed() -> None:
    a = trainer_views(700, 1000, work_size=(350, 500), seed=1)
    assert a == trainer_views(700, 1000, work_size=(350, 500), seed=1)
    b = trainer_views(700, 1000, work_size=(350, 500), seed=2)
    assert [v.name for v in a] == [v.name for v in b]
    assert [v.crop for v in a if v.crop] != [v.crop for v in b if v.crop]
    # a small image is brought up to every bucket (as a trainer does), and labelled so
    tiny = trainer_views(100, 120, work_size=(100, 120), seed=0)
    assert all(v.upscaled for v in tiny if v.kind == "bucket") and not any(v.upscaled for v in tiny
                                                                             if v.kind in ("native", "work"))
    assert len(trainer_views(700, 1000, work_size=(350, 500), seed=0, max_views=5)) == 5
    assert len(trainer_views(700, 1000, work_size=(350, 500), seed=0, crops_per_scale=0)) == 5
    with pytest.raises(ValueError):
        trainer_views(4, 100, work_size=None, seed=0)


def test_apply_view_is_differentiable_and_matches_its_numpy_twin() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.random((90, 120, 3), dtype=np.float32)
    vs = trainer_views(90, 120, work_size=(60, 80), seed=0, scales=(64, 160), crop_side=48)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].clone().requires_grad_(True)
    for v in vs:
        y = apply_view(x, v)
        assert tuple(y.shape[-2:]) == v.out_size
        y.sum().backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0
        x.grad = None
        assert np.allclose(apply_view_np(rgb, v), y.detach()[0].permute(1, 2, 0).numpy(), atol=1e-6)
    # replayable from a copy of the same image at another size (same aspect); another aspect is refused
    half = torch.nn.functional.interpolate(x.detach(), size=(45, 60), mode="bilinear", antialias=True)
    assert tuple(apply_view(half, vs[1]).shape[-2:]) == vs[1].out_size
    with pytest.raises(ValueError, match="aspect"):
        apply_view(torch.zeros(1, 3, 90, 90), vs[1])


# ---------------------------------------------------------------------------------- the measure (fast tier)
class _MeanJudge:
    """A stand-in judge: two classes scored by the image's mean brightness."""

    artists = ("dark", "bright")

    def predict_proba(self, imgs: list[np.ndarray]) -> np.ndarray:
        m = np.array([float(np.mean(i)) for i in imgs])
        return np.stack([1 - m, m], axis=1)


def _scene(h: int = 64, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    x_o = np.stack([yy, xx, 0.5 + 0.2 * np.sin(9 * xx)], axis=-1).astype(np.float32)
    t = np.clip(x_o + rng.normal(0, 0.15, x_o.shape), 0, 1).astype(np.float32)
    return x_o, t


def _lpips_mae(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean(dim=(1, 2, 3))


def test_measure_is_one_at_the_target_and_zero_at_the_original_fast() -> None:
    from sfumato.encoders.tae import tiny_random_tae

    enc = tiny_random_tae(seed=1)
    x_o, t = _scene()
    vs = trainer_views(64, 80, work_size=(48, 60), seed=0, scales=(96,), crop_side=32, max_views=4)
    budget = {"lpips": 0.02, "linf": 0.05}
    at_t = measure_views(x_o, t, t, enc, budget, vs, lpips=_lpips_mae, judges={"m": _MeanJudge()}, artist="bright")
    at_o = measure_views(x_o, x_o, t, enc, budget, vs, lpips=_lpips_mae)
    assert [r["name"] for r in at_t] == [v.name for v in vs]
    for a, b in zip(at_t, at_o, strict=True):
        assert a["toward"] == pytest.approx(1.0, abs=1e-6) and a["cosine"] == pytest.approx(1.0, abs=1e-6)
        assert b["toward"] == pytest.approx(0.0, abs=1e-6) and b["shift_relative"] == 0.0
        assert a["ceiling_toward"] == pytest.approx(b["ceiling_toward"])  # the control ignores the protected file
        assert a["judges"]["m"]["artist"] == "bright" and 0 <= a["judges"]["m"]["p_protected"] <= 1
    # the ceiling is the measure of the budget-limited blend itself
    x_c, info = ceiling_blend(x_o, t, budget, _lpips_mae)
    assert 0 < info["scale"] <= 1 and info["lpips"] <= budget["lpips"] and info["linf"] <= 0.05 + 1e-6
    at_c = measure_views(x_o, x_c, t, enc, budget, vs, lpips=_lpips_mae)
    for c in at_c:
        assert c["toward"] == pytest.approx(c["ceiling_toward"], abs=1e-9)
        assert -0.2 < c["ceiling_toward"] < 1 and c["share_of_ceiling"] == pytest.approx(1.0)
    # the worst view is the one with the least toward; without a target only the shift is measured
    mixed = measure_views(x_o, np.clip(0.5 * x_o + 0.5 * t, 0, 1), t, enc, None, vs)
    assert worst_views(mixed)["view"]["toward"] == min(r["toward"] for r in mixed)
    assert all(r["ceiling_toward"] is None for r in mixed)
    shift = measure_views(x_o, t, None, enc, budget, vs)
    assert all(r["toward"] is None and r["shift_relative"] > 0 for r in shift)
    assert worst_views(shift)["view"]["measure"] == "shift_relative"


def test_view_toward_fixed_points() -> None:
    z_o, z_t = torch.zeros(4), torch.tensor([2.0, 0, 0, 0])
    assert view_toward(z_t, z_o, z_t) == pytest.approx((1.0, 1.0))
    assert view_toward(torch.tensor([1.0, 0, 0, 0]), z_o, z_t) == pytest.approx((0.5, 1.0))
    assert view_toward(torch.tensor([0.0, 1, 0, 0]), z_o, z_t)[1] == pytest.approx(0.0)


# ------------------------------------------------------------------------- the measure (real TAEF2, slow)
def test_measure_views_with_taef2(taef2: object, corpus_dir: Path) -> None:
    """Real TAEF2 and LPIPS on a 128 px painting: the fixed points hold at every view, and the ceiling
    control is the measure of its own blend."""
    from sfumato.io import load_image
    from sfumato.io.tensors import resize, to_hwc, to_nchw
    from sfumato.metrics.lpips import load_lpips

    src = sorted((corpus_dir / "art128" / "claude_monet").iterdir())[0]
    x_o = load_image(src).rgb
    assert x_o.shape[:2] == (128, 128)
    rng = np.random.default_rng(0)
    # a stand-in target rendered at a smaller "work size", as check re-renders the cloak's
    t_small = resize(to_nchw(x_o), (96, 96))
    t_small = (t_small + torch.from_numpy(rng.normal(0, 0.1, (1, 3, 96, 96)).astype(np.float32))).clamp(0, 1)
    vs = trainer_views(128, 128, work_size=(96, 96), seed=0, scales=(160, 256), crop_side=96)
    budget = {"lpips": 0.05, "linf": 8 / 255}
    lp = load_lpips("alex")
    t_full = to_hwc(resize(t_small, (128, 128)))
    at_t = measure_views(x_o, t_full, t_full, taef2, budget, vs, lpips=lp)
    at_o = measure_views(x_o, x_o, t_small, taef2, budget, vs, lpips=lp)
    for a, b in zip(at_t, at_o, strict=True):
        assert a["toward"] == pytest.approx(1.0, abs=1e-5) and b["toward"] == pytest.approx(0.0, abs=1e-6)
        assert 0 < b["ceiling_toward"] < 1 and b["seconds"] < 10
    x_c, info = ceiling_blend(x_o, t_small, budget, lp)
    assert info["lpips"] <= 0.05 and info["linf"] <= 8 / 255 + 1e-6
    at_c = measure_views(x_o, x_c, t_small, taef2, budget, vs, lpips=lp)
    for c, b in zip(at_c, at_o, strict=True):
        assert c["toward"] == pytest.approx(b["ceiling_toward"], abs=1e-6)
