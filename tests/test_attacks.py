"""Attacks used by ``sfumato check``: real operations, registry, sampler, IMPRESS, best-of-N."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfumato.attacks import (
    ATTACKS,
    SUITES,
    AttackSpec,
    align_reference,
    apply_attack,
    best_of_n,
    gaussian_blur,
    gaussian_noise,
    is_usable,
    jpeg,
    median_filter,
    noisy_upscale,
    resize_roundtrip,
    resolve_attacks,
    sample_attack,
    tae_roundtrip,
)

H, W = 37, 53  # odd, non-square, not a multiple of the TAE's 8


def _image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """Smooth colour gradients plus texture: something with both chroma and detail."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 3.0) * np.cos(y / 4.0)], axis=-1)
    return np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


CHEAP = [n for n in ATTACKS if ATTACKS[n].kind not in ("impress", "tae")]


@pytest.mark.parametrize("name", CHEAP)
def test_classical_attack_contract(name: str) -> None:
    x = _image()
    y = apply_attack(name, x, seed=3)
    assert y.shape == x.shape and y.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert np.allclose(y * 255, np.round(y * 255), atol=1e-3)  # 8-bit output, as a saved file
    assert not np.array_equal(y, x)  # it did something
    assert np.array_equal(apply_attack(name, x, seed=3), y)  # deterministic for a seed
    if ATTACKS[name].random:
        assert not np.array_equal(apply_attack(name, x, seed=4), y)
    else:
        assert np.array_equal(apply_attack(name, x, seed=4), y)  # the seed is irrelevant


def test_tae_roundtrip_real_taef2(taef2) -> None:  # noqa: ANN001
    x = _image(1)
    y = apply_attack("tae-roundtrip", x, autoencoder=taef2)
    assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    assert np.array_equal(apply_attack("tae-roundtrip", x, autoencoder=taef2), y)
    assert 15 < _psnr(y, x) < 60  # a reconstruction: close, not identical
    # larger than the working size: the change is computed at the working size and upsampled
    big = _image(2, 40, 150)
    yb = tae_roundtrip(big, autoencoder=taef2, resolution=64)
    assert yb.shape == big.shape and 15 < _psnr(yb, big) < 60


def test_jpeg_chroma_subsampling_matters() -> None:
    rng = np.random.default_rng(0)
    # strong chroma detail at the pixel scale: 4:2:0 must lose more of it than 4:4:4
    x = np.clip(0.5 + 0.25 * rng.standard_normal((48, 64, 3)), 0, 1).astype(np.float32)
    a, b = jpeg(x, quality=90, subsampling="4:2:0"), jpeg(x, quality=90, subsampling="4:4:4")
    assert not np.array_equal(a, b)
    assert _psnr(b, x) > _psnr(a, x) + 1.0
    for q in (95, 85, 75, 60):  # lower quality, more loss
        assert _psnr(jpeg(x, quality=q, subsampling="4:4:4"), x) > 0
    assert _psnr(jpeg(x, quality=95, subsampling="4:4:4"), x) > _psnr(jpeg(x, quality=60, subsampling="4:4:4"), x)


def test_operations_do_what_they_say() -> None:
    grey = np.full((64, 64, 3), 0.5, np.float32)
    n = gaussian_noise(grey, sigma=0.05, seed=0)
    assert abs(float((n - 0.5).std()) - 0.05) < 0.005
    speck = grey.copy()
    speck[30, 30] = 1.0
    assert np.allclose(median_filter(speck, size=3), 128 / 255)  # an isolated outlier is removed
    x = _image()
    assert float(gaussian_blur(x, radius=2).std()) < float(gaussian_blur(x, radius=1).std()) < float(x.std())
    smooth = np.repeat(np.repeat(_image(4, 8, 8), 8, 0), 8, 1)
    smooth = gaussian_blur(smooth, radius=2)
    assert _psnr(resize_roundtrip(smooth, scale=0.75, method="lanczos"), smooth) > 35


def test_noisy_upscale_hook_receives_noisy_image_and_output_is_resized() -> None:
    x = _image()
    seen: list[np.ndarray] = []

    def fake_upscaler(a: np.ndarray) -> np.ndarray:  # stands in for a diffusion x4 upscaler
        seen.append(a)
        return np.repeat(np.repeat(a, 4, axis=0), 4, axis=1)

    y = noisy_upscale(x, sigma=0.1, seed=5, upscaler=fake_upscaler)
    assert len(seen) == 1 and seen[0].shape == x.shape
    assert np.array_equal(seen[0], gaussian_noise(x, sigma=0.1, seed=5))  # noise first, then the upscaler
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    # through the registry the hook replaces the classical stand-in
    z = apply_attack("noisy-upscale", x, seed=5, upscaler=fake_upscaler)
    assert not np.array_equal(z, apply_attack("noisy-upscale", x, seed=5))
    with pytest.raises(ValueError, match="upscaler must return"):
        noisy_upscale(x, seed=0, upscaler=lambda a: (a * 255).astype(np.uint8))


def test_validation_messages_teach() -> None:
    with pytest.raises(ValueError, match="divide uint8"):
        jpeg((_image() * 255).astype(np.uint8), quality=80)
    with pytest.raises(ValueError, match="subsampling"):
        jpeg(_image(), quality=80, subsampling="4:1:1")
    with pytest.raises(ValueError, match="scale must be in"):
        resize_roundtrip(_image(), scale=2.0)
    with pytest.raises(ValueError, match="odd integer"):
        median_filter(_image(), size=4)


def test_registry_suites_and_resolution() -> None:
    assert set(SUITES["default"]) <= set(ATTACKS) and set(SUITES["all"]) <= set(ATTACKS)
    assert "impress-paper" not in SUITES["all"] and "impress" in SUITES["all"]
    for q in (95, 85, 75, 60):
        assert {f"jpeg-q{q}-420", f"jpeg-q{q}-444"} <= set(SUITES["all"])
    assert [a.name for a in resolve_attacks("jpeg-q60-420, crop-90")] == ["jpeg-q60-420", "crop-90"]
    assert [a.name for a in resolve_attacks("default")] == list(SUITES["default"])
    with pytest.raises(ValueError, match="known"):
        resolve_attacks(["jpeg-q42"])
    with pytest.raises(ValueError, match="unique"):
        resolve_attacks(["crop-90", "crop-90"])
    spec = ATTACKS["noise-0.05"]
    assert spec.to_dict()["params"] == {"sigma": 0.05} and spec.random
    x = _image()
    assert align_reference("jpeg-q60-420", x) is x
    assert np.array_equal(align_reference("crop-90", x), apply_attack("crop-90", x))


def test_sample_attack_is_replayable() -> None:
    draws = [sample_attack(np.random.default_rng(11)) for _ in range(2)]
    assert draws[0] == draws[1]

    def sequence(seed: int) -> list:
        g = np.random.default_rng(seed)
        return [sample_attack(g) for _ in range(6)]

    assert sequence(7) == sequence(7) and sequence(7) != sequence(8)
    kinds = {sample_attack(np.random.default_rng(s))[0].kind for s in range(40)}
    assert len(kinds) >= 5
    x = _image()
    spec, seed = sample_attack(np.random.default_rng(3), kinds=["noise"])
    assert isinstance(spec, AttackSpec) and spec.kind == "noise"
    assert np.array_equal(apply_attack(spec, x, seed=seed), apply_attack(spec, x, seed=seed))
    with pytest.raises(ValueError, match="subset"):
        sample_attack(np.random.default_rng(0), kinds=["impress"])


def test_best_of_n_picks_the_strongest_usable_attack() -> None:
    outcomes = [
        {"name": "jpeg", "retained": 0.8, "usable": True},
        {"name": "blur-heavy", "retained": 0.05, "usable": False},  # removes most, but ruins the image
        {"name": "impress", "retained": 0.3, "usable": True},
        {"name": "noise", "retained": None, "usable": True},  # not measured: ignored
        {"name": "resize", "retained": 0.55, "usable": True},
    ]
    b = best_of_n(outcomes)
    assert b is not None and b.name == "impress" and b.retained == 0.3
    assert b.n_usable == 3 and b.n_total == 5 and set(b.considered) == {"jpeg", "impress", "resize"}
    assert best_of_n([{"name": "x", "retained": 0.1, "usable": False}]) is None
    assert best_of_n([]) is None
    assert is_usable(25.0, None) and not is_usable(24.9, None)
    assert is_usable(10.0, 0.3) and not is_usable(10.0, 0.31) and not is_usable(None, None)


def test_impress_reduces_autoencoder_inconsistency(taef2, corpus_dir) -> None:  # noqa: ANN001
    from sfumato.attacks.impress import consistency_loss, impress_purify
    from sfumato.io import load_image
    from sfumato.io.tensors import to_nchw

    path = sorted((corpus_dir / "art" / "claude_monet").iterdir())[0]
    x = load_image(path).rgb[:48, :48]
    rng = np.random.default_rng(0)
    prot = np.clip(x + rng.choice([-8 / 255, 8 / 255], size=x.shape), 0, 1).astype(np.float32)
    with torch.no_grad():
        before = float(consistency_loss(to_nchw(prot), taef2))
        clean = float(consistency_loss(to_nchw(x), taef2))
    assert before > clean  # the crude perturbation makes the image inconsistent under the autoencoder
    hist: list[dict] = []
    pur = impress_purify(prot, autoencoder=taef2, steps=6, init_noise=0.0, seed=0,
                         callback=lambda s, d: hist.append(d))
    with torch.no_grad():
        after = float(consistency_loss(to_nchw(pur), taef2))
    assert pur.shape == prot.shape and pur.dtype == np.float32
    assert after < 0.8 * before
    assert len(hist) == 6 and hist[-1]["lpips"] < 0.2  # stayed near the protected image
    # seeded starting noise: same seed same result, other seed different; larger images keep their size
    a = impress_purify(prot, autoencoder=taef2, steps=1, init_noise=0.05, seed=1)
    assert np.array_equal(a, impress_purify(prot, autoencoder=taef2, steps=1, init_noise=0.05, seed=1))
    assert not np.array_equal(a, impress_purify(prot, autoencoder=taef2, steps=1, init_noise=0.05, seed=2))
    wide = np.ascontiguousarray(np.concatenate([prot, prot[:, ::-1]], axis=1)[:, :90])
    out = impress_purify(wide, autoencoder=taef2, steps=1, resolution=64, seed=0)
    assert out.shape == wide.shape
    with pytest.raises(ValueError, match="no decoder"):
        from sfumato.encoders.tae import tiny_random_tae

        impress_purify(prot, autoencoder=tiny_random_tae(with_decoder=False), steps=1)


def test_one_table_real_op_and_stand_in_share_the_sampler_and_params() -> None:
    import inspect

    from sfumato.attacks.registry import SAMPLE_RANGES
    from sfumato.attacks.sampling import NumpyDraws, TorchDraws
    from sfumato.attacks.table import FAMILIES, stand_in_names
    from sfumato.encoders.tae import tiny_random_tae

    assert {a.kind for a in ATTACKS.values()} <= set(FAMILIES)  # the registry names table families
    assert set(SAMPLE_RANGES) <= {n for n, f in FAMILIES.items() if f.sample is not None}
    assert stand_in_names() == ("jpeg", "resize", "crop", "noise", "blur", "tae")
    enc = tiny_random_tae(seed=0)
    x = _image()
    xt = torch.from_numpy(x).permute(2, 0, 1)[None]
    for name in stand_in_names():
        fam = FAMILIES[name]
        assert fam.sample is not None and callable(fam.differentiable), name
        assert inspect.signature(fam.sample).return_annotation in (fam.params, fam.params.__name__), name
        ranges = {k: v for k, v in SAMPLE_RANGES.get(name, {}).items() if k != "modes"}
        for draw in (NumpyDraws(np.random.default_rng(1)), TorchDraws(torch.Generator().manual_seed(1))):
            params = fam.sample(draw, **ranges)  # one sampler, one params dataclass ...
            assert isinstance(params, fam.params), name
            ctx = {"autoencoder": enc} if fam.needs_autoencoder else {}
            if name == "crop":  # the real crop is centred
                params = type(params)(fraction=params.fraction)
            y = fam.apply_real(x, params, **ctx)  # ... consumed by the real operation ...
            assert y.shape == x.shape and y.dtype == np.float32, name
            sk = {"encoder": enc} if fam.needs_autoencoder else {}
            with torch.no_grad():
                yt = fam.differentiable(xt, params, **sk)  # ... and by its differentiable stand-in
            assert yt.shape == xt.shape, name
    # replaying a sampled real attack from its params gives the registry's result
    spec, seed = sample_attack(np.random.default_rng(3), kinds=["noise"])
    assert np.array_equal(apply_attack(spec, x, seed=seed),
                          FAMILIES["noise"].apply_real(x, FAMILIES["noise"].params(sigma=spec.kwargs["sigma"], seed=seed)))
    with pytest.raises(ValueError, match="centred"):
        FAMILIES["crop"].apply_real(x, FAMILIES["crop"].params(fraction=0.9, top=0.0))
