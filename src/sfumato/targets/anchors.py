"""Anchor images of the target concept A for concept poisoning.

Nightshade (Shan, Ding, Passananti, Wu, Zheng, Zhao, "Nightshade: Prompt-Specific Poisoning Attacks on
Text-to-Image Generative Models", IEEE S&P 2024, arXiv:2310.13828, §5.3) perturbs an image of concept C
toward the features of an *anchor* image of concept A, and obtains that anchor by prompting the
text-to-image model itself for A with a fixed seed. This module provides the anchors either way:

* :func:`load_anchor_folder` — the artist's own (or any licensed) pictures of A from a folder;
* :func:`generate_anchors` — pictures of A drawn by a diffusers text-to-image pipeline, reproducibly:
  image ``i`` is generated alone with a CPU ``torch.Generator`` seeded with ``seed + i``, so each image
  depends only on (model, prompt, ``seed + i``, steps, size, guidance) and not on ``n``.

Both return an :class:`AnchorSet` whose ``source`` is JSON-ready and goes into the output manifests.
Pixel convention: float32 ``HxWx3`` in ``[0, 1]``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sfumato.encoders.base import Encoder
from sfumato.io.tensors import fit_to

__all__ = ["AnchorSet", "generate_anchors", "load_anchor_folder"]

DEFAULT_PROMPT = "a photo of a {concept}"


@dataclass(frozen=True)
class AnchorSet:
    """Images of one concept, their names and where they came from.

    ``images``: float32 ``HxWx3`` arrays in ``[0, 1]`` (sizes may differ). ``names``: file names for a
    folder, ``"generated-<i>"`` for generated images. ``source``: JSON-ready provenance,
    ``{"kind": "folder", "path": ...}`` or ``{"kind": "generated", "model": ..., "prompt": ..., "seed": ...,
    "steps": ..., "size": ...}`` (plus a few more fields, see the loaders).
    """

    concept: str
    images: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    source: dict

    def __post_init__(self) -> None:
        if len(self.images) != len(self.names):
            raise ValueError(f"AnchorSet has {len(self.images)} images but {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.images)


def _check_concept(concept: Any) -> str:
    if not isinstance(concept, str) or not concept.strip():
        raise ValueError(f"concept must be a non-empty string naming the target concept, got {concept!r}")
    return concept.strip()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Lanczos downscale (per channel, in float) so the longer side is ``max_side``; smaller images kept."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c]), mode="F")
                        .resize(size, Image.Resampling.LANCZOS)) for c in range(3)]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def load_anchor_folder(path: str | os.PathLike[str], *, concept: str, max_images: int = 32,
                       max_side: int = 768) -> AnchorSet:
    """Load the images of concept ``concept`` in folder ``path`` as anchors.

    The folder is walked recursively (:func:`sfumato.io.iter_image_paths`: sorted, hidden files skipped)
    and the first ``max_images`` images are kept. Images whose longer side exceeds ``max_side`` pixels
    are downscaled to it (Lanczos). Alpha channels are ignored: only the RGB pixels are used.

    Raises ``FileNotFoundError`` (no such folder), ``ValueError`` (not a folder, or no images in it) and
    :class:`sfumato.io.ImageError` (an unreadable image file).
    """
    from sfumato.io import iter_image_paths, load_image

    concept = _check_concept(concept)
    max_images = _check_int("max_images", max_images, 1)
    max_side = _check_int("max_side", max_side, 8)
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"anchor folder {folder} does not exist: give a folder of images of {concept!r}")
    if not folder.is_dir():
        raise ValueError(f"anchors path {folder} is a file, not a folder: put the images of {concept!r} in a "
                         "folder and pass the folder")
    files = iter_image_paths([folder])
    if not files:
        raise ValueError(f"anchor folder {folder} has no images (.png, .jpg, .webp, .tif): add pictures of "
                         f"{concept!r} or generate anchors with a text-to-image model")
    chosen = files[:max_images]
    images = tuple(_downscale(load_image(f).rgb, max_side) for f in chosen)
    names = tuple(f.relative_to(folder).as_posix() for f in chosen)
    source = {"kind": "folder", "path": str(folder.resolve()), "n_found": len(files), "n_used": len(chosen),
              "max_side": max_side}
    return AnchorSet(concept=concept, images=images, names=names, source=source)


# ------------------------------------------------------------------------------------------ generation


def load_pipeline(spec: str, local_files_only: bool) -> Any:
    """A diffusers text-to-image pipeline from a local folder or Hub id, safetensors weights only, float32."""
    try:
        import diffusers
    except ImportError as e:
        raise ImportError("generating anchors needs the optional 'diffusers' package: "
                          "pip install \"sfumato[diffusers]\"") from e
    import torch

    from sfumato.encoders.diffusers_vae import looks_like_path
    from sfumato.models import ModelNotFoundError

    how = ("pass a local diffusers pipeline folder (model_index.json + safetensors weights), run once with "
           "network to cache it, or use a folder of anchor images instead")
    p = Path(spec).expanduser()
    if not p.is_dir() and looks_like_path(spec):
        raise ModelNotFoundError(f"text-to-image model folder {spec} does not exist: {how}")
    where = str(p) if p.is_dir() else spec
    kwargs = {"use_safetensors": True, "local_files_only": local_files_only}
    try:
        try:
            pipe = diffusers.AutoPipelineForText2Image.from_pretrained(where, **kwargs)
        except ValueError as auto_error:  # a pipeline class AutoPipeline does not map: load it as saved
            try:
                pipe = diffusers.DiffusionPipeline.from_pretrained(where, **kwargs)
            except ValueError as e:
                raise e from auto_error
    except OSError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        state = "is not in the local Hugging Face cache and cannot be downloaded now (offline)" \
            if local_files_only else "could not be loaded"
        raise ModelNotFoundError(f"text-to-image model {spec!r} {state} ({first}): {how}") from e
    pipe.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _model_name(pipe: Any) -> str:
    name = getattr(pipe, "name_or_path", None)
    if not name:
        name = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    return str(name) if name else type(pipe).__name__


def _call_default(pipe: Any, name: str) -> Any:
    try:
        param = inspect.signature(pipe.__call__).parameters.get(name)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def generate_anchors(model: str | object, *, concept: str, n: int = 4, seed: int = 0, steps: int = 25,
                     size: int | None = None, prompt_template: str = DEFAULT_PROMPT,
                     guidance_scale: float | None = None, local_files_only: bool | None = None) -> AnchorSet:
    """Generate ``n`` anchor images of ``concept`` with a text-to-image pipeline (Nightshade §5.3).

    Args:
        model: a diffusers model id or local pipeline folder (loaded with
            ``AutoPipelineForText2Image.from_pretrained(..., use_safetensors=True)``, falling back to
            ``DiffusionPipeline``; float32 on the CPU), or an already constructed pipeline object (used as
            is, on its own device and dtype).
        concept: the target concept A; the prompt is ``prompt_template`` with ``{concept}`` replaced by it
            (underscores become spaces: ``"toy_car"`` → ``"a photo of a toy car"``).
        n: number of images. Image ``i`` is generated alone from a CPU ``torch.Generator`` seeded with
            ``seed + i`` (so the first images do not change when ``n`` grows).
        steps: denoising steps (``num_inference_steps``).
        size: height and width in pixels (the pipeline's checks apply, e.g. multiples of 8); ``None``
            uses the pipeline's default resolution.
        guidance_scale: classifier-free guidance; ``None`` uses the pipeline's default (recorded).
        local_files_only: never download; default true when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``
            is set.

    Raises:
        ModelNotFoundError: the model is not available locally (the message says how to provide it).
        RuntimeError: the pipeline's safety checker blanked an image, or it produced non-finite pixels.
    """
    concept = _check_concept(concept)
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    steps = _check_int("steps", steps, 1)
    if size is not None:
        size = _check_int("size", size, 8)
    if not isinstance(prompt_template, str) or "{concept}" not in prompt_template:
        raise ValueError(f"prompt_template must contain '{{concept}}', got {prompt_template!r}")
    if guidance_scale is not None and not (isinstance(guidance_scale, int | float) and guidance_scale >= 0):
        raise ValueError(f"guidance_scale must be a number >= 0 or None, got {guidance_scale!r}")
    import torch

    if isinstance(model, str):
        if not model.strip():
            raise ValueError("model is empty: give a diffusers model id, a local pipeline folder or a pipeline")
        from sfumato.encoders.diffusers_vae import offline_from_env

        lfo = offline_from_env() if local_files_only is None else bool(local_files_only)
        pipe = load_pipeline(model, lfo)
        model_name = model
    elif callable(model):
        pipe = model
        model_name = _model_name(pipe)
    else:
        raise TypeError(f"model must be a model id, a folder or a diffusers pipeline, got {type(model).__name__}")

    prompt = prompt_template.replace("{concept}", concept.replace("_", " "))
    call: dict[str, Any] = {"num_inference_steps": steps, "output_type": "np", "num_images_per_prompt": 1}
    if size is not None:
        call.update(height=size, width=size)
    if guidance_scale is not None:
        call["guidance_scale"] = float(guidance_scale)
    images: list[np.ndarray] = []
    for i in range(n):
        gen = torch.Generator().manual_seed(seed + i)
        out = pipe(prompt, generator=gen, **call)
        flagged = getattr(out, "nsfw_content_detected", None)
        if flagged is not None and any(bool(f) for f in flagged):
            raise RuntimeError(f"the pipeline's safety checker blanked anchor {i} (seed {seed + i}) for prompt "
                               f"{prompt!r}: choose another seed or concept, or give a folder of anchor images")
        arr = np.asarray(out.images[0], dtype=np.float32)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise RuntimeError(f"pipeline returned an image of shape {arr.shape}, expected HxWx3; use an "
                               "RGB text-to-image pipeline")
        if not np.isfinite(arr).all():
            raise RuntimeError(f"pipeline produced non-finite pixels for anchor {i} (seed {seed + i}); run it "
                               "in float32 or use another model")
        images.append(np.ascontiguousarray(np.clip(arr, 0.0, 1.0)))
    gs = float(guidance_scale) if guidance_scale is not None else _call_default(pipe, "guidance_scale")
    source = {
        "kind": "generated", "model": model_name, "pipeline_class": type(pipe).__name__, "prompt": prompt,
        "seed": seed, "seeds": [seed + i for i in range(n)], "steps": steps, "size": size,
        "image_size": [int(images[0].shape[0]), int(images[0].shape[1])],
        "guidance_scale": float(gs) if isinstance(gs, int | float) else None,
    }
    return AnchorSet(concept=concept, images=tuple(images), names=tuple(f"generated-{i}" for i in range(n)),
                     source=source)


def choose_anchor(x0: torch.Tensor, anchors: Sequence[np.ndarray], encoders: Sequence[tuple[Encoder, float]], *,
                  choice: str = "cheapest", index: int = 0) -> tuple[int, list[float]]:
    """Index of the anchor to use and every anchor's (weighted) latent distance from the image."""
    size = tuple(x0.shape[-2:])
    dists = []
    with torch.no_grad():
        zs = [(e.encode(x0), e, w) for e, w in encoders]
        for a in anchors:
            fa = fit_to(a, size).to(x0)  # type: ignore[arg-type]
            dists.append(float(sum(w * (e.encode(fa) - z).norm() / z.norm() for z, e, w in zs)))
    if choice == "fixed":
        if index >= len(anchors):
            raise ValueError(f"anchor_index {index} but only {len(anchors)} anchors were given")
        return index, dists
    return int(np.argmin(dists)), dists
