"""Tests for sfumato.metrics: LPIPS v0.1 on the real published weights, PSNR/SSIM/L-inf against
scikit-image, and the flat-region perturbation energy."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sfumato.metrics.lpips import LPIPSReference, _load_weights, load_lpips
from sfumato.metrics.quality import flat_region_energy, linf, psnr, ssim

GOLDEN = {"squeeze": [0.1024, 0.0938], "alex": [0.1312, 0.1420]}


@pytest.fixture(scope="module")
def lp_alex(models_dir: Path):
    return load_lpips("alex", models_dir=models_dir)


@pytest.fixture(scope="module")
def lp_squeeze(models_dir: Path):
    return load_lpips("squeeze", models_dir=models_dir)


def _golden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(42)
    a = torch.rand(2, 3, 100, 100, generator=gen) * 2 - 1
    b = torch.rand(2, 3, 100, 100, generator=gen) * 2 - 1
    return a, b


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _real_image(corpus_dir: Path) -> torch.Tensor:
    path = sorted((corpus_dir / "art" / "paul_cezanne").iterdir())[0]
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).double().numpy()


# ------------------------------------------------------------------------------------------------ LPIPS
@pytest.mark.parametrize("net", ["squeeze", "alex"])
def test_lpips_golden_values(net: str, models_dir: Path) -> None:
    lp = load_lpips(net, models_dir=models_dir)
    a, b = _golden_inputs()
    want = torch.tensor(GOLDEN[net])
    with torch.no_grad():
        d11 = lp(a, b, normalize_input=False)
        d01 = lp((a + 1) / 2, (b + 1) / 2)
        dref = lp.forward_ref((a + 1) / 2, lp.reference((b + 1) / 2))
    assert d11.shape == (2,)
    torch.testing.assert_close(d11, want, atol=1e-3, rtol=0)
    torch.testing.assert_close(d01, want, atol=1e-3, rtol=0)
    torch.testing.assert_close(dref, d01, atol=1e-6, rtol=1e-5)
    assert lp.net == net
    assert set(lp.weights_sha256) == {f"lpips/{'alexnet' if net == 'alex' else 'squeezenet1_1'}_features.safetensors",
                                      f"lpips/{net}.pth"}
    assert all(len(s) == 64 for s in lp.weights_sha256.values())
    assert lp.describe()["id"] == f"lpips-{net}-v0.1"


def test_lpips_identity_symmetry_and_frozen(lp_alex, lp_squeeze) -> None:
    x, y = _rand(2, 3, 64, 80, seed=1), _rand(2, 3, 64, 80, seed=2)
    for lp in (lp_alex, lp_squeeze):
        assert not lp.training and not any(p.requires_grad for p in lp.parameters())
        lp.train()
        assert not lp.training
        with torch.no_grad():
            assert torch.equal(lp(x, x), torch.zeros(2))
            torch.testing.assert_close(lp(x, y), lp(y, x))
            assert (lp(x, y) > 0.01).all()


def test_lpips_gradient_flows_and_is_finite_on_flat_images(lp_alex, lp_squeeze) -> None:
    y = _rand(1, 3, 64, 64, seed=3)
    for lp in (lp_alex, lp_squeeze):
        for x0 in (_rand(1, 3, 64, 64, seed=4), torch.full((1, 3, 64, 64), 0.5), torch.zeros(1, 3, 64, 64)):
            x = x0.clone().requires_grad_(True)
            lp(x, y).sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()
            assert x.grad.abs().sum() > 0
            # the cached-reference path gives the same gradient
            x2 = x0.clone().requires_grad_(True)
            lp.forward_ref(x2, lp.reference(y)).sum().backward()
            torch.testing.assert_close(x2.grad, x.grad, atol=1e-6, rtol=1e-4)


def test_lpips_descends(lp_alex) -> None:
    """A few signed-gradient steps from a noisy copy reduce the distance (usable as a loss)."""
    y = _rand(1, 3, 64, 64, seed=5)
    x = (y + 0.2 * (_rand(1, 3, 64, 64, seed=6) - 0.5)).clamp(0, 1).requires_grad_(True)
    ref = lp_alex.reference(y)
    start = lp_alex.forward_ref(x, ref).item()
    for _ in range(5):
        loss = lp_alex.forward_ref(x, ref).sum()
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x -= 0.005 * g.sign()
    assert lp_alex.forward_ref(x, ref).item() < 0.8 * start


def test_lpips_odd_and_large_sizes(lp_alex, lp_squeeze) -> None:
    x, y = _rand(1, 3, 97, 131, seed=7), _rand(1, 3, 97, 131, seed=8)
    for lp in (lp_alex, lp_squeeze):
        with torch.no_grad():
            d = lp(x, y)
        assert d.shape == (1,) and torch.isfinite(d).all() and d.item() > 0
    big = _rand(1, 3, 768, 1024, seed=9)
    noisy = (big + 0.05 * (_rand(1, 3, 768, 1024, seed=10) - 0.5)).clamp(0, 1)
    t0 = time.perf_counter()
    with torch.no_grad():
        d = lp_alex(big, noisy)
    assert time.perf_counter() - t0 < 30.0  # ~1-2 s on 2 shared CPU cores
    assert 0 < d.item() < 1


def test_lpips_reference_broadcast_and_checks(lp_alex, lp_squeeze) -> None:
    x, y = _rand(3, 3, 48, 48, seed=11), _rand(1, 3, 48, 48, seed=12)
    ref = lp_alex.reference(y)
    assert isinstance(ref, LPIPSReference) and ref.shape == (1, 3, 48, 48)
    assert all(not f.requires_grad for f in ref.features)
    with torch.no_grad():
        torch.testing.assert_close(lp_alex.forward_ref(x, ref), lp_alex(x, y.expand(3, -1, -1, -1)))
    with pytest.raises(ValueError, match="reference image shape"):
        lp_alex.forward_ref(_rand(1, 3, 48, 64, seed=0), ref)
    with pytest.raises(ValueError, match="LPIPSReference made by this LPIPS-squeeze"):
        lp_squeeze.forward_ref(x, ref)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        lp_alex(torch.rand(1, 1, 48, 48), torch.rand(1, 1, 48, 48))
    with pytest.raises(ValueError, match="at least 31x31"):
        lp_alex(torch.rand(1, 3, 20, 48), torch.rand(1, 3, 20, 48))
    with pytest.raises(ValueError, match="same shape"):
        lp_alex(torch.rand(1, 3, 48, 48), torch.rand(2, 3, 48, 48))
    with pytest.raises(ValueError, match="float tensor"):
        lp_alex(torch.zeros(1, 3, 48, 48, dtype=torch.uint8), torch.zeros(1, 3, 48, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"lpips\.to"):
        lp_alex(x.double(), x.double())
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        load_lpips("vgg")


def test_lpips_load_is_cached_and_instances_are_independent(models_dir: Path) -> None:
    a = load_lpips("squeeze", models_dir=models_dir)
    hits = _load_weights.cache_info().hits
    b = load_lpips("squeeze", models_dir=models_dir)
    assert _load_weights.cache_info().hits == hits + 1
    assert a is not b
    assert a.features[0].weight.data_ptr() == b.features[0].weight.data_ptr()  # weights shared, not copied
    b64 = b.to(torch.float64)
    assert a.features[0].weight.dtype == torch.float32 and b64.features[0].weight.dtype == torch.float64
    x, y = _rand(1, 3, 40, 40, seed=13), _rand(1, 3, 40, 40, seed=14)
    with torch.no_grad():
        torch.testing.assert_close(b64(x.double(), y.double()).float(), a(x, y), atol=1e-5, rtol=1e-4)


def test_lpips_distance_map(lp_alex) -> None:
    x, y = _rand(2, 3, 70, 90, seed=15), _rand(2, 3, 70, 90, seed=16)
    with torch.no_grad():
        m = lp_alex.distance_map(x, y)
        d = lp_alex(x, y)
        assert m.shape == (2, 1, 70, 90) and (m >= 0).all()
        assert torch.equal(lp_alex.distance_map(x, x), torch.zeros(2, 1, 70, 90))
    torch.testing.assert_close(m.mean(dim=(1, 2, 3)), d, rtol=0.15, atol=0)
    # a local change shows up locally
    z = x.clone()
    z[:, :, 10:30, 10:30] = 1 - z[:, :, 10:30, 10:30]
    with torch.no_grad():
        mz = lp_alex.distance_map(x, z)
    assert mz[:, :, 10:30, 10:30].mean() > 5 * mz[:, :, 50:, 60:].mean()


def test_import_sfumato_metrics_is_light() -> None:
    code = ("import sys, sfumato, sfumato.metrics; assert 'torch' not in sys.modules, 'torch imported'; "
            "sfumato.metrics.psnr; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), amp=st.floats(0.0, 0.5))
def test_lpips_property_nonnegative(lp_squeeze, seed: int, amp: float) -> None:
    x = _rand(1, 3, 32, 32, seed=seed)
    d = amp * (_rand(1, 3, 32, 32, seed=seed + 1) * 2 - 1)
    with torch.no_grad():
        v = lp_squeeze(x, (x + d).clamp(0, 1))
        assert v.item() >= 0
        assert lp_squeeze(x, x + 0 * d).item() == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------------------------------------ quality
def test_ssim_matches_skimage_random() -> None:
    x = _rand(2, 3, 64, 75, seed=20)
    y = (x + 0.15 * (_rand(2, 3, 64, 75, seed=21) - 0.5)).clamp(0, 1)
    got = ssim(x, y)
    for i in range(2):
        want = structural_similarity(_hwc(x[i]), _hwc(y[i]), channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
        assert got[i].item() == pytest.approx(want, abs=1e-3)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)


def test_ssim_and_psnr_match_skimage_on_real_image(corpus_dir: Path) -> None:
    x = _real_image(corpus_dir)
    noisy = (x + 0.04 * (_rand(*x.shape, seed=22) * 2 - 1)).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    for y in (noisy, blurred):
        want_ssim = structural_similarity(_hwc(x[0]), _hwc(y[0]), channel_axis=2, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False, data_range=1.0)
        assert ssim(x, y).item() == pytest.approx(want_ssim, abs=1e-3)
        want_psnr = peak_signal_noise_ratio(_hwc(x[0]), _hwc(y[0]), data_range=1.0)
        assert psnr(x, y).item() == pytest.approx(want_psnr, abs=1e-3)
    assert ssim(x, noisy).item() < 0.99


def test_psnr_values_and_data_range() -> None:
    x = torch.full((2, 3, 16, 16), 0.5)
    y = x.clone()
    y[0] += 0.1
    p = psnr(x, y)
    assert p[0].item() == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(p[1].item())
    assert psnr(x * 255, y * 255, data_range=255.0)[0].item() == pytest.approx(20.0, abs=1e-3)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, y[:1])


def test_ssim_is_differentiable_and_validates() -> None:
    x = _rand(1, 3, 32, 32, seed=23)
    y = _rand(1, 3, 32, 32, seed=24).requires_grad_(True)
    ssim(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


def test_linf() -> None:
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0, 1, 2, 3] = -0.25
    y[1, 2, 7, 7] = 0.125
    torch.testing.assert_close(linf(x, y), torch.tensor([0.25, 0.125]))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        linf(x[0], y[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), amp=st.floats(0.0, 1.0))
def test_linf_property_bounded_by_perturbation(seed: int, amp: float) -> None:
    x = _rand(2, 3, 9, 7, seed=seed)
    d = amp * (_rand(2, 3, 9, 7, seed=seed + 1) * 2 - 1)
    got = linf(x, (x + d).clamp(0, 1))
    assert (got <= d.abs().amax(dim=(1, 2, 3)) + 1e-7).all()
    assert (got >= 0).all()


def test_flat_region_energy() -> None:
    flat = torch.full((1, 3, 96, 96), 0.4)
    assert flat_region_energy(flat, flat).item() == 0.0
    noise = 0.02 * torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(25))
    assert flat_region_energy(flat, flat + noise).item() == pytest.approx(0.02, rel=0.05)
    # a textured original has no flat region: the same noise does not count
    texture = _rand(1, 3, 96, 96, seed=26)
    assert flat_region_energy(texture, texture + noise).item() == 0.0
    # half flat, half textured: only the flat half is measured
    half = flat.clone()
    half[..., 48:] = texture[..., 48:]
    bump = torch.zeros_like(half)
    bump[..., 48:] = 0.3  # perturbation only on the textured half
    assert flat_region_energy(half, half + bump).item() == 0.0
    assert flat_region_energy(half, half + noise).item() == pytest.approx(0.02, rel=0.1)
    # the threshold is explicit: a huge threshold counts every pixel
    assert flat_region_energy(texture, texture + noise, threshold=10.0).item() == pytest.approx(0.02, rel=0.05)
    # usable as a loss, with a finite gradient even at zero perturbation
    p = flat.clone().requires_grad_(True)
    flat_region_energy(flat, p).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    with pytest.raises(ValueError, match="odd size"):
        flat_region_energy(flat, flat, window=4)


def test_flat_region_energy_on_flat_art(corpus_dir: Path) -> None:
    path = sorted((corpus_dir / "illustration" / "flat_vector").iterdir())[0]
    img = Image.open(path).convert("RGB")
    img.thumbnail((256, 256))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()
    noise = 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(27))
    e = flat_region_energy(x, x + noise).item()
    assert e == pytest.approx(0.03, rel=0.1)  # flat fills exist in vector art and see the full noise
