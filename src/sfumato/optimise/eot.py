"""Expectation over transformation (EOT): differentiable stand-ins of the attack suite.

Athalye, Engstrom, Ilyas, Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018: to make a
perturbation survive a family of transformations T, optimise the expected objective
``E_{t ~ T}[ f(t(x + δ)) ]``, estimated by sampling one t per step and back-propagating through it. This
module provides differentiable counterparts of the real (non-differentiable) operations of
:mod:`sfumato.attacks.real`, a seeded sampler over them, and :func:`make_transform`, whose result is the
``transform(x, generator) -> x`` callable that :func:`sfumato.optimize.optimise` applies to ``x0 + δ``
before the objective at every step.

Every transform is a pure function ``fn(x, params) -> x`` on float RGB ``1x3xHxW`` (any N) in ``[0, 1]``
that keeps the size, plus a sampler ``sample_<name>(config, generator) -> params`` that returns a small
frozen dataclass of plain numbers: the same generator state gives the same params, and the same params
give the same output (replayable).

* ``jpeg`` — :func:`diff_jpeg`, a differentiable JPEG written from the standard (ITU-T T.81 / JFIF):
  8-bit input, RGB→YCbCr (JFIF full range), optional 4:2:0 chroma subsampling (2x2 average, then a
  triangular "fancy" upsampling on decode, as libjpeg does: bilinear with half-pixel centres), padding to
  multiples of 16 by edge replication, 8x8 block DCT-II, division by the IJG (Annex K) quantisation
  tables scaled for the quality exactly as libjpeg's ``jpeg_quality_scaling`` / ``jpeg_add_quant_table``
  with ``force_baseline`` (Pillow's setting), rounding, dequantisation, inverse DCT, YCbCr→RGB. Rounding
  of the DCT coefficients is differentiable either by the straight-through estimator (``"ste"``: exact
  rounding forward, identity gradient — Bengio, Léonard, Courville 2013) or by the cubic approximation
  ``round(x) + (x - round(x))**3`` of Shin & Song, "JPEG-resistant Adversarial Images", NeurIPS 2017
  workshop (``"cubic"``). The 8-bit roundings of the pixel samples that libjpeg does between stages use
  the straight-through estimator, so the forward pass tracks the real codec closely
  (``scripts/validate_diff_jpeg.py`` measures it against Pillow).
* ``resize`` — down by a sampled scale and back up (bilinear or bicubic, antialiased when shrinking).
* ``crop`` — keep a sampled 90-100 % window at a sampled position and resize it back (bilinear).
* ``noise`` — additive Gaussian noise of a sampled standard deviation (seeded), clipped to [0, 1].
* ``blur`` — separable Gaussian blur of a sampled standard deviation (pixels), edge-replicated.
* ``tae`` — encode→decode through an :class:`~sfumato.encoders.base.Encoder` with a decoder (TAEF2).
  Expensive: give it a small weight.

:class:`EOTConfig` says which transforms are drawn with which weights and parameter ranges. One transform
is applied per call (the objective takes a single image, not a batch): with probability ``p_identity``
none, otherwise transform k with probability proportional to its weight. ``samples_per_step`` is
recorded for callers that average the objective over several draws per step; the callable itself always
applies exactly one draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from sfumato.config import JSONConfig, require

if TYPE_CHECKING:  # pragma: no cover
    from sfumato.encoders.base import Encoder

__all__ = [
    "EOTConfig",
    "EOT_PRESETS",
    "EOT",
    "TRANSFORMS",
    "JpegParams",
    "ResizeParams",
    "CropParams",
    "NoiseParams",
    "BlurParams",
    "TaeParams",
    "diff_jpeg",
    "diff_round",
    "jpeg_quant_tables",
    "resize_roundtrip",
    "random_crop",
    "gaussian_noise",
    "gaussian_blur",
    "tae_roundtrip",
    "make_transform",
]

TRANSFORMS = ("jpeg", "resize", "crop", "noise", "blur", "tae")
SUBSAMPLING = ("4:2:0", "4:4:4")
RESIZE_MODES = ("bilinear", "bicubic")
ROUNDING = ("ste", "cubic")

# ------------------------------------------------------------------------------------------------ JPEG
# IJG / ITU-T T.81 Annex K example tables, natural (row-major) order, as in libjpeg's jcparam.c.
_STD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
_STD_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)


def jpeg_quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """Luma and chroma quantisation tables (64 ints, row-major) for ``quality`` 1..100, as libjpeg
    builds them: ``scale = 5000 / q`` below 50, else ``200 - 2 q``; ``(base * scale + 50) // 100``
    clamped to [1, 255] (baseline)."""
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality

    def table(base: tuple[int, ...]) -> list[int]:
        return [min(255, max(1, (b * scale + 50) // 100)) for b in base]

    return table(_STD_LUMA), table(_STD_CHROMA)


def _dct_matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix ``D[u, x] = c(u) cos((2x + 1) u π / 16)`` (JPEG's FDCT in 2-D)."""
    u = torch.arange(8, dtype=torch.float64)[:, None]
    x = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * x + 1) * u * math.pi / 16) * math.sqrt(2 / 8)
    d[0] = d[0] / math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def diff_round(x: torch.Tensor, mode: str = "ste") -> torch.Tensor:
    """Differentiable rounding: ``"ste"`` rounds exactly with an identity gradient (straight-through);
    ``"cubic"`` is ``round(x) + (x - round(x))**3`` (Shin & Song 2017), gradient ``3 (x - round(x))**2``."""
    r = torch.round(x)
    if mode == "ste":
        return x + (r - x).detach()
    if mode == "cubic":
        return r.detach() + (x - r.detach()) ** 3
    raise ValueError(f"rounding must be one of {ROUNDING}, got {mode!r}")


def _ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _blocks_transform(plane: torch.Tensor, d: torch.Tensor, q: torch.Tensor, rounding: str) -> torch.Tensor:
    """Level-shifted plane ``[N, H, W]`` (H, W multiples of 8) → quantised/dequantised → back, same shape."""
    n, h, w = plane.shape
    b = plane.reshape(n, h // 8, 8, w // 8, 8)
    coef = torch.einsum("ux,nixjy,vy->niujv", d, b, d)
    qb = q.view(1, 1, 8, 1, 8)
    coef = diff_round(coef / qb, rounding) * qb
    rec = torch.einsum("ux,niujv,vy->nixjy", d, coef, d)
    return rec.reshape(n, h, w)


@dataclass(frozen=True)
class JpegParams:
    quality: int
    subsampling: str = "4:2:0"
    rounding: str = "ste"


def diff_jpeg(x: torch.Tensor, params: JpegParams) -> torch.Tensor:
    """Differentiable JPEG encode→decode of ``x`` (Nx3xHxW in [0, 1]); see the module docstring."""
    require(params.subsampling in SUBSAMPLING, f"JPEG subsampling must be one of {SUBSAMPLING}, "
           f"got {params.subsampling!r}")
    luma_q, chroma_q = jpeg_quant_tables(int(params.quality))
    dt = torch.promote_types(x.dtype, torch.float32)
    n, _, h, w = x.shape
    v = _ste(x.to(dt).clamp(0, 1) * 255)  # the 8-bit image the encoder is given
    ph, pw = (-h) % 16, (-w) % 16
    if ph or pw:
        v = F.pad(v, (0, pw, 0, ph), mode="replicate")
    r, g, b = v.unbind(1)
    y = _ste(0.299 * r + 0.587 * g + 0.114 * b)
    cb = _ste(-0.168736 * r - 0.331264 * g + 0.5 * b + 128)
    cr = _ste(0.5 * r - 0.418688 * g - 0.081312 * b + 128)
    chroma = torch.stack([cb, cr], 1)
    sub = params.subsampling == "4:2:0"
    if sub:
        chroma = _ste(F.avg_pool2d(chroma, 2))
    d = _dct_matrix(dt, x.device)
    ql = torch.tensor(luma_q, dtype=dt, device=x.device).view(8, 8)
    qc = torch.tensor(chroma_q, dtype=dt, device=x.device).view(8, 8)
    y = _blocks_transform(y - 128, d, ql, params.rounding) + 128
    ch, cw = chroma.shape[-2:]
    chroma = _blocks_transform(chroma.reshape(n * 2, ch, cw) - 128, d, qc, params.rounding).reshape(n, 2, ch, cw) + 128
    y = _ste(y).clamp(0, 255)
    chroma = _ste(chroma).clamp(0, 255)
    if sub:  # libjpeg's "fancy" (triangular) upsampling = bilinear with half-pixel centres, edges replicated
        chroma = _ste(F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False))
    cb, cr = chroma[:, 0] - 128, chroma[:, 1] - 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    rgb = _ste(rgb).clamp(0, 255) / 255
    return rgb[..., :h, :w].to(x.dtype)


# ------------------------------------------------------------------------------------ geometric & filters
@dataclass(frozen=True)
class ResizeParams:
    scale: float
    mode: str = "bilinear"


def resize_roundtrip(x: torch.Tensor, params: ResizeParams) -> torch.Tensor:
    """Resize by ``scale`` per side (antialiased) and back to the original size with the same filter."""
    require(0 < params.scale <= 1, f"resize scale must be in (0, 1], got {params.scale}")
    require(params.mode in RESIZE_MODES, f"resize mode must be one of {RESIZE_MODES}, got {params.mode!r}")
    h, w = x.shape[-2:]
    small = (max(1, round(h * params.scale)), max(1, round(w * params.scale)))
    y = F.interpolate(x, size=small, mode=params.mode, align_corners=False, antialias=True)
    y = F.interpolate(y, size=(h, w), mode=params.mode, align_corners=False)
    return y.clamp(0, 1)


@dataclass(frozen=True)
class CropParams:
    fraction: float
    top: float = 0.5  # position of the window inside the slack, 0 = top edge, 1 = bottom edge
    left: float = 0.5


def random_crop(x: torch.Tensor, params: CropParams) -> torch.Tensor:
    """Keep a ``fraction`` x ``fraction`` window at relative position (``top``, ``left``), resize back."""
    require(0 < params.fraction <= 1, f"crop fraction must be in (0, 1], got {params.fraction}")
    require(0 <= params.top <= 1 and 0 <= params.left <= 1,
           f"crop position (top, left) must be in [0, 1], got ({params.top}, {params.left})")
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * params.fraction)), max(1, round(w * params.fraction))
    t, lft = round((h - ch) * params.top), round((w - cw) * params.left)
    y = x[..., t:t + ch, lft:lft + cw]
    if (ch, cw) == (h, w):
        return y
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class NoiseParams:
    sigma: float
    seed: int


def gaussian_noise(x: torch.Tensor, params: NoiseParams) -> torch.Tensor:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` drawn from ``seed`` (CPU generator, so the
    same on every device), then clip to [0, 1]."""
    require(params.sigma >= 0, f"noise sigma must be >= 0, got {params.sigma}")
    g = torch.Generator(device="cpu").manual_seed(int(params.seed))
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return (x + params.sigma * noise).clamp(0, 1)


@dataclass(frozen=True)
class BlurParams:
    sigma: float


def gaussian_blur(x: torch.Tensor, params: BlurParams) -> torch.Tensor:
    """Separable Gaussian blur, standard deviation ``sigma`` pixels, radius ``ceil(3 sigma)``, edges
    replicated (Pillow's ``GaussianBlur(radius)`` uses the same sigma, via box passes)."""
    require(params.sigma > 0, f"blur sigma must be > 0 pixels, got {params.sigma}")
    rad = max(1, math.ceil(3 * params.sigma))
    t = torch.arange(-rad, rad + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / params.sigma) ** 2)
    k = (k / k.sum()).to(dtype=x.dtype, device=x.device)
    c = x.shape[1]
    y = F.pad(x, (rad, rad, rad, rad), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass(frozen=True)
class TaeParams:
    """The TAE round trip has no random parameters."""


def tae_roundtrip(x: torch.Tensor, params: TaeParams, *, encoder: Encoder) -> torch.Tensor:
    """``encoder.decode(encoder.encode(x))`` cropped to ``x``'s size (the encoder pads to its stride)."""
    if encoder is None or not encoder.has_decoder:
        raise ValueError("the tae transform needs an encoder with a decoder, e.g. load_encoder('taef2')")
    h, w = x.shape[-2:]
    return encoder.decode(encoder.encode(x))[..., :h, :w].to(x.dtype)


# ------------------------------------------------------------------------------------------------ config
def _range(v: Any, name: str, lo: float, hi: float) -> None:
    require(isinstance(v, tuple) and len(v) == 2, f"{name} must be a (low, high) pair, got {v!r}")
    require(lo <= v[0] <= v[1] <= hi, f"{name} must satisfy {lo} <= low <= high <= {hi}, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class EOTConfig(JSONConfig):
    """Which transforms EOT draws, how often, and their parameter ranges (uniform within each range).

    Per call: no transform with probability ``p_identity``; otherwise transform k with probability
    ``(1 - p_identity) * w_k / sum(w)`` where ``w_k`` is its ``<name>_weight`` (0 disables it).
    ``jpeg_quality``: inclusive integer range; ``resize_scale``/``crop_fraction``: per-side factors;
    ``noise_sigma``/``blur_sigma``: [0, 1] pixel units / pixels. ``tae`` needs ``make_transform(...,
    encoder=)`` with a decoder. ``samples_per_step`` is for callers that average several draws per step.
    """

    p_identity: float = 0.2
    samples_per_step: int = 1
    jpeg_weight: float = 1.0
    jpeg_quality: tuple[int, int] = (60, 95)
    jpeg_subsampling: tuple[str, ...] = ("4:2:0", "4:4:4")
    jpeg_rounding: Literal["ste", "cubic"] = "ste"
    resize_weight: float = 1.0
    resize_scale: tuple[float, float] = (0.5, 0.9)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    crop_weight: float = 1.0
    crop_fraction: tuple[float, float] = (0.9, 1.0)
    noise_weight: float = 1.0
    noise_sigma: tuple[float, float] = (0.005, 0.03)
    blur_weight: float = 1.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    tae_weight: float = 0.0

    def __post_init__(self) -> None:
        require(0 <= self.p_identity <= 1, f"p_identity must be in [0, 1], got {self.p_identity}")
        require(isinstance(self.samples_per_step, int) and self.samples_per_step >= 1,
               f"samples_per_step must be an int >= 1, got {self.samples_per_step!r}")
        for name in TRANSFORMS:
            wt = getattr(self, f"{name}_weight")
            require(isinstance(wt, (int, float)) and wt >= 0 and math.isfinite(wt),
                   f"{name}_weight must be a finite number >= 0 (0 disables {name}), got {wt!r}")
        require(self.p_identity == 1 or sum(self.weights().values()) > 0,
               "every transform weight is 0: give one a positive weight, or set p_identity=1 (no EOT)")
        _range(self.jpeg_quality, "jpeg_quality", 1, 100)
        require(all(isinstance(q, int) for q in self.jpeg_quality), f"jpeg_quality must be ints, got {self.jpeg_quality!r}")
        require(len(self.jpeg_subsampling) >= 1 and set(self.jpeg_subsampling) <= set(SUBSAMPLING),
               f"jpeg_subsampling must be a non-empty subset of {SUBSAMPLING}, got {self.jpeg_subsampling!r}")
        require(self.jpeg_rounding in ROUNDING, f"jpeg_rounding must be one of {ROUNDING}, got {self.jpeg_rounding!r}")
        _range(self.resize_scale, "resize_scale", 1e-3, 1)
        require(len(self.resize_modes) >= 1 and set(self.resize_modes) <= set(RESIZE_MODES),
               f"resize_modes must be a non-empty subset of {RESIZE_MODES}, got {self.resize_modes!r}")
        _range(self.crop_fraction, "crop_fraction", 1e-3, 1)
        _range(self.noise_sigma, "noise_sigma", 0, 1)
        _range(self.blur_sigma, "blur_sigma", 1e-3, 50)

    def weights(self) -> dict[str, float]:
        """Positive weights by transform name (the transforms that can be drawn)."""
        return {n: float(getattr(self, f"{n}_weight")) for n in TRANSFORMS if getattr(self, f"{n}_weight") > 0}


_NONE = dict.fromkeys((f"{n}_weight" for n in TRANSFORMS), 0.0)
EOT_PRESETS: dict[str, EOTConfig] = {
    "none": EOTConfig(p_identity=1.0, **_NONE),
    "light": EOTConfig(p_identity=0.5, jpeg_quality=(75, 95), resize_scale=(0.75, 0.95), crop_fraction=(0.95, 1.0),
                       noise_sigma=(0.002, 0.01), blur_sigma=(0.3, 0.8)),
    "default": EOTConfig(),
    "strong": EOTConfig(p_identity=0.1, jpeg_weight=2.0, jpeg_quality=(50, 95), resize_scale=(0.4, 0.9),
                        noise_sigma=(0.01, 0.05), blur_sigma=(0.5, 2.0), tae_weight=0.5),
}
"""``none``: no transform. ``light``: mild web handling. ``default``: the attack suite's common range
(JPEG 60-95, resize 0.5-0.9, crop 90-100 %, noise σ ≤ 0.03, blur σ ≤ 1.5). ``strong``: wider ranges,
JPEG twice as likely, plus the TAE round trip (needs ``encoder=``)."""


# ---------------------------------------------------------------------------------------------- sampling
def _u(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g, device=g.device, dtype=torch.float64))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * _u(g)


def _choice(g: torch.Generator, options: tuple[Any, ...]) -> Any:
    return options[min(len(options) - 1, int(_u(g) * len(options)))]


def sample_jpeg(config: EOTConfig, g: torch.Generator) -> JpegParams:
    lo, hi = config.jpeg_quality
    q = lo + min(hi - lo, int(_u(g) * (hi - lo + 1)))
    return JpegParams(quality=int(q), subsampling=_choice(g, config.jpeg_subsampling), rounding=config.jpeg_rounding)


def sample_resize(config: EOTConfig, g: torch.Generator) -> ResizeParams:
    return ResizeParams(scale=_uniform(g, *config.resize_scale), mode=_choice(g, config.resize_modes))


def sample_crop(config: EOTConfig, g: torch.Generator) -> CropParams:
    return CropParams(fraction=_uniform(g, *config.crop_fraction), top=_u(g), left=_u(g))


def sample_noise(config: EOTConfig, g: torch.Generator) -> NoiseParams:
    sigma = _uniform(g, *config.noise_sigma)
    return NoiseParams(sigma=sigma, seed=int(_u(g) * 2**31))


def sample_blur(config: EOTConfig, g: torch.Generator) -> BlurParams:
    return BlurParams(sigma=_uniform(g, *config.blur_sigma))


def sample_tae(config: EOTConfig, g: torch.Generator) -> TaeParams:
    return TaeParams()


_FNS = {"jpeg": diff_jpeg, "resize": resize_roundtrip, "crop": random_crop, "noise": gaussian_noise,
        "blur": gaussian_blur}
_SAMPLERS = {"jpeg": sample_jpeg, "resize": sample_resize, "crop": sample_crop, "noise": sample_noise,
             "blur": sample_blur, "tae": sample_tae}


class EOT:
    """The ``transform(x, generator) -> x`` callable of :func:`sfumato.optimize.optimise`.

    ``sample(generator)`` draws ``(name, params)`` (``("identity", None)`` for no transform);
    ``apply(x, name, params)`` applies it; calling the object does both and remembers the draw in
    :attr:`last` (for logs and replay).
    """

    def __init__(self, config: EOTConfig, *, encoder: Encoder | None = None) -> None:
        self.config = config
        self.encoder = encoder
        self.last: tuple[str, Any] | None = None
        w = config.weights()
        self._names = tuple(w)
        total = sum(w.values())
        self._cum: list[float] = []
        acc = 0.0
        for n in self._names:
            acc += w[n] / total
            self._cum.append(acc)

    def sample(self, generator: torch.Generator) -> tuple[str, Any]:
        if self.config.p_identity >= 1 or _u(generator) < self.config.p_identity:
            return "identity", None
        u = _u(generator)
        name = next((n for n, c in zip(self._names, self._cum, strict=True) if u < c), self._names[-1])
        return name, _SAMPLERS[name](self.config, generator)

    def apply(self, x: torch.Tensor, name: str, params: Any) -> torch.Tensor:
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3 and x.is_floating_point()):
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"EOT transforms take a float RGB batch (N, 3, H, W) in [0, 1], got {got}")
        if name == "identity":
            return x
        if name == "tae":
            return tae_roundtrip(x, params, encoder=self.encoder)  # type: ignore[arg-type]
        if name not in _FNS:
            raise ValueError(f"unknown EOT transform {name!r}; known: {('identity', *TRANSFORMS)}")
        return _FNS[name](x, params)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        name, params = self.sample(generator)
        self.last = (name, params)
        return self.apply(x, name, params)


def make_transform(config: EOTConfig | str = "default", *, encoder: Encoder | None = None) -> EOT:
    """Build the EOT transform for :func:`sfumato.optimize.optimise` from a config or a preset name
    (:data:`EOT_PRESETS`). ``encoder``: a decoder-equipped encoder, required when ``tae_weight > 0``."""
    if isinstance(config, str):
        require(config in EOT_PRESETS, f"unknown EOT preset {config!r}; choose one of {sorted(EOT_PRESETS)}")
        config = EOT_PRESETS[config]
    require(isinstance(config, EOTConfig), f"config must be an EOTConfig or a preset name, got {type(config).__name__}")
    if config.tae_weight > 0 and config.p_identity < 1:
        require(encoder is not None and encoder.has_decoder,
               "this EOT config draws the tae round trip: pass encoder= an encoder with a decoder "
               "(e.g. load_encoder('taef2')), or set tae_weight=0")
    return EOT(config, encoder=encoder)
