"""The preview: a quick look before the full run (``sfumato cloak FILE --preview`` and the web app's Preview
both call :func:`preview`). The image is cloaked small (long side :data:`~sfumato.config.PREVIEW_SIDE`), with
few steps at its one work view and a cheaper Gatys target, and judged at that size; nothing is written.
Re-exported by :mod:`sfumato.api`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sfumato.config import PREVIEW_SIDE, PREVIEW_STEPS, PREVIEW_TARGET_STEPS, PREVIEW_VIEWS, CloakConfig

__all__ = ["PreviewResult", "preview", "preview_config", "preview_downscale"]


@dataclass(frozen=True)
class PreviewResult:
    """What :func:`preview` returns: the AI views (what a model sees, ``HxWx3`` float32 in [0, 1]) of the
    downscaled image before and after a quick cloak at ``side`` px, the verdict on that view, the target,
    the latent figures per encoder and the timings. Nothing is written."""

    before: np.ndarray
    after: np.ndarray
    verdict: dict[str, Any]
    target: dict[str, Any]
    latent: dict[str, dict[str, Any]]
    side: int
    steps: int
    timing_s: dict[str, float]


def preview_config(config: CloakConfig | None = None, *, side: int | None = None,
                   steps: int | None = None) -> CloakConfig:
    """``config`` (default: the default preset) at the preview's work size ``side`` (default
    :data:`PREVIEW_SIDE`), its one work view, ``steps`` steps (default: the fewer of the preset's and
    :data:`PREVIEW_STEPS`) and a Gatys target of :data:`PREVIEW_TARGET_STEPS` steps."""
    cfg = config or CloakConfig()
    eff = cfg.effort
    return dataclasses.replace(cfg, effort=dataclasses.replace(
        eff, resolution=int(side or PREVIEW_SIDE), views=PREVIEW_VIEWS,
        steps=int(steps or min(eff.steps, PREVIEW_STEPS)),
        target_steps=min(eff.target_steps or PREVIEW_TARGET_STEPS, PREVIEW_TARGET_STEPS)))


def preview_downscale(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` with its long side at most ``side`` px (area-averaged), float32 in [0, 1]: the image the
    preview cloaks and judges."""
    from sfumato.io.tensors import resize, to_hwc, to_nchw, work_size

    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return np.ascontiguousarray(rgb, dtype=np.float32)
    return np.clip(to_hwc(resize(to_nchw(rgb), work_size(h, w, side))), 0, 1).astype(np.float32)


def preview(image: Any, config: CloakConfig | None = None, *, models_dir=None,  # noqa: ANN001
            corpus_dir=None, judges: bool = True, progress: Any = None) -> PreviewResult:  # noqa: ANN001
    """A quick look before the full run: cloak ``image`` (a path, an :class:`sfumato.io.ArtImage` or an
    ``HxWx3`` float array in [0, 1]) downscaled to ``config.effort.resolution`` px with its few steps
    (make ``config`` with :func:`preview_config`), and judge the AI view at that size. The AI views are
    computed once and shared by the verdict and the caller's picture. Nothing is written."""
    import sfumato.io as sio
    from sfumato.encoders.cache import cached_encoder
    from sfumato.encoders.views import ai_view
    from sfumato.protections.cloak import cloak_array
    from sfumato.verification.plain import image_verdict

    cfg = config or preview_config()
    if isinstance(image, (str, os.PathLike)):
        image = sio.load_image(image)
    rgb = image.rgb if hasattr(image, "rgb") else np.asarray(image, dtype=np.float32)
    side = int(cfg.effort.resolution)
    small = preview_downscale(rgb, side)
    res = cloak_array(small, cfg, models_dir=models_dir, **({"progress": progress} if progress else {}))
    if progress is not None:
        progress.stage("checking what a model sees (AI view, judges)")
    latent = {d["encoder"]: {k: v for k, v in d.items() if k != "encoder"} for d in res.latent}
    manifest = {"mode": "cloak", "target": res.target, "config": cfg.to_dict(), "latent": latent}
    ae = cached_encoder("taef2", models_dir)
    views = (ai_view(small, ae, resolution=side), ai_view(res.image, ae, resolution=side))
    verdict = image_verdict(small, res.image, manifest, models_dir=models_dir, corpus_dir=corpus_dir,
                            judges=judges, resolution=side, ai_views=views)
    return PreviewResult(before=views[0], after=views[1], verdict=verdict, target=res.target, latent=latent,
                         side=side, steps=int(cfg.effort.steps), timing_s=dict(res.timing_s))
