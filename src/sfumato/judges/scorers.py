"""Concept scorers: "does this image clearly show concept C?", used to pick the images worth poisoning.

Nightshade (Shan, Ding, Passananti, Wu, Zheng, Zhao, "Nightshade: Prompt-Specific Poisoning Attacks on
Text-to-Image Generative Models", IEEE S&P 2024, arXiv:2310.13828, §5.3) keeps only candidate images of
concept C whose CLIP score — the cosine similarity between the CLIP image embedding and the embedding of
a text naming C — is above 0.24, so that every poison is a clear example of C. Two scorers implement
the :class:`ConceptScorer` protocol:

* :class:`MobileNetConceptScorer` — offline default on the shipped int8 MobileNetV2: the score is the
  summed ImageNet probability of the concept's classes (:class:`sfumato.judges.ConceptJudge`), and an
  image *shows* C when one of C's classes is among its top-``k`` classes (and, optionally, the summed
  probability reaches ``min_probability``). Only the packaged concepts ("dog", "cat", "car", ...).
* :class:`ClipConceptScorer` — Nightshade's criterion with any Hugging Face ``CLIPModel``: free-text
  concepts, threshold 0.24 by default.

:func:`make_scorer` builds one from a short spec (``None``/``"mobilenet"``, ``"clip:<id or folder>"``).
Scorers only measure (numpy out) and never enter a loss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "CLIP_PROMPT",
    "CLIP_THRESHOLD",
    "ClipConceptScorer",
    "ConceptScorer",
    "MobileNetConceptScorer",
    "make_scorer",
]

CLIP_THRESHOLD = 0.24
"""Nightshade's CLIP-score cut for "clearly shows the concept" (§5.3)."""

CLIP_PROMPT = "a photo of a {concept}"


@runtime_checkable
class ConceptScorer(Protocol):
    """Scores how clearly images show a concept; ``shows`` is the thresholded decision."""

    name: str
    threshold: float

    def score(self, images: list[np.ndarray], concept: str) -> np.ndarray:
        """``[N]`` floats, higher = shows ``concept`` more clearly."""
        ...

    def shows(self, images: list[np.ndarray], concept: str) -> np.ndarray:
        """``[N]`` booleans: does the image clearly show ``concept``?"""
        ...

    def describe(self) -> dict:
        """JSON-ready settings for manifests."""
        ...


def _check_concept(concept: Any) -> str:
    if not isinstance(concept, str) or not concept.strip():
        raise ValueError(f"concept must be a non-empty string, got {concept!r}")
    return concept.strip()


class MobileNetConceptScorer:
    """Concept groups of ImageNet classes on the int8 MobileNetV2 (offline, no extra download).

    ``score`` = summed probability of the concept's ImageNet classes. ``shows`` = one of the concept's
    classes is among the image's ``k`` most probable classes **and** ``score >= min_probability``
    (``threshold``; 0 means the top-``k`` test alone).
    """

    name = "mobilenet"

    def __init__(self, *, models_dir: str | os.PathLike[str] | None = None, k: int = 5,
                 min_probability: float = 0.0, judge: Any = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1 (top-k classes), got {k!r}")
        if not isinstance(min_probability, int | float) or not 0.0 <= min_probability <= 1.0:
            raise ValueError(f"min_probability must be in [0, 1], got {min_probability!r}")
        if judge is None:
            from sfumato.judges.concept import ConceptJudge

            judge = ConceptJudge(models_dir=models_dir)
        self.judge = judge
        self.k = k
        self.threshold = float(min_probability)

    def __repr__(self) -> str:
        return f"MobileNetConceptScorer(k={self.k}, min_probability={self.threshold})"

    @property
    def concepts(self) -> list[str]:
        """The concepts this scorer knows."""
        return list(self.judge.concepts)

    def _concept(self, concept: Any) -> str:
        concept = _check_concept(concept)
        if concept not in self.judge.concepts:
            raise ValueError(f"the mobilenet scorer does not know concept {concept!r}; known: "
                             f"{', '.join(self.judge.concepts)} (for free-text concepts use a CLIP scorer, "
                             "--scorer clip:<model>)")
        return concept

    def _both(self, images: Any, concept: str) -> tuple[np.ndarray, np.ndarray]:
        from sfumato.judges.mobilenet import as_image_list

        concept = self._concept(concept)
        imgs = as_image_list(images)
        if not imgs:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
        probs = self.judge.probabilities(imgs)
        score = np.asarray(self.judge.score(None, concept, probs=probs), dtype=np.float32)
        hits = np.asarray(self.judge.top_k_hits(None, concept, k=self.k, probs=probs), dtype=bool)
        return score, hits & (score >= self.threshold)

    def score(self, images: list[np.ndarray], concept: str) -> np.ndarray:
        """Summed probability of ``concept``'s classes, ``[N]`` float32 in ``[0, 1]``."""
        return self._both(images, concept)[0]

    def shows(self, images: list[np.ndarray], concept: str) -> np.ndarray:
        """``[N]`` bool: a class of ``concept`` in the top ``k`` and ``score >= threshold``."""
        return self._both(images, concept)[1]

    def describe(self) -> dict:
        return {"name": self.name, "model": "mobilenet_v2_1.0_224_quant (int8 TFLite)", "k": self.k,
                "threshold": self.threshold,
                "rule": f"a class of the concept among the top {self.k} ImageNet classes and summed "
                        f"concept probability >= {self.threshold}"}


def _load_clip(spec: str, local_files_only: bool) -> tuple[Any, Any]:
    try:
        import transformers
    except ImportError as e:
        raise ImportError("the CLIP scorer needs the optional 'transformers' package: "
                          "pip install \"sfumato[diffusers]\"") from e
    import torch

    from sfumato.encoders.diffusers_vae import looks_like_path
    from sfumato.models import ModelNotFoundError

    how = ("pass a local folder saved with CLIPModel/CLIPProcessor.save_pretrained (config.json, "
           "model.safetensors, tokenizer and preprocessor files), run once with network to cache it, or "
           "use the offline 'mobilenet' scorer")
    p = Path(spec).expanduser()
    if not p.is_dir() and looks_like_path(spec):
        raise ModelNotFoundError(f"CLIP model folder {spec} does not exist: {how}")
    where = str(p) if p.is_dir() else spec
    try:
        model, info = transformers.CLIPModel.from_pretrained(
            where, use_safetensors=True, local_files_only=local_files_only, output_loading_info=True)
        processor = transformers.CLIPProcessor.from_pretrained(where, local_files_only=local_files_only)
    except OSError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        state = "is not in the local Hugging Face cache and cannot be downloaded now (offline)" \
            if local_files_only else "could not be loaded"
        raise ModelNotFoundError(f"CLIP model {spec!r} {state} ({first}): {how}") from e
    missing = sorted(info.get("missing_keys", []))
    if missing:  # transformers only warns and leaves these layers random
        raise ValueError(f"CLIP model {spec!r} lacks {len(missing)} weight(s) (e.g. {missing[0]!r}): refusing to "
                         "score with randomly initialised layers; give a complete CLIPModel checkpoint")
    return model.to(torch.float32).eval(), processor


class ClipConceptScorer:
    """Nightshade's CLIP score: cosine similarity of the image and ``"a photo of a {concept}"`` embeddings.

    ``model`` is a Hugging Face id or local folder of a ``CLIPModel`` with its ``CLIPProcessor`` (loaded
    float32, safetensors only), or an already constructed ``(model, processor)`` pair (used on its own
    device and dtype); the processor needs an ``image_processor`` and a ``tokenizer``. Images are given to
    the image processor as 8-bit RGB (what a saved file holds). ``shows`` = ``score > threshold``.
    Underscores in concept names become spaces in the text (``"toy_car"`` → ``"a photo of a toy car"``).
    """

    name = "clip"

    def __init__(self, model: str | tuple[Any, Any], *, threshold: float = CLIP_THRESHOLD,
                 prompt_template: str = CLIP_PROMPT, local_files_only: bool | None = None,
                 batch_size: int = 16) -> None:
        if not isinstance(threshold, int | float) or not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
        if not isinstance(prompt_template, str) or "{concept}" not in prompt_template:
            raise ValueError(f"prompt_template must contain '{{concept}}', got {prompt_template!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(model, str):
            if not model.strip():
                raise ValueError("model is empty: give a CLIP model id or a local folder")
            from sfumato.encoders.diffusers_vae import offline_from_env

            lfo = offline_from_env() if local_files_only is None else bool(local_files_only)
            self.model, self.processor = _load_clip(model, lfo)
            self.model_name = model
        elif isinstance(model, tuple | list) and len(model) == 2:
            self.model, self.processor = model
            path = getattr(self.model, "name_or_path", "") or ""
            self.model_name = str(path) if path else type(self.model).__name__
        else:
            raise TypeError("model must be a CLIP model id/folder or a (CLIPModel, CLIPProcessor) pair, got "
                            f"{type(model).__name__}")
        for part in ("image_processor", "tokenizer"):
            if getattr(self.processor, part, None) is None:
                raise ValueError(f"the CLIP processor has no {part}: pass a CLIPProcessor with both an "
                                 "image processor and a tokenizer")
        self.threshold = float(threshold)
        self.prompt_template = prompt_template
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"ClipConceptScorer({self.model_name!r}, threshold={self.threshold})"

    def _param(self) -> Any:
        return next(self.model.parameters())

    def _text_embedding(self, concept: str) -> Any:
        import torch

        text = self.prompt_template.replace("{concept}", concept.replace("_", " "))
        tok = self.processor.tokenizer([text], padding=True, truncation=True, return_tensors="pt")
        dev = self._param().device
        with torch.no_grad():
            out = self.model.text_model(input_ids=tok["input_ids"].to(dev),
                                        attention_mask=tok["attention_mask"].to(dev))
            emb = self.model.text_projection(out.pooler_output)
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def _image_embeddings(self, images: Sequence[np.ndarray]) -> Any:
        import torch

        p = self._param()
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = [np.round(im * 255.0).astype(np.uint8) for im in images[start:start + self.batch_size]]
            pix = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                out = self.model.vision_model(pixel_values=pix.to(device=p.device, dtype=p.dtype))
                emb = self.model.visual_projection(out.pooler_output)
            chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1))
        return torch.cat(chunks)

    def score(self, images: list[np.ndarray], concept: str) -> np.ndarray:
        """Cosine similarity ``[N]`` (float32 in ``[-1, 1]``) between each image and the concept's text."""
        from sfumato.judges.mobilenet import as_image_list

        concept = _check_concept(concept)
        imgs = as_image_list(images)
        if not imgs:
            return np.zeros(0, dtype=np.float32)
        sims = self._image_embeddings(imgs) @ self._text_embedding(concept).T
        return np.clip(sims[:, 0].cpu().numpy().astype(np.float32), -1.0, 1.0)

    def shows(self, images: list[np.ndarray], concept: str) -> np.ndarray:
        """``[N]`` bool: CLIP score above ``threshold`` (Nightshade: 0.24)."""
        return self.score(images, concept) > self.threshold

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_name, "threshold": self.threshold,
                "prompt_template": self.prompt_template,
                "rule": f"cosine(CLIP image, CLIP text) > {self.threshold} (Nightshade, IEEE S&P 2024)"}


def make_scorer(spec: str | None, *, models_dir: str | os.PathLike[str] | None = None) -> ConceptScorer:
    """A scorer from a short spec: ``None`` or ``"mobilenet"`` → :class:`MobileNetConceptScorer` (with
    ``models_dir``); ``"clip:<Hub id or folder>"`` → :class:`ClipConceptScorer` (threshold 0.24)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "mobilenet"):
        return MobileNetConceptScorer(models_dir=models_dir)
    if isinstance(spec, str) and spec.strip().lower().startswith("clip:"):
        target = spec.strip()[len("clip:"):].strip()
        if not target:
            raise ValueError("scorer 'clip:' needs a model: 'clip:openai/clip-vit-base-patch32' or "
                             "'clip:/path/to/clip-folder'")
        return ClipConceptScorer(target)
    raise ValueError(f"unknown scorer {spec!r}: use 'mobilenet' (offline default) or 'clip:<model id or folder>'")
