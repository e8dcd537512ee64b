"""Real image operations that a scraper or a mimic applies to protected images, used to *evaluate* protections.

These are the actual operations (Pillow, numpy, a real autoencoder), not differentiable stand-ins: what
survives them is what survives in the wild. Every attack is a pure function
``fn(rgb, **params) -> rgb`` on float32 ``HxWx3`` arrays in ``[0, 1]`` that returns an array of the same
size, **quantised to 8 bits** like the file an attacker would save or feed to a trainer. Randomness
comes only from an explicit ``seed``.

The operations (names as in :data:`ATTACKS`):

* ``jpeg-q{95,85,75,60}-{420,444}`` — Pillow (libjpeg) JPEG at that quality, with 4:2:0 (halved chroma
  resolution, what most websites and Pillow's default use) or 4:4:4 chroma;
* ``resize-x{0.5,0.75}-{bicubic,lanczos}`` — Pillow resize down by that factor per side and back up to
  the original size with the same filter (Pillow's filters widen their support when shrinking, i.e.
  they antialias);
* ``crop-90`` — the central 90 % of each side, resized back to the original size with Pillow Lanczos (a
  geometric change: measurements compare it with references cropped the same way,
  :func:`align_reference`);
* ``noise-{0.02,0.05}`` — additive i.i.d. Gaussian noise of that standard deviation (seeded), clipped;
* ``blur-r{1,2}`` — Pillow ``GaussianBlur(radius)``; Pillow's radius is the standard deviation in pixels
  (Pillow approximates the Gaussian with three box-blur passes);
* ``median-3`` — Pillow ``MedianFilter(3)``, per channel;
* ``noisy-upscale`` — *noisy upscaling* of Hönig, Rando, Carlini and Tramèr, "Adversarial Perturbations
  Cannot Reliably Protect Artists From Generative AI" (ICLR 2025): Gaussian noise of standard
  deviation 0.1 (as in the authors' release), then an upscaler. The paper's upscaler is the Stable
  Diffusion x4 upscaler, run on the noisy full-size (512 px) image; pass any such model as ``upscaler`` (a callable, e.g. a diffusers pipeline
  wrapped to take and return float arrays) and its output is resized back to the original size with
  Pillow Lanczos. Without one, a *classical stand-in* is used and named as such: a Pillow box-filter
  downscale by ``factor`` per side (``0.5``: each output pixel averages 4 noisy pixels, halving the
  noise) and a Pillow Lanczos upscale back. The stand-in is far weaker than a diffusion upscaler.
* ``tae-roundtrip`` — encode and decode through an autoencoder (TAEF2 by default), see
  :func:`tae_roundtrip`;
* ``impress-fast`` / ``impress`` / ``impress-paper`` — IMPRESS purification
  (:mod:`sfumato.attacks.impress`) with 20 steps at 256 px, 200 steps at 512 px and the paper's 3000
  steps at 512 px. ``impress-fast`` starts from the protected image itself: the paper's starting noise
  (standard deviation 0.05 here) first raises the autoencoder inconsistency, and a short budget spends
  its steps removing it again (measured on a 64 px painting with a crude perturbation: with the noise,
  8 steps end above the protected image's consistency loss and 15 just below it; without it, 8 steps
  reach the clean image's level).

Suites (:data:`SUITES`): ``"default"`` is a representative, fast subset (one of each family, IMPRESS
with a small budget); ``"all"`` is every registered attack except ``impress-fast`` (superseded by
``impress``) and ``impress-paper`` (hours on a CPU; ask for it by name).

:func:`sample_attack` draws a random attack with random parameters from a ``numpy.random.Generator``;
the same generator state gives the same attack and seed (replayable). :func:`best_of_n` picks, per image,
the usable attack that removes the most protection; "usable" is :func:`is_usable`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder

__all__ = [
    "ATTACKS",
    "SUITES",
    "USABLE_LPIPS",
    "USABLE_PSNR_DB",
    "AttackSpec",
    "align_reference",
    "apply_attack",
    "best_of_n",
    "center_crop",
    "gaussian_blur",
    "gaussian_noise",
    "get_attack",
    "is_usable",
    "jpeg",
    "median_filter",
    "noisy_upscale",
    "resize_roundtrip",
    "resolve_attacks",
    "sample_attack",
    "tae_roundtrip",
]

USABLE_PSNR_DB = 25.0
"""An attacked image is *usable* when its PSNR against the protected image is at least this (dB)..."""
USABLE_LPIPS = 0.3
"""... or when its LPIPS (AlexNet) distance to the clean original is at most this."""

RESAMPLING = ("bicubic", "lanczos", "bilinear", "box")
SUBSAMPLING = ("4:2:0", "4:4:4")


# ---------------------------------------------------------------------------------------------- helpers
def _check_rgb(rgb: Any, where: str) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{where}: expected an HxWx3 RGB array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{where}: pixels must be floats in [0, 1], got dtype {a.dtype}; divide uint8 data by 255")
    if min(a.shape[:2]) < 8:
        raise ValueError(f"{where}: image of {a.shape[1]}x{a.shape[0]} is too small; attacks need at least 8x8")
    lo, hi = float(a.min()), float(a.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{where}: float pixels must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return np.clip(a, 0.0, 1.0).astype(np.float32, copy=False)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _from_uint8(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32) / 255.0


def _pil(rgb: np.ndarray):  # noqa: ANN202
    from PIL import Image

    return Image.fromarray(_to_uint8(rgb))


def _filter(method: str):  # noqa: ANN202
    from PIL import Image

    if method not in RESAMPLING:
        raise ValueError(f"unknown resampling filter {method!r}; choose one of {RESAMPLING}")
    return {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
            "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}[method]


def _resize_pil(rgb: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Pillow resize of an 8-bit RGB rendering of ``rgb`` to ``size = (width, height)``."""
    return _from_uint8(np.asarray(_pil(rgb).resize(size, _filter(method))))


# ------------------------------------------------------------------------------------------- operations
def jpeg(rgb: np.ndarray, *, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """Pillow/libjpeg JPEG encode and decode at ``quality`` (1-100) with ``"4:2:0"`` or ``"4:4:4"`` chroma."""
    x = _check_rgb(rgb, "jpeg")
    if not (isinstance(quality, (int, np.integer)) and 1 <= int(quality) <= 100):
        raise ValueError(f"jpeg: quality must be an integer in 1..100, got {quality!r}")
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"jpeg: subsampling must be one of {SUBSAMPLING}, got {subsampling!r}")
    from PIL import Image

    buf = io.BytesIO()
    _pil(x).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as im:
        return _from_uint8(np.asarray(im.convert("RGB")))


def resize_roundtrip(rgb: np.ndarray, *, scale: float, method: str = "lanczos") -> np.ndarray:
    """Pillow resize by ``scale`` per side (0 < scale < 1) and back to the original size, same filter."""
    x = _check_rgb(rgb, "resize_roundtrip")
    if not 0 < scale < 1:
        raise ValueError(f"resize_roundtrip: scale must be in (0, 1) (a downscale), got {scale}")
    h, w = x.shape[:2]
    small = _resize_pil(x, (max(1, round(w * scale)), max(1, round(h * scale))), method)
    return _resize_pil(small, (w, h), method)


def center_crop(rgb: np.ndarray, *, fraction: float = 0.9, method: str = "lanczos") -> np.ndarray:
    """Keep the central ``fraction`` of each side and resize it back to the original size (Pillow)."""
    x = _check_rgb(rgb, "center_crop")
    if not 0 < fraction <= 1:
        raise ValueError(f"center_crop: fraction must be in (0, 1], got {fraction}")
    h, w = x.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize_pil(x[top:top + ch, left:left + cw], (w, h), method)


def gaussian_noise(rgb: np.ndarray, *, sigma: float, seed: int) -> np.ndarray:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` (``np.random.default_rng(seed)``), clip."""
    x = _check_rgb(rgb, "gaussian_noise")
    if not sigma >= 0:
        raise ValueError(f"gaussian_noise: sigma must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
    return _from_uint8(_to_uint8(noisy))


def gaussian_blur(rgb: np.ndarray, *, radius: float) -> np.ndarray:
    """Pillow ``ImageFilter.GaussianBlur(radius)`` (``radius`` is the standard deviation in pixels)."""
    x = _check_rgb(rgb, "gaussian_blur")
    if not radius > 0:
        raise ValueError(f"gaussian_blur: radius must be > 0 pixels, got {radius}")
    from PIL import ImageFilter

    return _from_uint8(np.asarray(_pil(x).filter(ImageFilter.GaussianBlur(radius))))


def median_filter(rgb: np.ndarray, *, size: int = 3) -> np.ndarray:
    """Pillow ``ImageFilter.MedianFilter(size)`` applied to each channel (``size`` odd, >= 3)."""
    x = _check_rgb(rgb, "median_filter")
    if not (isinstance(size, (int, np.integer)) and size >= 3 and size % 2 == 1):
        raise ValueError(f"median_filter: size must be an odd integer >= 3, got {size!r}")
    from PIL import ImageFilter

    return _from_uint8(np.asarray(_pil(x).filter(ImageFilter.MedianFilter(int(size)))))


Upscaler = Callable[[np.ndarray], np.ndarray]


def noisy_upscale(rgb: np.ndarray, *, sigma: float = 0.1, seed: int, factor: float = 0.5,
                  upscaler: Upscaler | None = None) -> np.ndarray:
    """Noisy upscaling (Hönig et al., ICLR 2025): Gaussian noise (``sigma``, seeded, clipped, 8-bit), then
    an upscaler, then back to the original size with Pillow Lanczos.

    ``upscaler`` takes the noisy float32 ``HxWx3`` image in [0, 1] and returns a float image in [0, 1]
    (typically 4x larger, as the Stable Diffusion x4 upscaler the paper uses). Without it, the classical
    stand-in runs: Pillow box downscale by ``factor`` per side, then Pillow Lanczos upscale back.
    """
    x = _check_rgb(rgb, "noisy_upscale")
    if not 0 < factor < 1:
        raise ValueError(f"noisy_upscale: factor must be in (0, 1) (the stand-in's downscale), got {factor}")
    h, w = x.shape[:2]
    noisy = gaussian_noise(x, sigma=sigma, seed=seed)
    if upscaler is not None:
        up = np.asarray(upscaler(noisy))
        if up.ndim != 3 or up.shape[2] != 3 or not np.issubdtype(up.dtype, np.floating):
            raise ValueError(f"noisy_upscale: the upscaler must return a float HxWx3 image in [0, 1], got "
                             f"{up.dtype} {up.shape}")
        return _resize_pil(np.clip(up, 0, 1), (w, h), "lanczos")
    small = _resize_pil(noisy, (max(1, round(w * factor)), max(1, round(h * factor))), "box")
    return _resize_pil(small, (w, h), "lanczos")


def _work_view(x_full, resolution: int | None):  # noqa: ANN001, ANN202
    from sfumato.io.tensors import resize, work_size

    h, w = x_full.shape[-2:]
    if resolution is None:
        return x_full
    return resize(x_full, work_size(h, w, resolution))


def _apply_work_delta(x: np.ndarray, x_work, y_work) -> np.ndarray:  # noqa: ANN001
    """Full-resolution result: ``y_work`` itself when no downscale happened, else ``x`` plus the change
    ``y_work - x_work`` upsampled (bilinear) to full size."""
    from sfumato.io.tensors import resize, to_hwc

    h, w = x.shape[:2]
    if tuple(y_work.shape[-2:]) == (h, w):
        return _from_uint8(_to_uint8(to_hwc(y_work)))
    delta = to_hwc(resize((y_work - x_work).float().cpu(), (h, w)))
    return _from_uint8(_to_uint8(x + delta))


def tae_roundtrip(rgb: np.ndarray, *, autoencoder: Encoder, resolution: int | None = 512) -> np.ndarray:
    """Encode→decode through ``autoencoder`` (TAEF2 in the registry).

    Images whose long side is at most ``resolution`` go through at full size. Larger ones go through at
    the encoder's working size (long side ``resolution``, the size the protection targets and a trainer
    resizes to), and the round trip's *change* is upsampled (bilinear) and added to the full-size image,
    so the full-resolution detail is kept. ``resolution=None`` runs the full image (memory grows with it).
    """
    x = _check_rgb(rgb, "tae_roundtrip")
    if not getattr(autoencoder, "has_decoder", False):
        raise ValueError(f"tae_roundtrip: encoder {getattr(autoencoder, 'id', '?')!r} has no decoder; use taef2")
    import torch

    from sfumato.io.tensors import to_nchw

    dev = next(autoencoder.parameters()).device
    xf = to_nchw(x).to(dev)
    xw = _work_view(xf, resolution)
    with torch.no_grad():
        yw = autoencoder.decode(autoencoder.encode(xw))[..., : xw.shape[-2], : xw.shape[-1]].float()
    return _apply_work_delta(x, xw.cpu(), yw.cpu())


# ----------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True, kw_only=True)
class AttackSpec:
    """A named, parameterised attack. ``kind`` selects the function, ``params`` its keyword arguments.

    ``random``: the function takes a ``seed``; ``needs_autoencoder``: it takes an ``autoencoder`` (TAEF2).
    """

    name: str
    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    description: str = ""
    random: bool = False
    needs_autoencoder: bool = False
    geometric: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown attack kind {self.kind!r}; choose one of {sorted(_KINDS)}")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "params": self.kwargs, "description": self.description,
                "random": self.random, "needs_autoencoder": self.needs_autoencoder}


def _impress_fn(rgb: np.ndarray, **kw: Any) -> np.ndarray:
    from sfumato.attacks.impress import impress_purify

    return impress_purify(rgb, **kw)


_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "jpeg": jpeg,
    "resize": resize_roundtrip,
    "crop": center_crop,
    "noise": gaussian_noise,
    "blur": gaussian_blur,
    "median": median_filter,
    "noisy_upscale": noisy_upscale,
    "tae_roundtrip": tae_roundtrip,
    "impress": _impress_fn,
}
_RANDOM = frozenset({"noise", "noisy_upscale", "impress"})
_NEEDS_AE = frozenset({"tae_roundtrip", "impress"})


def _spec(name: str, kind: str, description: str, **params: Any) -> AttackSpec:
    return AttackSpec(name=name, kind=kind, params=tuple(params.items()), description=description,
                      random=kind in _RANDOM, needs_autoencoder=kind in _NEEDS_AE, geometric=kind == "crop")


def _describe_jpeg(q: int, ss: str) -> str:
    return f"JPEG quality {q}, {ss} chroma (Pillow/libjpeg)"


def _build_registry() -> dict[str, AttackSpec]:
    reg: list[AttackSpec] = []
    for q in (95, 85, 75, 60):
        for ss in SUBSAMPLING:
            reg.append(_spec(f"jpeg-q{q}-{ss.replace(':', '')}", "jpeg", _describe_jpeg(q, ss),
                             quality=q, subsampling=ss))
    for scale in (0.5, 0.75):
        for method in ("bicubic", "lanczos"):
            reg.append(_spec(f"resize-x{scale}-{method}", "resize",
                             f"downscale x{scale} per side and back, Pillow {method}", scale=scale, method=method))
    reg.append(_spec("crop-90", "crop", "central 90 % of each side, resized back (Pillow Lanczos)",
                     fraction=0.9, method="lanczos"))
    for s in (0.02, 0.05):
        reg.append(_spec(f"noise-{s}", "noise", f"Gaussian noise, sigma {s} (seeded)", sigma=s))
    for r in (1, 2):
        reg.append(_spec(f"blur-r{r}", "blur", f"Gaussian blur, sigma {r} px (Pillow GaussianBlur)", radius=float(r)))
    reg.append(_spec("median-3", "median", "3x3 median filter (Pillow MedianFilter)", size=3))
    reg.append(_spec("noisy-upscale", "noisy_upscale",
                     "noisy upscaling (Hönig et al. 2025): noise sigma 0.1, then the given upscaler, or the "
                     "classical stand-in (box downscale x0.5, Lanczos upscale)", sigma=0.1, factor=0.5))
    reg.append(_spec("tae-roundtrip", "tae_roundtrip", "TAEF2 encode-decode at the working size (long side 512)",
                     resolution=512))
    reg.append(_spec("impress-fast", "impress",
                     "IMPRESS purification (Cao et al. 2023), 20 Adam steps at 256 px, no starting noise",
                     steps=20, resolution=256, init_noise=0.0))
    reg.append(_spec("impress", "impress", "IMPRESS purification (Cao et al. 2023), 200 Adam steps at 512 px",
                     steps=200, resolution=512))
    reg.append(_spec("impress-paper", "impress",
                     "IMPRESS purification with the paper's 3000 Adam steps at 512 px (slow on a CPU)",
                     steps=3000, resolution=512))
    return {a.name: a for a in reg}


ATTACKS: dict[str, AttackSpec] = _build_registry()
"""Every registered attack by name."""

SUITES: dict[str, tuple[str, ...]] = {
    "default": ("jpeg-q85-420", "jpeg-q60-420", "resize-x0.5-lanczos", "crop-90", "noise-0.05", "blur-r1",
                "median-3", "noisy-upscale", "tae-roundtrip", "impress-fast"),
    "all": tuple(n for n in ATTACKS if n not in ("impress-fast", "impress-paper")),
}


def get_attack(name: str | AttackSpec) -> AttackSpec:
    """The registered attack ``name`` (an :class:`AttackSpec` is returned unchanged)."""
    if isinstance(name, AttackSpec):
        return name
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def resolve_attacks(attacks: str | Sequence[str | AttackSpec]) -> list[AttackSpec]:
    """``"default"``, ``"all"``, a comma-separated string of names, or a list of names/specs."""
    if isinstance(attacks, str):
        if attacks in SUITES:
            return [ATTACKS[n] for n in SUITES[attacks]]
        attacks = [a.strip() for a in attacks.split(",") if a.strip()]
    out = [get_attack(a) for a in attacks]
    if not out:
        raise ValueError("no attacks given; use 'default', 'all' or a list of attack names")
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise ValueError(f"attack names must be unique, got {names}")
    return out


def apply_attack(attack: str | AttackSpec, rgb: np.ndarray, *, seed: int = 0, autoencoder: Encoder | None = None,
                 upscaler: Upscaler | None = None, models_dir: Any = None) -> np.ndarray:
    """Run one attack on ``rgb``. Random attacks use ``seed``; TAE/IMPRESS use ``autoencoder`` (TAEF2 is
    loaded from ``models_dir`` when not given); ``upscaler`` is passed to ``noisy-upscale``."""
    spec = get_attack(attack)
    kw = spec.kwargs
    if spec.random:
        kw["seed"] = int(seed)
    if spec.needs_autoencoder:
        if autoencoder is None:
            from sfumato.encoders import load_encoder

            autoencoder = load_encoder("taef2", models_dir=models_dir)
        kw["autoencoder"] = autoencoder
        if spec.kind == "impress":
            kw["models_dir"] = models_dir
    if spec.kind == "noisy_upscale" and upscaler is not None:
        kw["upscaler"] = upscaler
    return _KINDS[spec.kind](rgb, **kw)


def align_reference(attack: str | AttackSpec, rgb: np.ndarray) -> np.ndarray:
    """The geometric part of ``attack`` applied to a reference image (original, target), so that an attacked
    image is compared with references of the same framing. Identity for non-geometric attacks."""
    spec = get_attack(attack)
    if spec.kind == "crop":
        return center_crop(rgb, **spec.kwargs)
    return rgb


# ---------------------------------------------------------------------------------------- random sampling
SAMPLE_RANGES: dict[str, dict[str, Any]] = {
    "jpeg": {"quality": (50, 95), "subsampling": SUBSAMPLING},
    "resize": {"scale": (0.4, 0.9), "method": ("bicubic", "lanczos")},
    "crop": {"fraction": (0.8, 0.95)},
    "noise": {"sigma": (0.01, 0.06)},
    "blur": {"radius": (0.5, 2.0)},
    "median": {"size": (3, 5)},
    "noisy_upscale": {"sigma": (0.05, 0.1)},
}
"""Ranges :func:`sample_attack` draws parameters from (uniform; tuples of strings/odd sizes: a choice)."""


def sample_attack(rng: np.random.Generator, *, kinds: Sequence[str] | None = None) -> tuple[AttackSpec, int]:
    """A random attack with random parameters (:data:`SAMPLE_RANGES`) and a seed for it, drawn from ``rng``.

    Replayable: the same generator state gives the same ``(spec, seed)``; apply it with
    ``apply_attack(spec, rgb, seed=seed)``. ``kinds`` restricts the families (default: all classical ones).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("sample_attack needs a numpy Generator, e.g. np.random.default_rng(0)")
    kinds = list(kinds) if kinds is not None else list(SAMPLE_RANGES)
    unknown = [k for k in kinds if k not in SAMPLE_RANGES]
    if unknown or not kinds:
        raise ValueError(f"sample_attack: kinds must be a non-empty subset of {sorted(SAMPLE_RANGES)}, got {kinds}")
    kind = kinds[int(rng.integers(len(kinds)))]
    r = SAMPLE_RANGES[kind]
    if kind == "jpeg":
        q = int(rng.integers(r["quality"][0], r["quality"][1] + 1))
        ss = str(r["subsampling"][int(rng.integers(2))])
        spec = _spec(f"jpeg-q{q}-{ss.replace(':', '')}", kind, _describe_jpeg(q, ss), quality=q, subsampling=ss)
    elif kind == "resize":
        s = round(float(rng.uniform(*r["scale"])), 3)
        m = str(r["method"][int(rng.integers(2))])
        spec = _spec(f"resize-x{s}-{m}", kind, f"downscale x{s} per side and back, Pillow {m}", scale=s, method=m)
    elif kind == "crop":
        f = round(float(rng.uniform(*r["fraction"])), 3)
        spec = _spec(f"crop-{f}", kind, f"central {f:.1%} of each side, resized back (Pillow Lanczos)",
                     fraction=f, method="lanczos")
    elif kind == "noise":
        s = round(float(rng.uniform(*r["sigma"])), 4)
        spec = _spec(f"noise-{s}", kind, f"Gaussian noise, sigma {s} (seeded)", sigma=s)
    elif kind == "blur":
        rad = round(float(rng.uniform(*r["radius"])), 3)
        spec = _spec(f"blur-r{rad}", kind, f"Gaussian blur, sigma {rad} px (Pillow GaussianBlur)", radius=rad)
    elif kind == "median":
        size = int(r["size"][int(rng.integers(2))])
        spec = _spec(f"median-{size}", kind, f"{size}x{size} median filter (Pillow MedianFilter)", size=size)
    else:
        s = round(float(rng.uniform(*r["sigma"])), 4)
        spec = _spec(f"noisy-upscale-{s}", kind, f"noisy upscaling, noise sigma {s}, classical stand-in",
                     sigma=s, factor=0.5)
    return spec, int(rng.integers(0, 2**31 - 1))


# ---------------------------------------------------------------------------------------------- best of N
def is_usable(psnr_vs_protected: float | None, lpips_vs_original: float | None = None, *,
              min_psnr: float = USABLE_PSNR_DB, max_lpips: float = USABLE_LPIPS) -> bool:
    """Is an attacked image still worth training on? PSNR vs the protected image >= ``min_psnr`` dB, or
    LPIPS vs the clean original <= ``max_lpips`` (either suffices; missing measures count as failing)."""
    ok_psnr = psnr_vs_protected is not None and psnr_vs_protected >= min_psnr
    ok_lpips = lpips_vs_original is not None and lpips_vs_original <= max_lpips
    return bool(ok_psnr or ok_lpips)


@dataclass(frozen=True)
class BestOfN:
    """The attack that removed the most protection among the usable ones."""

    name: str
    retained: float
    n_usable: int
    n_total: int
    considered: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "retained": self.retained, "n_usable": self.n_usable, "n_total": self.n_total,
                "considered": list(self.considered)}


def best_of_n(outcomes: Sequence[Mapping[str, Any]]) -> BestOfN | None:
    """Per image, the usable attack with the lowest ``retained`` protection (the strongest usable attack).

    Each outcome is a mapping with ``name``, ``retained`` (share of protection left, ``None`` when not
    measured) and ``usable`` (bool). Returns ``None`` when no usable attack has a measurement. Ties keep
    the first in order.
    """
    usable = [o for o in outcomes if o.get("usable") and o.get("retained") is not None
              and math.isfinite(float(o["retained"]))]
    if not usable:
        return None
    best = min(usable, key=lambda o: float(o["retained"]))
    return BestOfN(name=str(best["name"]), retained=float(best["retained"]), n_usable=len(usable),
                   n_total=len(outcomes), considered=tuple(str(o["name"]) for o in usable))
