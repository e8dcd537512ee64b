"""Diffusers ``AutoencoderKL`` VAEs (Stable Diffusion 1.x/2.x, SDXL, SD3, FLUX.1) as Sfumato encoders.

The KL-regularised autoencoder is the image encoder of latent diffusion models (Rombach et al., "High-
Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022, arXiv:2112.10752); SDXL, SD3 and
FLUX.1 keep the same architecture with other widths, latent channel counts and latent normalisation
constants. This module wraps the implementation in Hugging Face ``diffusers`` (an optional dependency:
``pip install "sfumato[diffusers]"``) behind the :class:`~sfumato.encoders.base.Encoder` interface:

* pixels in/out are float RGB in [0, 1] (converted to the VAE's [-1, 1] internally);
* ``encode`` returns the latent *as the diffusion model sees it*: ``(mean - shift_factor) *
  scaling_factor`` (per-channel ``(mean - latents_mean) * scaling_factor / latents_std`` for the few
  VAEs whose config carries ``latents_mean``/``latents_std``), and ``decode`` inverts exactly that.

``encode`` returns the posterior *mean* (the mode of the diagonal Gaussian), not a sample: the cloaks and
poisons optimise a perturbation against a latent target, and that target and its gradient have to be
deterministic functions of the image, or the optimiser would chase sampling noise. The mean is also the
centre of the distribution the diffusion model's training latents were sampled from.

Weights are only read from ``.safetensors`` files, and the SHA-256 of each file actually loaded is
recorded in :attr:`DiffusersVAE.weights_sha256` for manifests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from sfumato.encoders.base import Encoder
from sfumato.models import ModelNotFoundError, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import AutoencoderKL

__all__ = ["DiffusersVAE", "LATENT_FACTORS", "load_diffusers_vae", "tiny_random_vae"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"

#: Latent channels, ``scaling_factor`` and ``shift_factor`` of each model family's published VAE config.
LATENT_FACTORS: dict[str, dict[str, Any]] = {
    "sd": {"latent_channels": 4, "scaling_factor": 0.18215, "shift_factor": None, "quant_conv": True},
    "sdxl": {"latent_channels": 4, "scaling_factor": 0.13025, "shift_factor": None, "quant_conv": True},
    "sd3": {"latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609, "quant_conv": False},
    "flux": {"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159, "quant_conv": False},
}

_SUPPORTED_CLASS = "AutoencoderKL"


def _import_autoencoder_kl() -> type[AutoencoderKL]:
    try:
        from diffusers import AutoencoderKL
    except ImportError as e:
        raise ImportError(
            "diffusers VAEs need the optional 'diffusers' package: pip install \"sfumato[diffusers]\""
        ) from e
    return AutoencoderKL


class DiffusersVAE(Encoder):
    """A frozen diffusers ``AutoencoderKL`` behind the :class:`Encoder` interface.

    Build with :func:`load_diffusers_vae` (real weights) or :func:`tiny_random_vae` (tests).

    Attributes:
        vae: the wrapped ``diffusers.AutoencoderKL`` (its decoder is dropped when ``with_decoder=False``).
        scaling_factor, shift_factor: the config's latent normalisation (``shift_factor`` 0.0 when unset).
        source: where the weights came from (path or Hub id, subfolder, revision/commit), for manifests.
    """

    def __init__(self, vae: AutoencoderKL, *, id: str, with_decoder: bool = True,
                 weights_sha256: dict[str, str] | None = None, source: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = vae.config
        if int(cfg.in_channels) != 3 or int(cfg.out_channels) != 3:
            raise ValueError(
                f"VAE {id!r} has in/out channels {cfg.in_channels}/{cfg.out_channels}; only RGB VAEs (3/3) "
                "can encode images"
            )
        self.id = id
        self.vae = vae
        self.latent_channels = int(cfg.latent_channels)
        self.downscale = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor) if cfg.shift_factor is not None else 0.0
        c = self.latent_channels
        mean = getattr(cfg, "latents_mean", None)
        std = getattr(cfg, "latents_std", None)
        if mean is not None and std is not None:  # per-channel normalisation (e.g. Playground v2.5)
            shift = torch.tensor(mean, dtype=torch.float32).reshape(1, c, 1, 1)
            scale = self.scaling_factor / torch.tensor(std, dtype=torch.float32).reshape(1, c, 1, 1)
        else:
            shift = torch.full((1, c, 1, 1), self.shift_factor)
            scale = torch.full((1, c, 1, 1), self.scaling_factor)
        self.register_buffer("latent_shift", shift, persistent=False)
        self.register_buffer("latent_scale", scale, persistent=False)
        if not with_decoder:  # free the decoder's memory; the AI view is then unavailable
            vae.decoder = None
            vae.post_quant_conv = None
        self._has_decoder = with_decoder
        self.weights_sha256 = dict(weights_sha256 or {})
        self.source = dict(source or {})
        self.freeze()

    @property
    def has_decoder(self) -> bool:
        return self._has_decoder

    def _dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch (RGB [0, 1], NCHW) → scaled latent ``(mean - shift) * scale``, padded to the grid."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an RGB image batch shaped (N, 3, H, W), got {tuple(x.shape)}")
        x = x.to(dtype=self._dtype())
        h, w = x.shape[-2:]
        d = self.downscale
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:  # replicate-pad to a multiple of the downscale factor
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        posterior = self.vae.encode(x * 2 - 1).latent_dist
        return (posterior.mean - self.latent_shift) * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent → image in [0, 1] (the *AI view*)."""
        if not self._has_decoder:
            return super().decode(z)
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected a latent shaped (N, {self.latent_channels}, h, w) for {self.id!r}, got {tuple(z.shape)}"
            )
        z = z.to(dtype=self._dtype()) / self.latent_scale + self.latent_shift
        img = self.vae.decode(z).sample
        return ((img + 1) / 2).clamp(0, 1)

    def describe(self) -> dict:
        out = super().describe()
        out.update(
            latent_channels=self.latent_channels, downscale=self.downscale,
            scaling_factor=self.scaling_factor, shift_factor=self.shift_factor, source=dict(self.source),
        )
        return out


# --------------------------------------------------------------------------------------------- loading


def offline_from_env() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return False
    return bool(constants.HF_HUB_OFFLINE)


def looks_like_path(s: str) -> bool:
    return (
        s.startswith((".", "/", "~", "\\"))
        or s.count("/") > 1
        or "\\" in s
        or s.lower().endswith((".safetensors", ".ckpt", ".pt", ".pth", ".bin"))
    )


def _check_class(config_path: Path, where: str) -> None:
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cls = cfg.get("_class_name", _SUPPORTED_CLASS)
    if cls != _SUPPORTED_CLASS:
        raise ValueError(
            f"{where} is a diffusers {cls}, not an {_SUPPORTED_CLASS}: this adapter supports the "
            "SD 1.x/2.x, SDXL, SD3 and FLUX.1 VAEs (use 'taef2'/'taesana' for FLUX.2/Sana latents)"
        )


def _incomplete(where: str, missing: list[str]) -> ValueError:
    return ValueError(
        f"{where} lacks {len(missing)} VAE weight(s) (e.g. {missing[0]!r}): refusing to run with randomly "
        "initialised layers; check that the file is a complete AutoencoderKL checkpoint matching its config"
    )


def _load_folder(cls: type[AutoencoderKL], folder: Path) -> AutoencoderKL:
    vae, info = cls.from_pretrained(str(folder), use_safetensors=True, local_files_only=True,
                                    torch_dtype=torch.float32, low_cpu_mem_usage=False,
                                    output_loading_info=True)
    missing = sorted(info.get("missing_keys", []))
    if missing:  # diffusers only warns and leaves these layers random
        raise _incomplete(str(folder / WEIGHTS_NAME), missing)
    return vae


def _missing_single_file_keys(vae: AutoencoderKL, path: Path) -> list[str]:
    """Model weights a single-file checkpoint does not provide (diffusers loads it non-strictly)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # shapes only: meta tensors, no data read
        meta = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    expected = set(vae.state_dict())
    if expected <= meta.keys():  # already in diffusers layout
        return []
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return sorted(expected - convert_ldm_vae_checkpoint(meta, vae.config).keys())


def _from_local_folder(cls: type[AutoencoderKL], root: Path, subfolder: str | None, spec: str,
                       with_decoder: bool) -> DiffusersVAE:
    if subfolder is not None:
        rel = Path(subfolder)
    elif (root / CONFIG_NAME).is_file():
        rel = Path()
    elif (root / "vae" / CONFIG_NAME).is_file():  # a full pipeline folder
        rel = Path("vae")
    else:
        raise ModelNotFoundError(
            f"folder {root} has neither {CONFIG_NAME} nor vae/{CONFIG_NAME}: give a diffusers VAE folder, "
            "a pipeline folder containing vae/, or a single .safetensors file"
        )
    folder = root / rel
    if not (folder / CONFIG_NAME).is_file():
        raise ModelNotFoundError(f"{folder} has no {CONFIG_NAME}: check the subfolder ({subfolder!r})")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelNotFoundError(
            f"{folder} has no {WEIGHTS_NAME}: Sfumato reads weights only from (unsharded) safetensors; "
            "re-save the VAE with save_pretrained(..., safe_serialization=True)"
        )
    _check_class(folder / CONFIG_NAME, str(folder))
    vae = _load_folder(cls, folder)
    key = (rel / WEIGHTS_NAME).as_posix()
    source = {"path": str(root), "subfolder": None if rel == Path() else rel.as_posix()}
    return DiffusersVAE(vae, id=f"diffusers:{spec}", with_decoder=with_decoder,
                        weights_sha256={key: sha256_file(weights)}, source=source)


def _from_single_file(cls: type[AutoencoderKL], path: Path, config: str | None, subfolder: str | None,
                      local_files_only: bool, spec: str, with_decoder: bool) -> DiffusersVAE:
    if path.suffix.lower() != ".safetensors":
        raise ValueError(
            f"{path} is not a .safetensors file: Sfumato loads weights only from safetensors (pickle-based "
            ".ckpt/.pt/.bin files can run code); convert it to .safetensors first"
        )
    kwargs: dict[str, Any] = {"local_files_only": local_files_only, "torch_dtype": torch.float32,
                              "low_cpu_mem_usage": False}
    if config is not None:
        cfg_root = Path(config).expanduser()
        if cfg_root.is_dir():
            if subfolder is None and not (cfg_root / CONFIG_NAME).is_file() and (
                    cfg_root / "vae" / CONFIG_NAME).is_file():
                subfolder = "vae"
            cfg_file = cfg_root / (subfolder or "") / CONFIG_NAME
            if not cfg_file.is_file():
                raise ModelNotFoundError(f"config folder {cfg_root} has no {CONFIG_NAME} (subfolder {subfolder!r})")
            _check_class(cfg_file, str(cfg_file.parent))
            config = str(cfg_root)
        kwargs["config"] = config
        if subfolder is not None:
            kwargs["subfolder"] = subfolder
    try:
        vae = cls.from_single_file(str(path), **kwargs)
    except OSError as e:  # diffusers could not get the config.json matching the checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotFoundError(
            f"single-file VAE {path}: diffusers needs the matching {CONFIG_NAME} and could not get it "
            f"({first}); pass config=<folder or Hub id holding the VAE's {CONFIG_NAME}>, or run once with "
            "network so diffusers can cache the default config"
        ) from e
    missing = _missing_single_file_keys(vae, path)
    if missing:
        raise _incomplete(str(path), missing)
    source = {"path": str(path), "config": config}
    return DiffusersVAE(vae, id=f"diffusers:{spec}", with_decoder=with_decoder,
                        weights_sha256={path.name: sha256_file(path)}, source=source)


def _from_hub(cls: type[AutoencoderKL], repo: str, subfolder: str | None, revision: str | None,
              local_files_only: bool, spec: str, with_decoder: bool) -> DiffusersVAE:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    how = (
        "pass a local diffusers folder (config.json + diffusion_pytorch_model.safetensors), a pipeline "
        "folder containing vae/, or a single .safetensors file, or run once with network to cache it"
    )
    common = {"revision": revision, "local_files_only": local_files_only}

    def download(name: str, sf: str | None, errors: dict[type[Exception], str]) -> str:
        """``hf_hub_download``, with each error class in ``errors`` turned into that teaching message."""
        try:
            return hf_hub_download(repo, name, subfolder=sf, **common)
        except tuple(errors) as e:
            raise ModelNotFoundError(next(m for t, m in errors.items() if isinstance(e, t))) from e

    repo_errors: dict[type[Exception], str] = {
        GatedRepoError: f"Hub model {repo!r} is gated: accept its licence on huggingface.co and log in "
                        f"(`hf auth login`), or {how}",
        RepositoryNotFoundError: f"Hub model {repo!r} does not exist (or is private) and no local path of that "
                                 f"name exists: check the id, log in for private models, or {how}",
        RevisionNotFoundError: f"Hub model {repo!r} has no revision {revision!r}: check the revision",
    }
    candidates: list[str | None] = [subfolder] if subfolder is not None else [None, "vae"]
    config_path: str | None = None
    chosen: str | None = None
    missing_locally = False
    for sf in candidates:
        try:
            config_path = download(CONFIG_NAME, sf, repo_errors)
        except HFValidationError as e:
            raise ValueError(
                f"{repo!r} is neither an existing local file/folder nor a valid Hub model id ('owner/name')"
            ) from e
        except LocalEntryNotFoundError:
            missing_locally = True
            continue
        except EntryNotFoundError:
            continue
        chosen = sf
        break
    if config_path is None:
        where = " or ".join(f"{s}/{CONFIG_NAME}" if s else CONFIG_NAME for s in candidates)
        if missing_locally:
            raise ModelNotFoundError(
                f"diffusers VAE {repo!r} ({where}) is not in the local Hugging Face cache and cannot be "
                f"downloaded now (HF_HUB_OFFLINE / local_files_only / no network): {how}"
            )
        raise ModelNotFoundError(
            f"Hub model {repo!r} has no {where}: pass subfolder= naming the folder that holds the VAE"
        )
    weights_path = download(WEIGHTS_NAME, chosen, {
        LocalEntryNotFoundError: f"diffusers VAE {repo!r}: {CONFIG_NAME} is cached but {WEIGHTS_NAME} is not, "
                                 f"and it cannot be downloaded now (HF_HUB_OFFLINE / local_files_only / no "
                                 f"network): {how}",
        EntryNotFoundError: f"Hub model {repo!r} has no {WEIGHTS_NAME} in {chosen or 'its root'}: Sfumato loads "
                            "weights only from (unsharded) safetensors",
    })
    folder = Path(config_path).parent
    if Path(weights_path).parent != folder:  # both files come from the same snapshot in the HF cache
        raise RuntimeError(f"config and weights of {repo!r} resolved to different folders: {folder}, {weights_path}")
    _check_class(Path(config_path), f"Hub model {repo!r}")
    vae = _load_folder(cls, folder)
    key = f"{chosen}/{WEIGHTS_NAME}" if chosen else WEIGHTS_NAME
    snapshot = folder.parent if chosen else folder
    source = {"hub_id": repo, "subfolder": chosen, "revision": revision, "commit": snapshot.name}
    return DiffusersVAE(vae, id=f"diffusers:{spec}", with_decoder=with_decoder,
                        weights_sha256={key: sha256_file(weights_path)}, source=source)


def load_diffusers_vae(id_or_path: str, *, with_decoder: bool = True, subfolder: str | None = None,
                       revision: str | None = None, local_files_only: bool | None = None,
                       config: str | None = None) -> DiffusersVAE:
    """Load a diffusers ``AutoencoderKL`` (float32, frozen, eval) as a :class:`DiffusersVAE`.

    Args:
        id_or_path: a Hub model id (``"stabilityai/sd-vae-ft-mse"``; ``"black-forest-labs/FLUX.1-dev"``
            with ``subfolder="vae"``), a local diffusers VAE folder (``config.json`` +
            ``diffusion_pytorch_model.safetensors``), a full pipeline folder (its ``vae/`` is used), or a
            single ``.safetensors`` file (loaded with ``AutoencoderKL.from_single_file``).
        with_decoder: keep the decoder (needed for :meth:`DiffusersVAE.decode`, the *AI view*).
        subfolder: folder inside the repo/folder holding the VAE. For a Hub id without it, the root and
            then ``vae/`` are tried.
        revision: Hub branch, tag or commit.
        local_files_only: never download; default true when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``
            is set, else false (diffusers' own default).
        config: single files only: a folder or Hub id with the VAE's ``config.json``. Without it diffusers
            guesses the model family from the checkpoint keys and fetches that family's config from the Hub.

    Raises:
        ModelNotFoundError: the model is not available locally (the message says how to provide it).
        ValueError: the path/id is malformed, not safetensors, or not an ``AutoencoderKL``.
    """
    if not isinstance(id_or_path, str) or not id_or_path.strip():
        raise ValueError(f"expected a Hub model id or a local path, got {id_or_path!r}")
    cls = _import_autoencoder_kl()
    lfo = offline_from_env() if local_files_only is None else bool(local_files_only)
    p = Path(id_or_path).expanduser()
    if p.is_file():
        return _from_single_file(cls, p, config, subfolder, lfo, id_or_path, with_decoder)
    if config is not None:
        raise ValueError("config= is only for single-file checkpoints; folders and Hub ids carry their config.json")
    if p.is_dir():
        return _from_local_folder(cls, p, subfolder, id_or_path, with_decoder)
    if looks_like_path(id_or_path):
        raise ModelNotFoundError(
            f"no such file or folder: {id_or_path} (give an existing diffusers folder, a .safetensors file, "
            "or a Hub id like 'stabilityai/sd-vae-ft-mse')"
        )
    return _from_hub(cls, id_or_path, subfolder, revision, lfo, id_or_path, with_decoder)


# ---------------------------------------------------------------------------------------- test models


def tiny_random_vae(*, seed: int = 0, latent_channels: int | None = None, flavour: str = "sd") -> DiffusersVAE:
    """A tiny randomly initialised ``AutoencoderKL`` with one family's latent constants (no downloads).

    Two stages of widths (8, 16), so ``downscale`` is 2; ``latent_channels`` defaults to the family's
    (4 for ``"sd"``/``"sdxl"``, 16 for ``"sd3"``/``"flux"``), and ``scaling_factor``/``shift_factor`` and
    the presence of the quant convs follow the family's published config. The global RNG is untouched.
    """
    if flavour not in LATENT_FACTORS:
        raise ValueError(f"unknown flavour {flavour!r}; choose one of {sorted(LATENT_FACTORS)}")
    fam = LATENT_FACTORS[flavour]
    c = fam["latent_channels"] if latent_channels is None else int(latent_channels)
    if c < 1:
        raise ValueError(f"latent_channels must be >= 1, got {c}")
    cls = _import_autoencoder_kl()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = cls(
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=32,
            latent_channels=c, scaling_factor=fam["scaling_factor"], shift_factor=fam["shift_factor"],
            use_quant_conv=fam["quant_conv"], use_post_quant_conv=fam["quant_conv"],
        )
    return DiffusersVAE(vae.float().eval(), id=f"diffusers:tiny-random-{flavour}",
                        weights_sha256={"random": f"seed-{seed}"}, source={"random": flavour, "seed": seed})
