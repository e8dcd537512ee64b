"""Aligned anchors (sfumato.targets.anchor_alignment) on a tiny random encoder: an anchor that is a flipped or
scaled copy of a larger picture the source was cropped from is found with its flip and crop box; the report;
determinism; the poison's "aligned" anchor choice and its run over trainer views within the saved file's
budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfumato.config import Budget, Effort, PoisonConfig
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import resize, round_to_bits, to_nchw
from sfumato.metrics.saved import protected_quality
from sfumato.protections.poison import aim_at_anchor, poison_array
from sfumato.targets.anchor_alignment import AlignedAnchor, align_anchor, crop_box


def _picture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random picture (bicubic upsampling of coarse noise): structure at the latent's scale."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((1, 3, h // 8, w // 8)).astype(np.float32))
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return x[0].permute(1, 2, 0).numpy().copy()


@pytest.fixture(scope="module")
def enc():  # noqa: ANN201
    return tiny_random_tae(seed=0)


BIG = _picture(80, 104, seed=1)
SOURCE = BIG[8:72, 24:88].copy()  # 64 x 64, the largest square of BIG at scale 0.8 (64 / 80)


def test_a_flipped_copy_is_found_with_its_flip_and_box(enc) -> None:  # noqa: ANN001
    pool = [_picture(72, 96, seed=5), BIG[:, ::-1].copy(), _picture(96, 72, seed=7)]
    r = align_anchor(to_nchw(SOURCE), pool, [(enc, 1.0)], search_side=64)
    assert (r.index, r.flip, r.scale) == (1, True, 0.8)
    # the box is in the flipped anchor's pixels, where the crop is the source itself
    assert r.box == (8, 24, 64, 64)
    assert r.distance < 1e-5 and r.search_distance < 0.1  # a window of the whole anchor's latent: near, not exact
    assert r.unaligned_distance > 0.05 and r.unaligned_index in (0, 1, 2)
    assert tuple(r.image.shape) == (1, 3, 64, 64)
    assert torch.allclose(r.image, to_nchw(SOURCE), atol=1e-6)


def test_a_scaled_copy_is_found_unflipped(enc) -> None:  # noqa: ANN001
    big2 = resize(to_nchw(BIG), (160, 208))[0].permute(1, 2, 0).numpy().copy()  # the picture at twice the size
    pool = [_picture(88, 88, seed=11), _picture(64, 120, seed=12), big2]
    r = align_anchor(to_nchw(SOURCE), pool, [(enc, 1.0)], search_side=64)
    assert (r.index, r.flip, r.scale) == (2, False, 0.8)
    assert r.box == (16, 48, 128, 128)  # the source's box at twice the size
    assert r.distance < 0.5 * r.unaligned_distance


def test_report_is_json_ready_and_the_search_replays(enc) -> None:  # noqa: ANN001
    pool = [_picture(72, 96, seed=s) for s in range(20, 25)]
    x0 = to_nchw(_picture(48, 64, seed=3))
    a = align_anchor(x0, pool, [(enc, 1.0)], search_side=64)
    b = align_anchor(x0, pool, [(enc, 1.0)], search_side=64)
    assert isinstance(a, AlignedAnchor)
    rep = json.loads(json.dumps(a.report()))
    assert set(rep) == {"index", "flip", "box", "scale", "distance", "unaligned_index", "unaligned_distance",
                        "travel_saved", "search_distance", "search_size", "windows", "pool", "seconds"}
    assert rep["pool"] == 5 and rep["windows"] >= 10 and rep["search_size"] == [48, 64]
    # the unaligned centre crop is a candidate too, so the aligned anchor is never farther at the source's size
    assert rep["distance"] <= rep["unaligned_distance"] and rep["travel_saved"] >= 0
    assert {k: v for k, v in rep.items() if k != "seconds"} == {k: v for k, v in b.report().items() if k != "seconds"}
    assert torch.equal(a.image, b.image)
    top, left, h, w = a.box
    ha, wa = pool[a.index].shape[:2]
    assert 0 <= top and top + h <= ha and 0 <= left and left + w <= wa
    assert abs(h / w - 48 / 64) < 0.05  # the crop keeps the source's aspect ratio


def test_pool_cap_crop_box_and_plain_errors(enc) -> None:  # noqa: ANN001
    pool = [_picture(64, 64, seed=s) for s in range(30, 36)]
    r = align_anchor(to_nchw(_picture(64, 64, seed=3)), pool, [(enc, 1.0)], search_side=64, max_anchors=2)
    assert r.pool == 2 and r.index in (0, 1) and r.unaligned_index in (0, 1)
    assert crop_box((100, 200), (50, 50), 1.0) == (100.0, 100.0)
    assert crop_box((300, 100), (50, 100), 0.5) == (25.0, 50.0)
    with pytest.raises(ValueError, match="no anchor images"):
        align_anchor(to_nchw(SOURCE), [], [(enc, 1.0)])
    with pytest.raises(ValueError, match="scales must be"):
        align_anchor(to_nchw(SOURCE), pool, [(enc, 1.0)], scales=(1.0, 1.5))


def test_poison_config_accepts_aligned_and_aim_at_anchor_reports_it(enc) -> None:  # noqa: ANN001
    cfg = PoisonConfig(concept="dog", target="cat", anchor_choice="aligned")
    assert PoisonConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="'aligned', 'cheapest' or 'fixed'"):
        PoisonConfig(concept="dog", target="cat", anchor_choice="best")  # type: ignore[arg-type]
    pool = [_picture(72, 96, seed=5), BIG[:, ::-1].copy()]
    img, entry = aim_at_anchor(to_nchw(SOURCE), pool, [(enc, 1.0)], cfg, ["a.png", "b.png"])
    assert entry["choice"] == "aligned" and entry["index"] == 1 and entry["name"] == "b.png"
    assert entry["alignment"]["flip"] is True and entry["alignment"]["box"] == [8, 24, 64, 64]
    assert entry["alignment"]["unaligned_name"] in ("a.png", "b.png")
    assert entry["distances"]["b.png" + (" (aligned)" if entry["alignment"]["unaligned_index"] == 1 else "")] < 1e-4
    assert tuple(img.shape) == (1, 3, 64, 64)


def test_poison_over_trainer_views_meets_the_budget_on_the_saved_file(models_dir) -> None:  # noqa: ANN001
    enc = tiny_random_tae(seed=1)
    rgb = round_to_bits(_picture(40, 56, seed=2))
    anchors = [_picture(48, 48, seed=s) for s in (3, 4, 5)]
    cfg = PoisonConfig(concept="dog", target="cat", anchor_choice="aligned", seed=2,
                       effort=Effort(steps=5, resolution=64, lr=0.01, views="trainer", view_crop=64),
                       budget=Budget(lpips=0.05, linf=8 / 255))
    r1 = poison_array(rgb, cfg, anchors, encoders=[(enc, 1.0)], models_dir=models_dir)
    r2 = poison_array(rgb, cfg, anchors, encoders=[(enc, 1.0)], models_dir=models_dir)
    np.testing.assert_array_equal(r1.image, r2.image)
    np.testing.assert_array_equal(r1.image, round_to_bits(r1.image, 8))  # the 8-bit file as saved
    assert r1.achieved["lpips_alex"] <= 0.05 + 1e-6 and r1.achieved["linf"] <= 8 / 255 + 1e-6
    assert float(np.abs(r1.image - rgb).max()) > 0
    assert r1.steps_run == 5 and r1.latent[0]["encoder"] == "tae-random"
    assert r1.anchor["choice"] == "aligned" and "alignment" in r1.anchor


def test_lab_nightshade_baseline_aims_at_the_presets_aligned_anchor_within_budget(models_dir) -> None:  # noqa: ANN001
    """The lab's Nightshade baseline (``benchmarks/lab.py make-poison --setting nightshade``) aims at the anchor
    the poison preset's own choice picks on the same view, and its saved pixels meet that preset's budget."""
    from sfumato.lab.concept import nightshade_same_anchor

    enc = tiny_random_tae(seed=1)
    rgb = round_to_bits(_picture(40, 56, seed=2))
    anchors = [_picture(48, 48, seed=s) for s in (3, 4, 5)]
    cfg = PoisonConfig(concept="dog", target="cat", anchor_choice="aligned", seed=2,
                       effort=Effort(steps=5, resolution=64, lr=0.01, views="work"),
                       budget=Budget(lpips=0.05, linf=8 / 255))
    ns = nightshade_same_anchor(rgb, cfg, anchors, ["a.png", "b.png", "c.png"], models_dir=models_dir,
                                encoders=[(enc, 1.0)], steps=6)
    _, entry = aim_at_anchor(to_nchw(rgb), anchors, [(enc, 1.0)], cfg, ["a.png", "b.png", "c.png"])
    for e in (ns.anchor, entry):
        e["alignment"].pop("seconds")  # the search's own timing
    assert ns.anchor == entry and ns.anchor["choice"] == "aligned"
    assert ns.params["steps"] == 6 and ns.params["update"] == "sign" and ns.params["eps"] == pytest.approx(8 / 255)
    np.testing.assert_array_equal(ns.image, round_to_bits(ns.image, 8))
    q = protected_quality(ns.image, rgb, lpips_net="alex", models_dir=models_dir)
    assert q["lpips_alex"] <= 0.05 + 1e-6 and q["linf"] <= 8 / 255 + 1e-6
    assert float(np.abs(ns.image - rgb).max()) > 0
