"""EOT and the attack table's differentiable stand-ins: shapes, gradients, replayable sampling, JPEG vs Pillow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sfumato.attacks.diff_jpeg import diff_jpeg, diff_round, jpeg_quant_tables
from sfumato.attacks.differentiable import (
    gaussian_blur,
    gaussian_noise,
    random_crop,
    resize_roundtrip,
    tae_roundtrip,
)
from sfumato.attacks.params import BlurParams, CropParams, JpegParams, NoiseParams, ResizeParams, TaeParams
from sfumato.optimise.eot import EOT_PRESETS, EOTConfig, make_transform

H, W = 37, 53  # odd, not a multiple of 8 or 16


def _image(seed: int = 0, h: int = H, w: int = W) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(xx * 20) * torch.cos(yy * 15)])[None]
    return (base + 0.05 * torch.randn(base.shape, generator=g)).clamp(0, 1)


CASES = [
    ("jpeg-420-ste", diff_jpeg, JpegParams(quality=75, subsampling="4:2:0", rounding="ste")),
    ("jpeg-444-cubic", diff_jpeg, JpegParams(quality=60, subsampling="4:4:4", rounding="cubic")),
    ("jpeg-420-cubic", diff_jpeg, JpegParams(quality=90, subsampling="4:2:0", rounding="cubic")),
    ("resize-bilinear", resize_roundtrip, ResizeParams(scale=0.5, mode="bilinear")),
    ("resize-bicubic", resize_roundtrip, ResizeParams(scale=0.73, mode="bicubic")),
    ("crop", random_crop, CropParams(fraction=0.9, top=0.2, left=0.9)),
    ("noise", gaussian_noise, NoiseParams(sigma=0.03, seed=7)),
    ("blur", gaussian_blur, BlurParams(sigma=1.3)),
]


@pytest.mark.parametrize(("name", "fn", "params"), CASES, ids=[c[0] for c in CASES])
def test_shape_range_and_gradient(name, fn, params) -> None:  # noqa: ANN001
    x = _image().requires_grad_(True)
    y = fn(x, params)
    v = y.detach()
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(v).all() and float(v.min()) >= 0 and float(v.max()) <= 1
    assert float((v - x.detach()).abs().mean()) > 1e-4, "the transform must change the image"
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad.abs().sum()) > 0
    assert float((x.grad != 0).float().mean()) > 0.5, "gradient should reach most pixels"


def test_tae_roundtrip_gradient_and_size() -> None:
    from sfumato.encoders.tae import tiny_random_tae

    enc = tiny_random_tae(seed=0)
    x = _image().requires_grad_(True)
    y = tae_roundtrip(x, TaeParams(), encoder=enc)
    v = y.detach()
    assert y.shape == x.shape and torch.isfinite(v).all() and 0 <= float(v.min()) <= float(v.max()) <= 1
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="decoder"):
        tae_roundtrip(x, TaeParams(), encoder=tiny_random_tae(with_decoder=False))


def test_tae_roundtrip_real_taef2(taef2) -> None:  # noqa: ANN001
    x = _image(h=64, w=72).requires_grad_(True)
    y = tae_roundtrip(x, TaeParams(), encoder=taef2)
    assert y.shape == x.shape
    psnr = float(10 * torch.log10(1 / (y.detach() - x.detach()).square().mean()))
    assert psnr > 18, f"a real TAEF2 round trip should roughly keep the image, got {psnr:.1f} dB"
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


def test_diff_round_modes() -> None:
    v = torch.tensor([-1.6, -0.4, 0.2, 0.5, 1.3, 2.7], requires_grad=True)
    ste = diff_round(v, "ste")
    assert torch.equal(ste.detach(), torch.round(v.detach()))
    ste.sum().backward()
    assert torch.equal(v.grad, torch.ones_like(v))
    v.grad = None
    cub = diff_round(v, "cubic")
    r = torch.round(v.detach())
    assert torch.allclose(cub.detach(), r + (v.detach() - r) ** 3)
    cub.sum().backward()
    assert torch.allclose(v.grad, 3 * (v.detach() - r) ** 2)
    with pytest.raises(ValueError, match="rounding"):
        diff_round(v, "floor")


def test_quant_tables_follow_libjpeg_scaling() -> None:
    l50, c50 = jpeg_quant_tables(50)
    assert l50[:8] == [16, 11, 10, 16, 24, 40, 51, 61] and c50[:4] == [17, 18, 24, 47]
    l75, _ = jpeg_quant_tables(75)  # scale 50: (16 * 50 + 50) // 100 = 8
    assert l75[:3] == [8, 6, 5]
    assert jpeg_quant_tables(100) == ([1] * 64, [1] * 64)
    l10, _ = jpeg_quant_tables(10)  # scale 500, capped at 255 for baseline
    assert l10[0] == 80 and max(l10) == 255
    with pytest.raises(ValueError, match="1..100"):
        jpeg_quant_tables(0)


def _real_image(corpus_dir, rel: str, width: int) -> np.ndarray:  # noqa: ANN001
    from PIL import Image

    with Image.open(corpus_dir / rel) as im:
        im = im.convert("RGB")
        im = im.resize((width, round(width * im.height / im.width)), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a.astype(np.float64) - b) ** 2)), 1e-12)))


@pytest.mark.parametrize(("rel", "width"), [("photos/dog/dog6_00.jpg", 200),
                                           ("illustration/flat_vector/gopher_egon_ballet.png", 179)])
def test_diff_jpeg_matches_pillow(corpus_dir, rel: str, width: int) -> None:  # noqa: ANN001
    from sfumato.attacks.real import jpeg as pillow_jpeg

    x = _real_image(corpus_dir, rel, width)
    xt = torch.from_numpy(x).permute(2, 0, 1)[None]
    # Measured (scripts/validate_diff_jpeg.py and these sizes): STE 48-53 dB, cubic 46-52 dB to Pillow,
    # while Pillow itself moves the image by 31-44 dB.
    for q, sub in ((95, "4:4:4"), (75, "4:2:0"), (60, "4:2:0")):
        ref = pillow_jpeg(x, quality=q, subsampling=sub)
        codec = _psnr(x, ref)
        for rounding, floor in (("ste", 44.0), ("cubic", 42.0)):
            with torch.no_grad():
                ours = diff_jpeg(xt, JpegParams(quality=q, subsampling=sub, rounding=rounding))[0].permute(1, 2, 0).numpy()
            d = _psnr(ours, ref)
            assert d > floor, f"{rel} q{q} {sub} {rounding}: {d:.1f} dB to Pillow (codec change {codec:.1f} dB)"
            assert d > codec + 6, f"{rel} q{q} {sub} {rounding}: stand-in not much closer to Pillow than x is"


def test_sampling_is_replayable() -> None:
    x = _image()
    cfg = dataclasses.replace(EOT_PRESETS["default"], p_identity=0.1)
    outs = []
    for _ in range(2):
        eot = make_transform(cfg)
        g = torch.Generator().manual_seed(123)
        draws, ys = [], []
        for _ in range(12):
            ys.append(eot(x, g))
            draws.append(eot.last)
        outs.append((draws, ys))
    (d1, y1), (d2, y2) = outs
    assert d1 == d2
    assert all(torch.equal(a, b) for a, b in zip(y1, y2, strict=True))
    assert len({name for name, _ in d1}) >= 3, "a dozen draws should cover several transforms"
    other = make_transform(cfg)
    g = torch.Generator().manual_seed(124)
    assert [other.sample(g) for _ in range(12)] != d1
    # Params alone replay the output (pure functions).
    name, params = d1[0]
    assert torch.equal(make_transform(cfg).apply(x, name, params), y1[0])


def test_sampling_frequencies_and_ranges() -> None:
    cfg = EOTConfig(p_identity=0.25, jpeg_weight=3.0, resize_weight=1.0, crop_weight=0.0, noise_weight=0.0,
                    blur_weight=0.0, jpeg_quality=(70, 72), resize_scale=(0.6, 0.7))
    eot = make_transform(cfg)
    g = torch.Generator().manual_seed(0)
    counts = {"identity": 0, "jpeg": 0, "resize": 0}
    for _ in range(2000):
        name, params = eot.sample(g)
        counts[name] += 1
        if name == "jpeg":
            assert 70 <= params.quality <= 72 and params.subsampling in ("4:2:0", "4:4:4")
        if name == "resize":
            assert 0.6 <= params.scale <= 0.7
    assert abs(counts["identity"] / 2000 - 0.25) < 0.04
    assert abs(counts["jpeg"] / 2000 - 0.5625) < 0.04
    assert abs(counts["resize"] / 2000 - 0.1875) < 0.04


def test_identity_when_p_identity_is_one() -> None:
    x = _image()
    g = torch.Generator().manual_seed(0)
    for cfg in (EOT_PRESETS["none"], EOTConfig(p_identity=1.0)):
        eot = make_transform(cfg)
        for _ in range(5):
            assert torch.equal(eot(x, g), x)
            assert eot.last == ("identity", None)
    assert torch.equal(make_transform("none")(x, g), x)


def test_config_json_round_trip_and_validation() -> None:
    for name, cfg in EOT_PRESETS.items():
        back = EOTConfig.from_json(cfg.to_json())
        assert back == cfg, name
    cfg = EOTConfig(jpeg_quality=(50, 90), jpeg_subsampling=("4:2:0",), jpeg_rounding="cubic", tae_weight=0.2)
    assert EOTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="jpeg_quality"):
        EOTConfig(jpeg_quality=(90, 50))
    with pytest.raises(ValueError, match="p_identity"):
        EOTConfig(p_identity=1.5)
    with pytest.raises(ValueError, match="every transform weight is 0"):
        EOTConfig(jpeg_weight=0, resize_weight=0, crop_weight=0, noise_weight=0, blur_weight=0)
    with pytest.raises(ValueError, match="subsampling"):
        EOTConfig(jpeg_subsampling=("4:2:2",))
    with pytest.raises(ValueError, match="unknown EOTConfig field"):
        EOTConfig.from_dict({"jpeg_wieght": 1.0})
    with pytest.raises(ValueError, match="encoder="):
        make_transform("strong")
    with pytest.raises(ValueError, match="preset"):
        make_transform("heavy")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        make_transform("default")(torch.rand(3, 16, 16), torch.Generator().manual_seed(0))


def test_strong_preset_with_encoder_runs_in_the_loop() -> None:
    from sfumato.encoders.tae import tiny_random_tae
    from sfumato.optimise.loop import optimise

    enc = tiny_random_tae(seed=1)
    eot = make_transform("strong", encoder=enc)
    x0 = _image(h=32, w=40)
    target = torch.full_like(x0, 0.5)

    def objective(x: torch.Tensor, coarse: bool = False) -> tuple[torch.Tensor, None]:
        return (x - target).square().mean(), None

    res = optimise(x0, objective, [], steps=6, lr=0.01, generator=torch.Generator().manual_seed(0), transform=eot)
    assert res.steps_run == 6 and res.delta.shape == x0.shape and torch.isfinite(res.delta).all()
    assert float(res.delta.abs().max()) > 0


def test_eot_transforms_are_the_attack_tables_stand_ins() -> None:
    import inspect

    from sfumato.attacks.table import FAMILIES, stand_in_names
    from sfumato.optimise.eot import EOT, TRANSFORMS, sampler_ranges

    assert TRANSFORMS == stand_in_names()
    cfg = EOT_PRESETS["strong"]
    for name in TRANSFORMS:
        fam = FAMILIES[name]
        assert fam.differentiable is not None and fam.sample is not None
        # every <name>_<range> field of the config is a keyword of the family's one sampler
        assert set(sampler_ranges(cfg, name)) <= set(inspect.signature(fam.sample).parameters), name
    eot = EOT(dataclasses.replace(cfg, p_identity=0.0))  # sampling only: no encoder needed
    g = torch.Generator().manual_seed(5)
    for _ in range(30):
        name, params = eot.sample(g)
        assert isinstance(params, FAMILIES[name].params)
