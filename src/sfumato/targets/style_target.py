"""Choosing and rendering the style target (Glaze's Omega(x, T), Shan et al. USENIX Security 2023, section 4.2): candidate styles ranked by Gram distance, one picked between the 50th and 75th percentile, rendered and vetted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sfumato.config import CloakConfig
from sfumato.encoders.base import Encoder
from sfumato.io.tensors import resize, to_nchw, work_size

_SIG_CACHE: dict[tuple[str, int], list[torch.Tensor]] = {}
#: Gatys rendering of the target: 150 Adam steps, the first 100 at half resolution. Measured on a
#: 496² Van Gogh toward three built-in styles (2 cores): 12 s instead of 25 s for 150 full-resolution
#: steps, with a Gram distance to the style 4–9 % higher (0.252 vs 0.243, 0.304 vs 0.279, 0.404 vs 0.382).
GATYS_STEPS, GATYS_COARSE_STEPS = 150, 100



def choose_style(x_work: torch.Tensor, renderer: Encoder, candidates: Sequence[Any], *, seed: int,
                 low_pct: float = 50, high_pct: float = 75, models_dir=None,  # noqa: ANN001
                 ) -> tuple[Any, dict[str, float]]:
    """Glaze's target choice: a candidate whose style distance from the artwork lies between the
    ``low_pct`` and ``high_pct`` percentiles of all candidates' distances (seeded pick among those).
    Style distance: Gram matrices of ImageNet SqueezeNet features (:func:`sfumato.targets.gatys.gram_distance`)."""
    dists = style_distances(x_work, candidates, models_dir=models_dir)
    return ranked_styles(x_work, candidates, seed=seed, low_pct=low_pct, high_pct=high_pct,
                         models_dir=models_dir, dists=dists)[0], dists


def style_distances(x_work: torch.Tensor, candidates: Sequence[Any], *, models_dir=None) -> dict[str, float]:  # noqa: ANN001
    """Gram style distance from the artwork (seen at 256 px) to each candidate style's exemplars."""
    from sfumato.targets.gatys import gram_distance, gram_signature

    sig = gram_signature([resize(x_work, work_size(*x_work.shape[-2:], 256))], models_dir=models_dir)
    return {c.name: gram_distance(sig, style_signature(c, models_dir)) for c in candidates}


def style_signature(style: Any, models_dir) -> list[torch.Tensor]:  # noqa: ANN001
    from sfumato.targets.gatys import STYLE_TAPS, gram_signature
    from sfumato.targets.style_cache import cached_arrays, code_digest, digest

    key = (style.name, hash(tuple(float(e[::17, ::17].sum()) for e in style.exemplars)))
    if key not in _SIG_CACHE:
        def compute() -> list[np.ndarray]:
            return [g.cpu().numpy() for g in gram_signature([to_nchw(e) for e in style.exemplars],
                                                            models_dir=models_dir)]

        # on disk only for the built-in styles (a user's folders are not copied into the cache)
        if getattr(style, "builtin", False):
            # the Gram code, the network's code and weights (SHA-checked at load), numpy/torch, the pixels
            from sfumato.models import REGISTRY

            weights = sorted(f"{k}={v.sha256}" for k, v in REGISTRY.items() if "squeeze" in k)
            file_key = digest(str(STYLE_TAPS), code_digest("sfumato.targets.gatys", "sfumato.metrics.lpips"),
                              *weights, *(f"{e.shape}{e.dtype}".encode() + np.ascontiguousarray(e).tobytes()
                                          for e in style.exemplars))
            arrays = cached_arrays(f"gram-{style.name}-{file_key}", compute)
        else:
            arrays = compute()
        _SIG_CACHE[key] = [torch.from_numpy(a) for a in arrays]
    return _SIG_CACHE[key]


def ranked_styles(x_work: torch.Tensor, candidates: Sequence[Any], *, seed: int, low_pct: float = 50,
                  high_pct: float = 75, models_dir=None,  # noqa: ANN001
                  dists: dict[str, float] | None = None) -> list[Any]:
    """Candidates in the order they are tried: first a seeded pick among those in Glaze's percentile band
    of style distance, then the rest of the band, then the others from far to near. ``dists``: the
    :func:`style_distances` when the caller already has them."""
    if len(candidates) == 1:
        return list(candidates)
    if dists is None:
        dists = style_distances(x_work, candidates, models_dir=models_dir)
    vals = np.array(list(dists.values()))
    lo, hi = np.percentile(vals, low_pct), np.percentile(vals, high_pct)
    band = [c for c in candidates if lo <= dists[c.name] <= hi] or list(candidates)
    rng = np.random.default_rng(seed)
    first = int(rng.integers(len(band)))
    band = band[first:] + band[:first]
    rest = sorted((c for c in candidates if c not in band), key=lambda c: -dists[c.name])
    return band + rest


def render_target(x0: torch.Tensor, renderer: Encoder, candidates: Sequence[Any], config: CloakConfig, *,
                  seed: int, models_dir=None) -> tuple[torch.Tensor, Any, dict[str, Any]]:  # noqa: ANN001
    """Ω(x, T): render the work-resolution artwork ``x0`` in a target style and vet it.

    ``config.target_renderer`` = ``"gatys"`` (neural style transfer, :mod:`sfumato.targets.gatys`),
    ``"latent-wct"`` (:func:`sfumato.targets.latent_wct.render_in_style`) or ``"img2img"`` (a diffusers pipeline,
    ``config.target_model``; :mod:`sfumato.targets.img2img`). The renderer's latent of the result
    is blended with the artwork's by ``style_strength``. A candidate is kept only if its own AI view (the
    renderer's decode of its latent) is closer in Gram style distance to the target style's exemplars than
    to the artwork; otherwise the next candidate (:func:`ranked_styles`) is tried, up to
    ``config.target_tries``; if none passes, the one whose AI view is relatively farthest from the artwork
    is used and the manifest says so. Returns (target image, chosen style, report); the report holds the
    renderer, the vetting of each candidate tried and every candidate's ``style_distances``."""
    from sfumato.targets.gatys import gatys_transfer, gram_distance, gram_signature
    from sfumato.targets.latent_wct import render_in_style

    dists = style_distances(x0, candidates, models_dir=models_dir)
    order = ranked_styles(x0, candidates, seed=seed, models_dir=models_dir, dists=dists)
    art_sig = gram_signature([x0], models_dir=models_dir)
    tried = []
    best = None
    for style in order[: max(1, config.target_tries)]:
        exemplars = [to_nchw(e).to(x0) for e in style.exemplars]
        if config.target_renderer in ("gatys", "img2img"):
            if config.target_renderer == "gatys":
                n = config.effort.target_steps
                steps, coarse = (GATYS_STEPS, GATYS_COARSE_STEPS) if n is None else (n, round(n * 2 / 3))
                img = gatys_transfer(x0, exemplars, steps=steps, coarse_steps=coarse, models_dir=models_dir)
            else:
                from sfumato.targets.img2img import img2img_transfer

                img = img2img_transfer(x0, style.name, model=config.target_model, seed=seed)
            with torch.no_grad():
                zc, zt = renderer.encode(x0), renderer.encode(img)
                z = zc + config.style_strength * (zt - zc)
                view = renderer.decode(z)[..., : x0.shape[-2], : x0.shape[-1]].clamp(0, 1)
            if config.style_strength < 1:
                img = view
        else:
            img = render_in_style(renderer, x0, exemplars, strength=config.style_strength).clamp(0, 1)
            with torch.no_grad():
                view = renderer.decode(renderer.encode(img))[..., : x0.shape[-2], : x0.shape[-1]].clamp(0, 1)
        sig = gram_signature([view], models_dir=models_dir)
        to_style, to_art = gram_distance(sig, style_signature(style, models_dir)), gram_distance(sig, art_sig)
        ok = to_style < to_art
        tried.append({"style": style.name, "ai_view_to_style": round(to_style, 4),
                      "ai_view_to_artwork": round(to_art, 4), "accepted": ok})
        margin = to_art / max(to_style, 1e-8)
        if ok or best is None or margin > best[0]:
            best = (margin, img, style)
        if ok:
            break
    assert best is not None
    report = {"style_distances": {k: round(v, 4) for k, v in dists.items()}, "renderer": config.target_renderer,
              "vetting": tried, "vetted": bool(tried[-1]["accepted"])}
    return best[1], best[2], report
