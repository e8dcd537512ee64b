"""Tests for the diffusers AutoencoderKL adapter, on tiny random VAEs (no downloads, Hub offline)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sfumato.encoders import load_encoder
from sfumato.encoders.diffusers_vae import (
    LATENT_FACTORS,
    WEIGHTS_NAME,
    DiffusersVAE,
    load_diffusers_vae,
    tiny_random_vae,
)
from sfumato.models import ModelNotFoundError

FLAVOURS = ["sd", "sdxl", "sd3", "flux"]


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Never touch the network, and never see the developer's own Hugging Face cache."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path_factory.mktemp("hf_cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def vaes() -> dict[str, DiffusersVAE]:
    return {f: tiny_random_vae(flavour=f, seed=0) for f in FLAVOURS}


def _images(n: int = 2, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ mechanics


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_shapes_range_and_family_constants(vaes: dict[str, DiffusersVAE], flavour: str) -> None:
    m = vaes[flavour]
    fam = LATENT_FACTORS[flavour]
    assert m.latent_channels == fam["latent_channels"]
    assert m.downscale == 2
    assert m.scaling_factor == pytest.approx(fam["scaling_factor"])
    assert m.shift_factor == pytest.approx(fam["shift_factor"] or 0.0)
    assert m.has_decoder and m.id == f"diffusers:tiny-random-{flavour}"
    x = _images()
    with torch.no_grad():
        z = m.encode(x)
        y = m.decode(z)
    assert z.shape == (2, fam["latent_channels"], 16, 24)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_latent_is_scaled_posterior_mean_and_decode_inverts_scaling(
        vaes: dict[str, DiffusersVAE], flavour: str) -> None:
    m = vaes[flavour]
    x = _images(1, 32, 32, seed=1)
    with torch.no_grad():
        post = m.vae.encode(x * 2 - 1).latent_dist
        expected = (post.mean - m.shift_factor) * m.scaling_factor
        z = m.encode(x)
        torch.testing.assert_close(z, expected)
        raw = m.vae.decode(post.mean).sample
        torch.testing.assert_close(m.decode(z), ((raw + 1) / 2).clamp(0, 1), atol=1e-5, rtol=1e-5)


def test_per_channel_latent_statistics_are_used_when_configured() -> None:
    from diffusers import AutoencoderKL

    mean, std = [0.5, -1.0, 2.0, 0.0], [2.0, 4.0, 0.5, 1.0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        raw = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(8, 16), norm_num_groups=4, scaling_factor=0.5,
                            latents_mean=mean, latents_std=std)
    m = DiffusersVAE(raw, id="diffusers:per-channel")
    x = _images(1, 16, 16)
    lm, ls = torch.tensor(mean).view(1, 4, 1, 1), torch.tensor(std).view(1, 4, 1, 1)
    with torch.no_grad():
        post_mean = raw.encode(x * 2 - 1).latent_dist.mean
        z = m.encode(x)
        torch.testing.assert_close(z, (post_mean - lm) * 0.5 / ls)
        want = ((raw.decode(post_mean).sample + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(m.decode(z), want, atol=1e-5, rtol=1e-5)


def test_sd_and_flux_quant_convs_follow_their_families(vaes: dict[str, DiffusersVAE]) -> None:
    assert vaes["sd"].vae.quant_conv is not None and vaes["sdxl"].vae.post_quant_conv is not None
    assert vaes["sd3"].vae.quant_conv is None and vaes["flux"].vae.post_quant_conv is None


def test_latent_channels_override() -> None:
    m = tiny_random_vae(flavour="sd", latent_channels=8)
    assert m.latent_channels == 8
    assert m.encode(_images(1, 16, 16)).shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="latent_channels"):
        tiny_random_vae(latent_channels=0)


def test_gradient_reaches_input_not_weights(vaes: dict[str, DiffusersVAE]) -> None:
    m = vaes["flux"]
    x = _images(1, 16, 16).requires_grad_(True)
    z = m.encode(x)
    loss = z.square().mean() + m.decode(z).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.parameters())


def test_frozen_and_stays_in_eval(vaes: dict[str, DiffusersVAE]) -> None:
    m = vaes["sd"]
    assert not any(p.requires_grad for p in m.parameters())
    m.train()
    assert not m.training
    assert not any(mod.training for mod in m.modules())


def test_encode_is_deterministic(vaes: dict[str, DiffusersVAE]) -> None:
    m = vaes["sd3"]
    x = _images()
    with torch.no_grad():
        assert torch.equal(m.encode(x), m.encode(x))


def test_float64_follows_module_dtype() -> None:
    m32 = tiny_random_vae(flavour="sdxl")
    m64 = tiny_random_vae(flavour="sdxl").to(torch.float64)
    x = _images(1, 16, 16)
    with torch.no_grad():
        z64 = m64.encode(x.double())
        assert z64.dtype == torch.float64
        assert m64.encode(x).dtype == torch.float64  # float32 input is cast to the module's dtype
        assert m64.decode(z64).dtype == torch.float64
        torch.testing.assert_close(z64.float(), m32.encode(x), atol=1e-5, rtol=1e-4)


def test_odd_sizes_are_replicate_padded(vaes: dict[str, DiffusersVAE]) -> None:
    m = vaes["sd"]
    x = _images(1, 31, 33)
    with torch.no_grad():
        z = m.encode(x)
        assert z.shape == (1, 4, 16, 17)
        torch.testing.assert_close(z, m.encode(F.pad(x, (0, 1, 0, 1), mode="replicate")))
        assert m.decode(z).shape == (1, 3, 32, 34)


def test_bad_shapes_are_rejected(vaes: dict[str, DiffusersVAE]) -> None:
    m = vaes["sd"]
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        m.encode(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="latent shaped"):
        m.decode(torch.rand(1, 16, 8, 8))


def test_tiny_random_vae_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = tiny_random_vae(seed=3), tiny_random_vae(seed=3), tiny_random_vae(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (m.vae.encoder.conv_in.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.weights_sha256 == {"random": "seed-3"}
    with pytest.raises(ValueError, match="flavour"):
        tiny_random_vae(flavour="sd4")


def test_describe_is_json_ready(vaes: dict[str, DiffusersVAE]) -> None:
    d = json.loads(json.dumps(vaes["flux"].describe()))
    assert d["id"] == "diffusers:tiny-random-flux"
    assert d["shift_factor"] == pytest.approx(0.1159) and d["scaling_factor"] == pytest.approx(0.3611)
    assert d["latent_channels"] == 16 and d["downscale"] == 2


# -------------------------------------------------------------------------------------------- loading


def _save(m: DiffusersVAE, folder: Path) -> Path:
    m.vae.save_pretrained(folder, safe_serialization=True)
    assert (folder / WEIGHTS_NAME).is_file() and (folder / "config.json").is_file()
    return folder


@pytest.mark.parametrize("flavour", ["sd", "flux"])
def test_save_and_load_folder_round_trip(tmp_path: Path, flavour: str) -> None:
    ref = tiny_random_vae(flavour=flavour, seed=5)
    folder = _save(ref, tmp_path / "vae_dir")
    x = _images(1, 32, 32)
    for loaded in (load_diffusers_vae(str(folder)), load_encoder("diffusers:" + str(folder))):
        assert isinstance(loaded, DiffusersVAE)
        assert loaded.id == f"diffusers:{folder}"
        assert loaded.weights_sha256 == {WEIGHTS_NAME: _sha(folder / WEIGHTS_NAME)}
        assert len(loaded.weights_sha256[WEIGHTS_NAME]) == 64
        assert loaded.shift_factor == pytest.approx(ref.shift_factor)
        assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
        with torch.no_grad():
            z = loaded.encode(x)
            assert torch.equal(z, ref.encode(x))
            assert torch.equal(loaded.decode(z), ref.decode(z))


def test_load_without_decoder(tmp_path: Path) -> None:
    folder = _save(tiny_random_vae(), tmp_path / "v")
    m = load_encoder("diffusers:" + str(folder), with_decoder=False)
    assert not m.has_decoder
    assert m.encode(_images(1, 8, 8)).shape == (1, 4, 4, 4)
    with pytest.raises(NotImplementedError, match="no decoder"):
        m.decode(torch.zeros(1, 4, 4, 4))


def test_pipeline_folder_uses_its_vae_subfolder(tmp_path: Path) -> None:
    ref = tiny_random_vae(flavour="sdxl", seed=2)
    _save(ref, tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    x = _images(1, 16, 16)
    for m in (load_diffusers_vae(str(tmp_path / "pipe")),
              load_diffusers_vae(str(tmp_path / "pipe"), subfolder="vae")):
        assert m.weights_sha256 == {f"vae/{WEIGHTS_NAME}": _sha(tmp_path / "pipe" / "vae" / WEIGHTS_NAME)}
        assert m.source["subfolder"] == "vae"
        with torch.no_grad():
            assert torch.equal(m.encode(x), ref.encode(x))


def test_folder_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="neither config.json nor vae/config.json"):
        load_diffusers_vae(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="no such file or folder"):
        load_diffusers_vae(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="Hub model id or a local path"):
        load_diffusers_vae("")
    # pickle-format weights only: refused
    tiny_random_vae().vae.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_diffusers_vae(str(tmp_path / "bin"))
    # another autoencoder class
    dc = _save(tiny_random_vae(), tmp_path / "dc")
    cfg = json.loads((dc / "config.json").read_text())
    cfg["_class_name"] = "AutoencoderDC"
    (dc / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="AutoencoderDC, not an AutoencoderKL"):
        load_diffusers_vae(str(dc))


def test_incomplete_checkpoint_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = _save(tiny_random_vae(), tmp_path / "v")
    sd = load_file(folder / WEIGHTS_NAME)
    del sd["encoder.conv_in.weight"]
    save_file(sd, folder / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="lacks 1 VAE weight"):
        load_diffusers_vae(str(folder))


# ----------------------------------------------------------------------------------------- single file


def _to_ldm_key(k: str, n_up: int) -> str:
    """Our own inverse of diffusers' LDM→diffusers VAE key mapping, to write an original-format file."""
    parts = k.split(".")
    if parts[1] == "down_blocks":
        i = parts[2]
        rest = ".".join(parts[3:]).replace("resnets.", "block.").replace("downsamplers.0.", "downsample.")
        k = f"{parts[0]}.down.{i}.{rest}"
    elif parts[1] == "up_blocks":
        i = n_up - 1 - int(parts[2])
        rest = ".".join(parts[3:]).replace("resnets.", "block.").replace("upsamplers.0.", "upsample.")
        k = f"{parts[0]}.up.{i}.{rest}"
    elif parts[1] == "mid_block" and parts[2] == "resnets":
        k = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
    elif parts[1] == "mid_block" and parts[2] == "attentions":
        name = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}[parts[4]]
        k = f"{parts[0]}.mid.attn_1.{name}.{parts[-1]}"
    return k.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")


def test_single_file_diffusers_and_original_layouts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ref = tiny_random_vae(flavour="sd", seed=7)
    folder = _save(ref, tmp_path / "cfg")
    x = _images(1, 16, 16)
    with torch.no_grad():
        want = ref.encode(x)
    # 1) the diffusers-layout weights file on its own, config from a local folder
    single = folder / WEIGHTS_NAME
    m = load_diffusers_vae(str(single), config=str(folder))
    assert m.weights_sha256 == {WEIGHTS_NAME: _sha(single)}
    with torch.no_grad():
        assert torch.equal(m.encode(x), want)
    # 2) the original (LDM/CompVis) layout, attention weights as 1x1 convs, behind the usual prefix
    n_up = len(ref.vae.config.up_block_types)
    ldm = {}
    for k, v in ref.vae.state_dict().items():
        if ".attentions." in k and k.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]
        ldm["first_stage_model." + _to_ldm_key(k, n_up)] = v.contiguous()
    ldm_file = tmp_path / "vae-original.safetensors"
    save_file(ldm, ldm_file)
    m2 = load_diffusers_vae(str(ldm_file), config=str(folder))
    with torch.no_grad():
        torch.testing.assert_close(m2.encode(x), want)
    # 3) an original-layout file missing a layer is refused rather than left random
    del ldm[next(k for k in ldm if "mid.attn_1.q.weight" in k)]
    save_file(ldm, tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="lacks 1 VAE weight"):
        load_diffusers_vae(str(tmp_path / "broken.safetensors"), config=str(folder))


def test_single_file_without_config_offline_says_what_to_do(tmp_path: Path) -> None:
    # diffusers would fetch the family's default config.json from the Hub; offline it cannot.
    single = _save(tiny_random_vae(), tmp_path / "v") / WEIGHTS_NAME
    with pytest.raises(ModelNotFoundError, match="pass config=") as e:
        load_diffusers_vae(str(single))
    assert "\n" not in str(e.value)


def test_single_file_must_be_safetensors(tmp_path: Path) -> None:
    ckpt = tmp_path / "vae.ckpt"
    ckpt.write_bytes(b"not read")
    with pytest.raises(ValueError, match="only from safetensors"):
        load_diffusers_vae(str(ckpt))


def test_config_argument_only_for_single_files(tmp_path: Path) -> None:
    folder = _save(tiny_random_vae(), tmp_path / "v")
    with pytest.raises(ValueError, match="only for single-file"):
        load_diffusers_vae(str(folder), config=str(folder))


# ------------------------------------------------------------------------------------------------ Hub


@pytest.mark.parametrize("spec, subfolder", [
    ("stabilityai/sd-vae-ft-mse", None),
    ("black-forest-labs/FLUX.1-dev", "vae"),
])
def test_missing_hub_id_offline_gives_one_clear_line(spec: str, subfolder: str | None) -> None:
    with pytest.raises(ModelNotFoundError) as e:
        load_diffusers_vae(spec, subfolder=subfolder)
    msg = str(e.value)
    assert spec in msg and "HF_HUB_OFFLINE" in msg and "\n" not in msg
    assert "local diffusers folder" in msg and "single .safetensors file" in msg and "run once with network" in msg
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        load_encoder("diffusers:" + spec)


def test_hub_id_found_in_local_cache(_offline_hub: Path) -> None:
    # A Hugging Face cache laid out as huggingface_hub writes it: refs/main -> snapshots/<commit>/...
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = _offline_hub / "models--acme--tiny-pipeline"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    ref = tiny_random_vae(flavour="flux", seed=9)
    snap = repo / "snapshots" / commit
    _save(ref, snap / "vae")
    x = _images(1, 16, 16)
    for m in (load_diffusers_vae("acme/tiny-pipeline"), load_diffusers_vae("acme/tiny-pipeline", subfolder="vae")):
        assert m.id == "diffusers:acme/tiny-pipeline"
        assert m.weights_sha256 == {f"vae/{WEIGHTS_NAME}": _sha(snap / "vae" / WEIGHTS_NAME)}
        assert m.source == {"hub_id": "acme/tiny-pipeline", "subfolder": "vae", "revision": None, "commit": commit}
        with torch.no_grad():
            assert torch.equal(m.encode(x), ref.encode(x))
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        load_diffusers_vae("acme/tiny-pipeline", subfolder="unet")
