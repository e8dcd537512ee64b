"""The style cloak's target, re-rendered for ``sfumato check``: :func:`sfumato.targets.style_target.render_target`
of the original at the working size, with the manifest's style, strength and renderer, so that the latent
protection is measured against the very target the cloak aimed at."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.verification.latents import cached_encoder

__all__ = ["rerender_target"]


def rerender_target(manifest: dict[str, Any], cfg: Any, x_o: np.ndarray, size: tuple[int, int], models_dir: Any,
                     notes: list[str]) -> tuple[Any, dict[str, Any] | None]:
    """The cloak's target Ω(original, T) at the working size (NCHW, CPU) and what it was rendered with, exactly
    as the style cloak renders it; ``(None, None)`` with a note when it cannot be re-rendered."""
    import torch

    from sfumato.io.tensors import resize, to_nchw
    from sfumato.targets.style_target import render_target
    from sfumato.targets.styles import STYLE_FAMILIES, builtin_style, resolve_style_option

    name = str(manifest["target"]["style"])
    if name in STYLE_FAMILIES:
        style = builtin_style(name)
    else:
        option = cfg.target_style
        if option == "auto" or not Path(option).is_dir():
            notes.append(f"Target style {name!r} is not built in and its folder {option!r} is not available here; "
                         "the target cannot be re-rendered, so the shift away from the original is used instead.")
            return None, None
        style = next((s for s in resolve_style_option(option) if s.name == name), None)
        if style is None:
            notes.append(f"Target style {name!r} was not found under {option!r}; using the shift away instead.")
            return None, None
    renderer = None
    for spec, _w in cfg.encoders:
        enc = cached_encoder(spec, models_dir)
        if enc.has_decoder:
            renderer = enc
            break
    if renderer is None:
        notes.append("None of the manifest's encoders has a decoder to render the target; using the shift away.")
        return None, None
    x0 = resize(to_nchw(x_o), size).contiguous(memory_format=torch.channels_last)
    dev = next(renderer.parameters()).device
    t, _style, _report = render_target(x0.to(dev), renderer, [style], dataclasses.replace(cfg, target_tries=1),
                                       seed=0, models_dir=models_dir)
    return t.float().cpu(), {"style": name, "strength": cfg.style_strength, "renderer": renderer.id,
                             "target_renderer": cfg.target_renderer, "resolution": cfg.effort.resolution}
