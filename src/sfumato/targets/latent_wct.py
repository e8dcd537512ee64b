"""Rendering an artwork in a target style, Ω(x, T), in the latent space of an autoencoder.

Glaze renders the artwork in the target style with a style-transfer model before cloaking toward it
(Shan et al., USENIX Security 2023, §5.2). We need no extra network: the style statistics are
transferred in the latent space of an encoder that has a decoder (TAEF2 by default) with the
whitening–colouring transform (WCT; Li et al., "Universal Style Transfer via Feature Transforms",
NeurIPS 2017) — the latent's full channel covariance is matched, not only per-channel mean and variance
(AdaIN; Huang & Belongie, ICCV 2017, kept for comparison) — and the result is decoded to pixels. The
target image is then encoded by every encoder of the ensemble, so each gets a target that an image can
actually reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _flat(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[1], -1)


def adain(zc: torch.Tensor, zs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-channel mean/std of ``zc`` replaced by the pooled statistics of the style latents."""
    fs = torch.cat([_flat(z) for z in zs], dim=1)
    fc = _flat(zc)
    mc, sc = fc.mean(1, keepdim=True), fc.std(1, keepdim=True) + 1e-5
    ms, ss = fs.mean(1, keepdim=True), fs.std(1, keepdim=True)
    return ((fc - mc) / sc * ss + ms).reshape(zc.shape)


def _sqrtm(cov: torch.Tensor, inverse: bool, eps: float) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp_min(eps)
    p = -0.5 if inverse else 0.5
    return evecs @ torch.diag(evals**p) @ evecs.T


def wct(zc: torch.Tensor, zs: Sequence[torch.Tensor], *, eps: float = 1e-4) -> torch.Tensor:
    """Whitening–colouring transform: ``zc``'s channel covariance replaced by the style latents'."""
    fs = torch.cat([_flat(z) for z in zs], dim=1).double()
    fc = _flat(zc).double()
    mc, ms = fc.mean(1, keepdim=True), fs.mean(1, keepdim=True)
    fc0, fs0 = fc - mc, fs - ms
    cc = fc0 @ fc0.T / (fc0.shape[1] - 1)
    cs = fs0 @ fs0.T / (fs0.shape[1] - 1)
    out = _sqrtm(cs, False, eps) @ _sqrtm(cc, True, eps) @ fc0 + ms
    return out.to(zc.dtype).reshape(zc.shape)


_LATENT_CACHE: dict[tuple[int, int], torch.Tensor] = {}


def exemplar_latents(renderer, exemplars: Sequence[torch.Tensor]) -> list[torch.Tensor]:  # noqa: ANN001
    """Latents of style exemplars, computed once per (renderer, exemplar) in a process."""
    out = []
    with torch.no_grad():
        for e in exemplars:
            key = (id(renderer), hash((tuple(e.shape), e.flatten()[:: max(1, e.numel() // 4096)].sum().item(),
                                       float(e.sum()))))
            if key not in _LATENT_CACHE:
                _LATENT_CACHE[key] = renderer.encode(e)
            out.append(_LATENT_CACHE[key])
    return out


def render_in_style(renderer, x: torch.Tensor, exemplars: Sequence[torch.Tensor], *, strength: float = 1.0,
                    method: str = "wct") -> torch.Tensor:
    """Ω(x, T): ``x`` (1x3xHxW in [0, 1]) rendered in the style of ``exemplars`` through ``renderer``'s
    latent space. ``strength`` blends the transferred latent with the original one."""
    with torch.no_grad():
        zc = renderer.encode(x)
        zs = exemplar_latents(renderer, exemplars)
        zt = wct(zc, zs) if method == "wct" else adain(zc, zs)
        z = zc + strength * (zt - zc)
        return renderer.decode(z)[..., : x.shape[-2], : x.shape[-1]]
