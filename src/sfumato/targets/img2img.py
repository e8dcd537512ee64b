"""Rendering the cloak's target Ω(x, T) with a diffusers image-to-image pipeline (Glaze's own choice).

Glaze (Shan et al., "Glaze: Protecting Artists from Style Mimicry by Text-to-Image Models", USENIX
Security 2023, §5.2) renders the artwork in the target style with Stable Diffusion's img2img, prompted
with the target style's name, before cloaking toward it. Sfumato does the same when the user has a
text-to-image pipeline locally (``target_renderer="img2img"``, ``target_model=FOLDER_OR_ID``); no weights
are downloaded unless the Hugging Face cache already holds them. Without one, use the Gatys renderer
(:mod:`sfumato.targets.gatys`).

The pipeline is loaded like the poison's anchor generator (:func:`sfumato.targets.anchors.load_pipeline`:
safetensors only, float32) and turned into its image-to-image variant with
``AutoPipelineForImage2Image.from_pipe`` (same weights, no copy).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = ["PROMPT_TEMPLATE", "img2img_transfer", "style_prompt"]

PROMPT_TEMPLATE = "a painting in the style of {style}"


def style_prompt(style_name: str, template: str = PROMPT_TEMPLATE) -> str:
    """The prompt for a target style: its name with ``_``/``-`` read as spaces."""
    return template.replace("{style}", style_name.replace("_", " ").replace("-", " "))


@functools.lru_cache(maxsize=2)
def _pipeline(model: str) -> Any:
    import diffusers

    from sfumato.targets.anchors import load_pipeline

    text2img = load_pipeline(model, local_files_only=True)
    pipe = diffusers.AutoPipelineForImage2Image.from_pipe(text2img)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def img2img_transfer(x: torch.Tensor, style_name: str, *, model: str | Any, strength: float = 0.6, steps: int = 25,
                     seed: int = 0, guidance_scale: float | None = None) -> torch.Tensor:
    """Render ``x`` (1x3xHxW in [0, 1]) as "a painting in the style of ``style_name``" with an img2img
    pipeline (a model folder/id, or a pipeline object). ``strength`` is the img2img denoising strength
    (how much of the picture is redrawn). Deterministic for a given ``seed``. Returns 1x3xHxW in [0, 1]."""
    import torch.nn.functional as F

    if not 0 < strength <= 1:
        raise ValueError(f"img2img strength must be in (0, 1], got {strength}")
    pipe = _pipeline(model) if isinstance(model, str) else model
    h, w = x.shape[-2:]
    h8, w8 = max(64, round(h / 8) * 8), max(64, round(w / 8) * 8)
    src = F.interpolate(x.detach().float().cpu(), size=(h8, w8), mode="bilinear", align_corners=False,
                        antialias=True).clamp(0, 1)
    call: dict[str, Any] = {"image": src, "strength": float(strength), "num_inference_steps": int(steps),
                            "output_type": "np", "generator": torch.Generator().manual_seed(int(seed))}
    if guidance_scale is not None:
        call["guidance_scale"] = float(guidance_scale)
    out = pipe(style_prompt(style_name), **call).images
    arr = torch.as_tensor(out[0] if out.ndim == 4 else out, dtype=torch.float32)
    if not torch.isfinite(arr).all():
        raise RuntimeError(f"the img2img pipeline produced non-finite pixels for style {style_name!r}")
    y = arr.permute(2, 0, 1)[None]
    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return y.clamp(0, 1).to(x)
