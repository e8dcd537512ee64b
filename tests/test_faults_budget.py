"""The budget is a contract (issue 19), on tiny random models (fast tier: no ``../shared``).

* Property test: random small images, budgets and output formats (PNG, TIFF, WebP, JPEG) through
  :func:`sfumato.api.cloak_file`. Every written file, re-read from disk, has LPIPS ≤ p · (1 − safety
  margin), measured with the LPIPS the product uses here, and L∞ ≤ cap; every refused image raises a typed
  one-line error and leaves nothing on disk (no output, no manifest, no temp file, original unchanged).
* Lossy codecs: a JPEG whose codec error alone breaks the L∞ cap is brought back under it, not written
  over it.
* Not protected: a scale-0 calibration or a negligible perturbation is an error, never a done file.
* Greyscale art is optimised in grey: its perturbation is grey and moves the latent about as far as colour.
* Metrics in bounded memory: tiled LPIPS and banded SSIM equal the whole-image figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import sfumato.io as sio
import sfumato.metrics.lpips as lpm
from sfumato import api
from sfumato.api import NotProtected, OverBudget, cloak_file
from sfumato.config import Budget, CloakConfig
from sfumato.encoders import cache
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import to_nchw
from sfumato.optimise.calibrate import LPIPS_SAFETY_MARGIN, lpips_ceiling

FORMATS = ("PNG", "TIFF", "WEBP", "JPEG")
_LPIPS: dict[str, lpm.LPIPS] = {}


def _tiny_lpips(net: str = "alex", *, models_dir=None) -> lpm.LPIPS:  # noqa: ANN001
    if net not in _LPIPS:
        _LPIPS[net] = lpm.tiny_random_lpips(net, seed=3)
    return _LPIPS[net]


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    """Tensors here are tiny: one thread is faster than two that synchronise on every small conv."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The product with tiny random models: LPIPS (alex and squeeze, real architecture, random weights) and
    the TAEF2 encoder; temp files go to a folder of the test's own, which the test checks for leftovers."""
    monkeypatch.setattr(lpm, "load_lpips", _tiny_lpips)
    monkeypatch.setitem(cache._ENCODER_CACHE, ("taef2", "None"), tiny_random_tae(seed=1))
    tmp = tmp_path / "systemp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _config(lpips: float = 0.05, linf: float = 24 / 255, steps: int = 4) -> CloakConfig:
    cfg = CloakConfig.preset(quality="fast")
    return dataclasses.replace(cfg, budget=Budget(lpips=lpips, linf=linf), target_renderer="latent-wct", target_style="mosaic",
                               effort=dataclasses.replace(cfg.effort, steps=steps, resolution=64))


def _art(path: Path, h: int, w: int, seed: int, *, grey: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(3, 12, size=3)
    a = np.stack([0.5 + 0.35 * np.sin(f[0] * xx + f[1] * yy), 0.2 + 0.6 * xx, 0.5 + 0.3 * np.cos(f[2] * yy)], -1)
    a = np.clip(a + 0.04 * rng.standard_normal(a.shape), 0, 1)
    im = Image.fromarray((a * 255).round().astype(np.uint8))
    (im.convert("L") if grey else im).save(path)
    return path


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _assert_contract(out: Path, src: Path, budget: Budget) -> None:
    """The written file, re-read, keeps the budget with the safety margin (the product's LPIPS, forward pass)."""
    saved, orig = sio.load_image(out).rgb, sio.load_image(src).rgb
    with torch.no_grad():
        lp = float(_tiny_lpips(budget.lpips_net)(to_nchw(saved), to_nchw(orig))[0])
    assert lp <= budget.lpips - LPIPS_SAFETY_MARGIN * budget.lpips + 1e-7, (out.name, lp, budget)
    assert float(np.abs(saved - orig).max()) <= budget.linf + 1e-6, (out.name, budget)


def _assert_refused(err: Exception, out_dir: Path, systemp: Path) -> None:
    msg = str(err)
    assert isinstance(err, ValueError) and "\n" not in msg and "nothing written" in msg
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(out_dir.iterdir())
    assert not list(systemp.glob("sfumato-*"))


# ------------------------------------------------------------------------------------------ property test
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_written_file_keeps_the_budget_and_every_refusal_leaves_nothing(fmt: str, tiny: Path,
                                                                            tmp_path: Path) -> None:
    outcomes: list[str] = []

    @settings(max_examples=6, deadline=None, derandomize=True, database=None)
    @given(h=st.integers(40, 64), w=st.integers(40, 64), seed=st.integers(0, 10_000),
           lpips=st.sampled_from([0.01, 0.03, 0.05, 0.08]), linf=st.sampled_from([4, 8, 16, 24]),
           grey=st.booleans())
    def case(h: int, w: int, seed: int, lpips: float, linf: int, grey: bool) -> None:
        case_dir = tmp_path / f"{fmt}-{len(outcomes)}"
        case_dir.mkdir()
        src = _art(case_dir / "art.png", h, w, seed, grey=grey and fmt != "WEBP")
        before = _sha(src)
        cfg = _config(lpips, linf / 255)
        out_dir = case_dir / "out"
        try:
            r = cloak_file(src, out_dir, cfg, output_format=fmt)
        except (OverBudget, NotProtected) as e:
            _assert_refused(e, out_dir, tiny)
            outcomes.append(type(e).__name__)
        else:
            _assert_contract(r.output, src, cfg.budget)
            m = r.manifest
            assert m["within_budget"] is True and m["output"]["format"] == fmt and r.manifest_path.exists()
            assert m["budget"]["lpips_ceiling"] == pytest.approx(lpips_ceiling(lpips))
            assert sorted(p.name for p in out_dir.iterdir()) == sorted([r.output.name, r.manifest_path.name])
            assert not list(tiny.glob("sfumato-*"))
            outcomes.append("written")
        assert _sha(src) == before  # the original is never modified

    case()
    assert len(outcomes) == 6 and outcomes.count("written") >= 3, outcomes


# ------------------------------------------------------------------------------------------ the codec and the cap
def _fake_compute(pixels_of):  # noqa: ANN001, ANN202
    """A ``compute`` for :func:`sfumato.api._process_file` that returns fixed pixels (no optimisation)."""
    def compute(img, quantise, cfg):  # noqa: ANN001, ANN202
        return SimpleNamespace(image=pixels_of(img.rgb), scale=1.0, steps_run=0, latent=[], timing_s={})
    return compute


def _process(src: Path, out_dir: Path, compute, cfg: CloakConfig, fmt: str, **kw) -> api.FileResult:  # noqa: ANN001, ANN003
    return api._process_file(src, out_dir, mode="cloak", config=cfg, compute=compute, output_format=fmt,
                             jpeg_quality=98, overwrite=kw.pop("overwrite", False), ai_view=False,
                             models_dir=None, xmp=None, rel_stem=None, **kw)


def _at_cap(cap: float, seed: int = 0):  # noqa: ANN202
    """Pixels moved by exactly ±cap everywhere it fits: a JPEG of them is over the cap by the codec's error."""
    def f(rgb: np.ndarray) -> np.ndarray:
        s = np.random.default_rng(seed).choice([-1.0, 1.0], size=rgb.shape)
        return np.clip(np.round((rgb + s * cap) * 255) / 255, 0, 1).astype(np.float32)
    return f


def test_jpeg_codec_error_is_pushed_back_under_the_linf_cap(tiny: Path, tmp_path: Path) -> None:
    src = _art(tmp_path / "a.png", 56, 64, 1)
    cfg = _config(lpips=0.5, linf=8 / 255)
    # What the issue saw: written naively, the codec alone takes the file past the cap.
    img = sio.load_image(src)
    naive = sio.load_image(sio.save_image(img, _at_cap(8 / 255)(img.rgb), tmp_path / "naive.jpg", format="JPEG",
                                          jpeg_quality=98)).rgb
    assert np.abs(naive - img.rgb).max() > 8 / 255 + 1e-6
    r = _process(src, tmp_path / "o", _fake_compute(_at_cap(8 / 255)), cfg, "JPEG")
    _assert_contract(r.output, src, cfg.budget)
    assert r.manifest["optimisation"]["save_linf_cap"] < 8 / 255 and r.manifest["within_budget"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_over_budget_is_refused_with_nothing_written_and_old_output_kept(fmt: str, tiny: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = _art(tmp_path / "a.png", 48, 48, 2)
    cfg = _config(lpips=0.04, linf=24 / 255)
    out_dir = tmp_path / "o"
    monkeypatch.setattr(api, "LOSSY_TRIES", 0)
    with pytest.raises(OverBudget) as e:
        _process(src, out_dir, _fake_compute(_at_cap(24 / 255)), cfg, fmt)
    _assert_refused(e.value, out_dir, tiny)
    assert "LPIPS" in str(e.value) and "--lpips" in str(e.value)
    # --overwrite over an earlier output: the refused image leaves the earlier files as they were
    out_dir.mkdir(exist_ok=True)
    old = out_dir / f"a{sio.output_suffix(fmt)}"
    old.write_bytes(b"earlier output")
    with pytest.raises(OverBudget):
        _process(src, out_dir, _fake_compute(_at_cap(24 / 255)), cfg, fmt, overwrite=True)
    assert old.read_bytes() == b"earlier output" and sorted(p.name for p in out_dir.iterdir()) == [old.name]
    # with retries the perturbation is shrunk until the file keeps the contract
    monkeypatch.setattr(api, "LOSSY_TRIES", 30)
    r = _process(src, tmp_path / "ok", _fake_compute(_at_cap(24 / 255)), cfg, fmt)
    _assert_contract(r.output, src, cfg.budget)
    assert r.manifest["optimisation"]["save_shrink"] < 1


# ------------------------------------------------------------------------------------------ not protected
def test_scale_zero_is_not_protected(tiny: Path, tmp_path: Path) -> None:
    src = _art(tmp_path / "a.png", 48, 48, 3)

    def compute(img, quantise, cfg):  # noqa: ANN001, ANN202
        return SimpleNamespace(image=img.rgb.copy(), scale=0.0, steps_run=3, latent=[], timing_s={})

    with pytest.raises(NotProtected, match=r"^not protected: no perturbation fits .*nothing written") as e:
        _process(src, tmp_path / "o", compute, _config(), "PNG")
    _assert_refused(e.value, tmp_path / "o", tiny)


def test_negligible_perturbation_is_not_protected(tiny: Path, tmp_path: Path) -> None:
    src = _art(tmp_path / "a.png", 48, 48, 4)

    def one_pixel(rgb: np.ndarray) -> np.ndarray:
        out = rgb.copy()
        out[10, 10, 0] = min(1.0, out[10, 10, 0] + 1 / 255)
        return out

    with pytest.raises(NotProtected, match="negligible") as e:
        _process(src, tmp_path / "o", _fake_compute(one_pixel), _config(), "PNG")
    _assert_refused(e.value, tmp_path / "o", tiny)


def test_budget_nothing_fits_is_not_protected_end_to_end(tiny: Path, tmp_path: Path) -> None:
    """A budget no perturbation fits: calibration returns scale 0, and the file API refuses the image."""
    src = _art(tmp_path / "a.png", 48, 48, 5)
    with pytest.raises(NotProtected) as e:
        cloak_file(src, tmp_path / "o", _config(lpips=1e-7))
    _assert_refused(e.value, tmp_path / "o", tiny)
    assert "not protected" in str(e.value)


# ------------------------------------------------------------------------------------------ greyscale
def test_grey_delta_stays_grey_in_the_loop() -> None:
    from sfumato.optimise.budgets import LinfBudget
    from sfumato.optimise.loop import optimise
    from sfumato.optimise.objectives import LatentTargetObjective

    enc = tiny_random_tae(seed=2, with_decoder=False)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 32, 40, generator=g).expand(1, 3, 32, 40).contiguous()
    obj = LatentTargetObjective(x0, torch.rand(1, 3, 32, 40, generator=g), [(enc, 1.0)])
    for scale in (None, (16, 20)):
        res = optimise(x0, obj, [LinfBudget(eps=8 / 255)], steps=4, lr=0.01, generator=torch.Generator().manual_seed(0),
                       init_noise=4 / 255, grey=True, param_size=scale)
        d = res.delta
        assert d.shape == x0.shape and torch.equal(d[:, 0], d[:, 1]) and torch.equal(d[:, 0], d[:, 2])
        assert float(d.abs().max()) <= 8 / 255 + 1e-6 and float(d.abs().max()) > 0
    with pytest.raises(ValueError, match="greyscale"):
        optimise(torch.rand(1, 3, 8, 8), obj, [], steps=1, lr=0.01, generator=g, grey=True)


def test_grey_art_is_optimised_in_grey_and_protected_like_colour(tiny: Path) -> None:
    """The same image in colour and in grey, same budget and steps: the grey one's perturbation is grey,
    its latent shift is of the order of the colour one's, and larger than the old way's (a colour δ whose
    chroma the grey file drops: calibrated through a grey quantiser; the issue measured 0.7 % against
    24.9 % with TAEF2). On this tiny random encoder colour is worth more than grey, so the ratio is smaller
    than with TAEF2 and the old way is not as bad: the bounds below leave room for another CPU's floats."""
    from sfumato.optimise.objectives import LatentTargetObjective
    from sfumato.optimise.perturb import perturb_toward, work_view

    enc = tiny_random_tae(seed=1, with_decoder=False)
    budget = Budget(lpips=0.05, linf=8 / 255)
    effort = dataclasses.replace(_config().effort, steps=25, resolution=64, lr=0.01)
    rng = np.random.default_rng(7)
    h, w = 48, 48
    yy, xx = np.mgrid[0:h, 0:w] / 48
    colour = np.clip(np.stack([0.5 + 0.3 * np.sin(9 * xx), 0.3 + 0.4 * yy, 0.6 - 0.3 * xx], -1)
                     + 0.03 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)
    grey = np.repeat(colour.mean(axis=2, keepdims=True), 3, axis=2).astype(np.float32)
    target = np.random.default_rng(8).random((h, w, 3)).astype(np.float32)

    def grey_file(a: np.ndarray) -> np.ndarray:  # what a greyscale file stores: channel mean, 8 bits
        return np.repeat(np.round(a.mean(axis=2, keepdims=True) * 255) / 255, 3, axis=2).astype(np.float32)

    def shift(rgb: np.ndarray, **kw) -> tuple[np.ndarray, float, float]:  # noqa: ANN003
        x0 = work_view(rgb, 64)
        obj = LatentTargetObjective(x0, to_nchw(target), [(enc, 1.0)])
        res = perturb_toward(rgb, x0, obj, budget=budget, effort=effort, alpha=30.0, seed=0, **kw)
        return res.image, res.latent[0]["relative_reduction"], res.achieved["lpips_alex"]

    out_c, red_colour, _ = shift(colour)
    out_g, red_grey, lp_grey = shift(grey)
    _, red_old, lp_old = shift(grey, grey=False, quantise=grey_file)
    assert np.array_equal(out_g[..., 0], out_g[..., 1]) and np.array_equal(out_g[..., 0], out_g[..., 2])
    assert not np.array_equal(out_c[..., 0], out_c[..., 1])  # colour art keeps a colour perturbation
    assert lp_grey <= lpips_ceiling(0.05) and lp_old <= lpips_ceiling(0.05)  # the same budget spent
    assert red_colour > 0.1 and red_grey >= 0.15 * red_colour, (red_grey, red_colour)
    assert red_grey > 1.05 * red_old, (red_grey, red_old)


def test_grey_file_gets_a_grey_output_within_budget(tiny: Path, tmp_path: Path) -> None:
    src = _art(tmp_path / "g.png", 48, 56, 9, grey=True)
    cfg = _config(steps=6)
    r = cloak_file(src, tmp_path / "o", cfg)
    assert Image.open(r.output).mode == "L"
    _assert_contract(r.output, src, cfg.budget)
    assert r.manifest["achieved"]["lpips_alex"] >= api.NEGLIGIBLE_LPIPS_SHARE * cfg.budget.lpips


# ------------------------------------------------------------------------------------------ metrics memory
@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_tiled_lpips_equals_whole_image_lpips(net: str) -> None:
    lp = lpm.tiny_random_lpips(net, seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 200, 261, generator=g)
    y = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        whole = float(lp(x, y)[0])
    assert float(lp.measure(x, y, tile=96, halo=112)[0]) == pytest.approx(whole, rel=1e-5)  # 3 x 3 tiles
    with pytest.raises(ValueError, match="multiples of 16"):
        lp.measure(x, y, tile=100)


def test_banded_ssim_equals_whole_image_ssim() -> None:
    from sfumato.metrics.quality import ssim

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 137, 90, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    whole = ssim(x, y, band_rows=10**6)
    for rows in (1, 7, 64):
        assert torch.allclose(ssim(x, y, band_rows=rows), whole, atol=1e-6)
