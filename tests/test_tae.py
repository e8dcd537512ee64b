"""Tests for the Tiny AutoEncoders on the real shared weights (TAEF2, TAESana) and the random stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sfumato import models
from sfumato.encoders import Encoder, load_encoder
from sfumato.encoders.tae import TAEEncoder, load_tae, tiny_random_tae

PHOTO = "photos/dog/dog_00.jpg"  # 780x780 Unsplash photo


def _load_rgb(path: Path, size: tuple[int, int]) -> torch.Tensor:
    with Image.open(path) as im:
        im = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        a = np.array(im, dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.fixture(scope="module")
def photo512(corpus_dir: Path) -> torch.Tensor:
    return _load_rgb(corpus_dir / PHOTO, (512, 512))


@pytest.fixture(scope="module")
def taesana(models_dir: Path) -> Encoder:
    return load_encoder("taesana", models_dir=models_dir)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a, b)))


# ---------------------------------------------------------------------------------------- real weights


def test_taef2_round_trip_on_a_real_photo(taef2: Encoder, photo512: torch.Tensor) -> None:
    assert isinstance(taef2, TAEEncoder) and taef2.id == "taef2" and taef2.has_decoder
    assert taef2.latent_channels == 32 and taef2.downscale == 8
    with torch.no_grad():
        z = taef2.encode(photo512)
        y = taef2.decode(z)
    assert z.shape == (1, 32, 64, 64) and torch.isfinite(z).all()
    assert y.shape == photo512.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    psnr = _psnr(y, photo512)
    print(f"TAEF2 round trip PSNR on {PHOTO} at 512x512: {psnr:.2f} dB")  # observed: 36.04 dB
    assert 29.0 < psnr < 40.0  # a real reconstruction, not an identity map


def test_taesana_latent_shape_and_no_decoder(taesana: Encoder, photo512: torch.Tensor) -> None:
    assert taesana.id == "taesana" and taesana.downscale == 32 and not taesana.has_decoder
    with torch.no_grad():
        z = taesana.encode(photo512)
    assert z.shape == (1, 32, 16, 16) and torch.isfinite(z).all()
    assert float(z.std()) > 0.1  # the trained encoder responds to the image
    with pytest.raises(NotImplementedError, match="no decoder"):
        taesana.decode(z)


def test_real_models_are_frozen_and_stay_in_eval(taef2: Encoder, taesana: Encoder) -> None:
    for m in (taef2, taesana):
        assert not any(p.requires_grad for p in m.parameters())
        assert all(p.dtype == torch.float32 for p in m.parameters())
        m.train()
        assert not any(mod.training for mod in m.modules())


def test_gradient_reaches_the_input(taef2: Encoder) -> None:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    z = taef2.encode(x)
    loss = z.square().mean() + taef2.decode(z).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in taef2.parameters())


def test_odd_sizes_are_replicate_padded(taef2: Encoder, taesana: Encoder, corpus_dir: Path) -> None:
    x = _load_rgb(corpus_dir / PHOTO, (45, 67))  # PIL size is (W, H): tensor is 67x45
    assert x.shape == (1, 3, 67, 45)
    with torch.no_grad():
        z = taef2.encode(x)
        assert z.shape == (1, 32, 9, 6)
        torch.testing.assert_close(z, taef2.encode(F.pad(x, (0, 3, 0, 5), mode="replicate")))
        assert taef2.decode(z).shape == (1, 3, 72, 48)
        assert taesana.encode(x).shape == (1, 32, 3, 2)


def test_channels_last_input_gives_the_same_latent(taef2: Encoder, corpus_dir: Path) -> None:
    x = _load_rgb(corpus_dir / PHOTO, (96, 64))
    xl = x.contiguous(memory_format=torch.channels_last)
    assert not xl.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(taef2.encode(xl), taef2.encode(x), atol=1e-5, rtol=1e-5)


def test_weights_sha256_match_the_registry(taef2: Encoder, taesana: Encoder, models_dir: Path) -> None:
    enc, dec, sana = "taef2/taef2_encoder.pth", "taef2/taef2_decoder.pth", "taesana/taesana_encoder.pth"
    assert taef2.weights_sha256 == {enc: models.REGISTRY[enc].sha256, dec: models.REGISTRY[dec].sha256}
    assert taesana.weights_sha256 == {sana: models.REGISTRY[sana].sha256}
    for name, sha in {**taef2.weights_sha256, **taesana.weights_sha256}.items():
        assert models.sha256_file(models_dir / name) == sha
    d = json.loads(json.dumps(taef2.describe()))
    assert d == {"id": "taef2", "weights_sha256": taef2.weights_sha256}


def test_encoder_only_load(models_dir: Path) -> None:
    m = load_tae("taef2", models_dir=models_dir, with_decoder=False)
    assert not m.has_decoder and list(m.weights_sha256) == ["taef2/taef2_encoder.pth"]


def test_missing_weights_and_bad_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(models.ENV_MODELS_DIR, raising=False)
    monkeypatch.setenv(models.ENV_CACHE_DIR, str(tmp_path / "cache"))
    with pytest.raises(models.ModelNotFoundError, match="taef2/taef2_encoder.pth"):
        load_tae("taef2", models_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown TAE"):
        load_tae("taesd")
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("sd-vae")


# ------------------------------------------------------------------------------------ random stand-in


def test_tiny_random_tae_mechanics() -> None:
    m = tiny_random_tae(seed=0)
    assert m.id == "tae-random" and m.has_decoder and m.weights_sha256 == {"random": "seed-0"}
    assert not any(p.requires_grad for p in m.parameters()) and not m.training
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = m.encode(x)
        y = m.decode(z)
    assert z.shape == (2, 32, 4, 5)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not tiny_random_tae(with_decoder=False).has_decoder


def test_tiny_random_tae_is_seeded() -> None:
    a, b, c = tiny_random_tae(seed=3), tiny_random_tae(seed=3), tiny_random_tae(seed=4)
    wa, wb, wc = (m.encoder[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
