"""A differentiable JPEG encode→decode, written from the standard (ITU-T T.81 / JFIF): the stand-in for
the real ``jpeg`` attack in EOT.

8-bit input, RGB→YCbCr (JFIF full range), optional 4:2:0 chroma subsampling (2x2 average, then a
triangular "fancy" upsampling on decode, as libjpeg does: bilinear with half-pixel centres), padding to
multiples of 16 by edge replication, 8x8 block DCT-II, division by the IJG (Annex K) quantisation tables
scaled for the quality exactly as libjpeg's ``jpeg_quality_scaling`` / ``jpeg_add_quant_table`` with
``force_baseline`` (Pillow's setting), rounding, dequantisation, inverse DCT, YCbCr→RGB. Rounding of the
DCT coefficients is differentiable either by the straight-through estimator (``"ste"``: exact rounding
forward, identity gradient — Bengio, Léonard, Courville 2013) or by the cubic approximation
``round(x) + (x - round(x))**3`` of Shin & Song, "JPEG-resistant Adversarial Images", NeurIPS 2017
workshop (``"cubic"``). The 8-bit roundings of the pixel samples that libjpeg does between stages use the
straight-through estimator, so the forward pass tracks the real codec closely
(``scripts/validate_diff_jpeg.py`` measures it against Pillow).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sfumato.attacks.params import ROUNDING, SUBSAMPLING, JpegParams
from sfumato.config import require

__all__ = ["diff_jpeg", "diff_round", "jpeg_quant_tables"]

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

