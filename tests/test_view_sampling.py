"""The latent objective in expectation over trainer views (sfumato.optimise.view_sampling): which views it
samples, that the sequence replays from the seed, that a view of the file plus a change equals the view of
the changed file, and that optimising it moves the latent at trainer views on a tiny random encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfumato.config import Budget, CloakConfig, Effort
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import resize, round_to_bits, to_nchw
from sfumato.optimise.budgets import LinfBudget
from sfumato.optimise.loop import optimise
from sfumato.optimise.objectives import LatentTargetObjective
from sfumato.optimise.view_sampling import (
    CROP_ALIGN,
    PROGRESS_EMA,
    WORST_SHARE,
    SampledView,
    ViewSampledObjective,
    crop_starts,
    over_trainer_views,
    view_sizes,
)
from sfumato.protections.cloak import cloak_array


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return round_to_bits(np.clip(base * 0.6 + 0.2 + rng.normal(0, 0.05, (h, w, 3)).astype(np.float32), 0, 1))


def test_view_sizes_are_the_buckets_upscaled_and_the_capped_native_size_once() -> None:
    small = view_sizes(96, 128)
    assert small == [("bucket-512", (384, 512)), ("bucket-768", (576, 768)), ("bucket-1024", (768, 1024)),
                     ("native", (96, 128))]
    big = view_sizes(3000, 4000)  # native capped at 1024 = bucket-1024: listed once
    assert [n for n, _ in big] == ["bucket-512", "bucket-768", "bucket-1024"]
    assert view_sizes(600, 800, buckets=(512,))[-1] == ("native", (600, 800))


def test_sampled_views_replay_from_the_seed_cover_every_scale_and_stay_inside() -> None:
    enc = tiny_random_tae(seed=0)
    x0 = to_nchw(_image(24, 32))

    def draws(seed: int) -> list:
        obj = ViewSampledObjective(x0, x0.flip(-1), [(enc, 1.0)], crop_side=64, seed=seed)
        return [obj.sample() for _ in range(60)]

    a, b = draws(5), draws(5)
    assert a == b and a != draws(6)
    assert {v.name for v in a} == {"bucket-512", "bucket-768", "bucket-1024", "native"}
    for v in a:
        top, left, ch, cw = v.crop
        assert top % CROP_ALIGN == 0 and left % CROP_ALIGN == 0
        assert 0 <= top and top + ch <= v.size[0] and 0 <= left and left + cw <= v.size[1]
        assert (ch, cw) == (min(64, v.size[0]), min(64, v.size[1]))


def test_crop_starts_cover_the_axis_on_the_latent_grid() -> None:
    assert crop_starts(0, 256) == [0] and crop_starts(5, 256) == [0]
    assert crop_starts(40, 8) == [0, 8, 16, 24, 32, 40]
    assert crop_starts(43, 1) == [0, 8, 16, 24, 32, 40]  # below the grid: the fine grid
    assert crop_starts(768, 256) == [0, 256, 512, 768]  # a 1024 px side in 256 px tiles
    for room, stride in [(427, 256), (1000, 256), (300, 128), (9, 256), (512, 192)]:
        s = crop_starts(room, stride)
        assert s[0] == 0 and s == sorted(set(s)) and all(x % CROP_ALIGN == 0 for x in s)
        assert room - s[-1] < CROP_ALIGN  # the last crop reaches the end of the axis (to the grid)
        gaps = [b - a for a, b in zip(s, s[1:], strict=False)]
        assert all(g <= stride for g in gaps)  # crops of side >= stride leave no hole


def test_tiles_cycle_through_every_crop_and_reuse_their_latents() -> None:
    enc = tiny_random_tae(seed=0)
    x0 = to_nchw(_image(24, 32))
    target = x0.flip(-1)
    buckets = (64, 96)
    tiles = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=32, crop_stride=32, seed=2, buckets=buckets)
    draws = [tiles.sample() for _ in range(200)]
    again = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=32, crop_stride=32, seed=2, buckets=buckets)
    assert draws == [again.sample() for _ in range(200)]  # replayable from the seed
    per_size: dict = {}
    for v in draws:
        per_size.setdefault(v.size, []).append(v.crop)
    for size, crops in per_size.items():
        cells = {(t, left) for t, left, _, _ in crops}
        rows = crop_starts(size[0] - min(32, size[0]), 32)
        cols = crop_starts(size[1] - min(32, size[1]), 32)
        assert cells == {(t, left) for t in rows for left in cols}  # every tile of the view size
        n = len(rows) * len(cols)
        first = {(t, left) for t, left, _, _ in crops[:n]}
        assert len(first) == n  # a whole cycle before any tile repeats
        covered = torch.zeros(size, dtype=torch.bool)
        for t, left, ch, cw in crops:
            covered[t:t + ch, left:left + cw] = True
        assert bool(covered.all())  # the tiles cover the view
    wide = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=32, crop_stride=1000, seed=2, buckets=buckets)
    assert [wide.sample() for _ in range(200)] == draws  # a stride above the crop's side: the same tiles
    # the gradient-free latents are encoded once per tile, then reused: same loss as a fresh encode
    obj = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=32, crop_stride=32, seed=2, buckets=buckets)
    x = (x0 + 0.02).clamp(0, 1)
    losses = [float(obj(x)[0]) for _ in range(60)]
    distinct = {(v.size, v.crop) for v in draws[:60]}
    assert obj.encodes == len(distinct) < 60
    fresh = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=32, crop_stride=32, seed=2, buckets=buckets)
    for i, v in enumerate(draws[:60]):
        fresh._latents.clear()
        fresh.sample = lambda v=v: v  # type: ignore[method-assign]
        assert float(fresh(x)[0]) == pytest.approx(losses[i], rel=1e-5)


def test_a_view_of_file_plus_change_is_the_view_of_the_changed_file() -> None:
    enc = tiny_random_tae(seed=0)
    x0 = to_nchw(_image(40, 48))
    obj = ViewSampledObjective(x0, x0, [(enc, 1.0)], crop_side=96, seed=1)
    d = (torch.rand_like(x0) - 0.5) * 0.1
    for _ in range(5):
        v = obj.sample()
        t, left, ch, cw = v.crop
        want = resize((x0 + d).clamp(0, 1), v.size)[..., t:t + ch, left:left + cw]
        got = obj.apply(d, v)
        # resizing is linear; only clamping at 0 and 1 can differ, and this image stays inside
        assert torch.allclose(got, want, atol=1e-5)


def test_optimising_over_views_moves_the_latent_at_a_bucket_view() -> None:
    enc = tiny_random_tae(seed=3)
    x0 = to_nchw(_image(32, 40))
    target = to_nchw(_image(32, 40, seed=9)[::-1].copy())
    buckets = (64, 96)  # small buckets for a tiny image and a tiny encoder
    obj = ViewSampledObjective(x0, target, [(enc, 1.0)], crop_side=48, seed=0, buckets=buckets)
    res = optimise(x0, obj, [LinfBudget(eps=16 / 255)], steps=20, lr=0.01, generator=torch.Generator().manual_seed(0))
    assert res.steps_run == 20 and float(res.delta.abs().max()) <= 16 / 255 + 1e-6
    assert set(obj.history) == {"bucket-64", "bucket-96", "native"}
    # measured at the whole bucket-96 view, which the loop only ever saw in 48 px crops
    size = view_sizes(32, 40, buckets=buckets)[1][1]
    at_bucket = LatentTargetObjective(resize(x0, size), resize(target, size), [(enc, 1.0)])
    assert at_bucket.distances(resize(x0 + res.delta, size))[0]["relative_reduction"] > 0.02
    # a stochastic objective: the loop returns the last iterate, not the lowest single-view loss
    assert ViewSampledObjective.stochastic is True


def test_worst_weighting_visits_every_size_then_favours_the_least_moved() -> None:
    enc = tiny_random_tae(seed=0)
    x0 = to_nchw(_image(24, 32))
    buckets = (64, 96)
    sizes = [size for _, size in view_sizes(24, 32, buckets=buckets)]
    obj = ViewSampledObjective(x0, x0.flip(-1), [(enc, 1.0)], crop_side=32, seed=4, buckets=buckets,
                               weighting="worst")
    first = []
    for _ in range(len(sizes)):  # the first steps visit every view size once, whatever the draws
        v = obj.sample()
        first.append(v.size)
        obj.progress[v.size] = 0.5
    assert sorted(first) == sorted(sizes)
    lagging = sizes[1]
    obj.progress[lagging] = 0.1  # this view size has moved least
    draws = [obj.sample().size for _ in range(400)]
    share = draws.count(lagging) / len(draws)
    expect = WORST_SHARE + (1 - WORST_SHARE) / len(sizes)
    assert abs(share - expect) < 0.08  # half the steps to the worst, the rest uniform (no view abandoned)
    assert all(draws.count(s) > 0 for s in sizes)
    # the running progress is what the objective's own steps report
    obj2 = ViewSampledObjective(x0, x0.flip(-1), [(enc, 1.0)], crop_side=32, seed=4, buckets=buckets,
                                weighting="worst")
    x = (x0 + 0.03).clamp(0, 1)
    reported = []
    for _ in range(len(sizes)):
        _, prog = obj2(x)
        reported.append(prog)
    assert set(obj2.progress) == set(sizes)  # one step per view size, each recorded as its first figure
    assert sorted(obj2.progress.values()) == pytest.approx(sorted(reported))
    size = next(iter(obj2.progress))
    before = obj2.progress[size]
    again = SampledView("again", size, (0, 0, min(32, size[0]), min(32, size[1])))
    obj2.sample = lambda: again  # type: ignore[method-assign]
    _, prog = obj2(x)
    assert obj2.progress[size] == pytest.approx((1 - PROGRESS_EMA) * before + PROGRESS_EMA * prog)  # the running average
    # "uniform" draws exactly as before the field existed (the default path is unchanged)
    a = ViewSampledObjective(x0, x0, [(enc, 1.0)], crop_side=32, seed=4, buckets=buckets)
    b = ViewSampledObjective(x0, x0, [(enc, 1.0)], crop_side=32, seed=4, buckets=buckets, weighting="uniform")
    assert [a.sample() for _ in range(50)] == [b.sample() for _ in range(50)]
    with pytest.raises(ValueError, match="weighting"):
        ViewSampledObjective(x0, x0, [(enc, 1.0)], weighting="best")


def test_effort_view_weighting_reaches_the_objective_and_round_trips() -> None:
    enc = tiny_random_tae(seed=0)
    rgb = _image(24, 32)
    x0 = to_nchw(rgb)
    e = Effort(views="trainer", view_weighting="worst")
    assert Effort.from_json(e.to_json()) == e
    obj, _ = over_trainer_views(None, x0, x0, [(enc, 1.0)], rgb=rgb, effort=e, seed=0, transform=None)
    assert obj.weighting == "worst"
    old = {k: v for k, v in e.to_dict().items() if k != "view_weighting"}
    assert Effort.from_dict(old).view_weighting == "uniform"  # manifests from before the field
    with pytest.raises(ValueError, match="view_weighting must be 'uniform'"):
        Effort(views="trainer", view_weighting="max")
    with pytest.raises(ValueError, match="set views='trainer'"):
        Effort(views="work", view_weighting="worst")


def test_effort_views_are_validated_and_round_trip() -> None:
    e = Effort(views="trainer", view_crop=384)
    assert Effort.from_json(e.to_json()) == e
    with pytest.raises(ValueError, match="views must be 'work'"):
        Effort(views="buckets")
    with pytest.raises(ValueError, match="view_crop"):
        Effort(views="trainer", view_crop=16)
    t = Effort(views="trainer", view_crop=256, view_stride=256)
    assert Effort.from_json(t.to_json()) == t
    with pytest.raises(ValueError, match=r"view_stride must be an int in \[8, 1024\]"):
        Effort(view_stride=4)
    with pytest.raises(ValueError, match="view_stride"):
        Effort(view_stride=2048)
    # a stride above the crop acts as the crop's side (tiles without gaps), so shrinking view_crop keeps tiles
    assert Effort(views="trainer", view_crop=64, view_stride=256).view_stride == 256
    # manifests written before the field existed still load, as the single work view
    old = {k: v for k, v in Effort().to_dict().items() if k not in ("views", "view_crop", "view_stride")}
    assert Effort.from_dict(old).views in ("work", "trainer")
    assert Effort.from_dict(old).view_stride == 8  # crops anywhere on the latent grid, as before the field


def test_cloak_over_trainer_views_meets_the_budget_and_replays(models_dir) -> None:  # noqa: ANN001
    enc = tiny_random_tae(seed=1)
    rgb = _image(40, 56)
    cfg = CloakConfig(effort=Effort(steps=5, resolution=64, lr=0.01, views="trainer", view_crop=64),
                      target_style="mosaic", budget=Budget(lpips=0.05, linf=8 / 255), seed=3)
    r1 = cloak_array(rgb, cfg, encoders=[(enc, 1.0)], models_dir=models_dir)
    r2 = cloak_array(rgb, cfg, encoders=[(enc, 1.0)], models_dir=models_dir)
    np.testing.assert_array_equal(r1.image, r2.image)
    np.testing.assert_array_equal(r1.image, round_to_bits(r1.image, 8))
    assert r1.achieved["lpips_alex"] <= 0.05 + 1e-6 and r1.achieved["linf"] <= 8 / 255 + 1e-6
    assert float(np.abs(r1.image - rgb).max()) > 0
    assert r1.steps_run == 5 and r1.latent[0]["encoder"] == "tae-random"
