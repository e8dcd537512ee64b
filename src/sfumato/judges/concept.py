"""Concept judge: "what does this picture show?", measured by grouping ImageNet classes into concepts.

An independent check for concept poisons (Nightshade: Shan et al., "Nightshade: Prompt-Specific Poisoning
Attacks on Text-to-Image Generative Models", IEEE S&P 2024, judged poison success with an off-the-shelf
classifier). Here the classifier is the int8 MobileNetV2 of :mod:`sfumato.judges.mobilenet`; a concept's
score is the summed softmax probability of its ImageNet classes (e.g. "dog" = all 118 dog breeds).

Concept groups live in ``sfumato/data/concepts.json`` as
``{"concept": {"classes": [indices in the 1001-output space], "description": "..."}}`` — index 0 is
"background", so ImageNet-1k class ``c`` is index ``c + 1``. The default groups are disjoint, so the
scores of one image sum to at most 1. The judge never enters a loss; it only measures (numpy out).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np

from sfumato.judges.mobilenet import N_OUTPUTS, Fit, MobileNetV2, load_mobilenet

__all__ = ["ConceptJudge", "default_concepts", "quiet_tflite"]

_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_tflite() -> Iterator[None]:
    """Silence what native code prints on the process's standard error (file descriptor 2) meanwhile:
    LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` when an interpreter is created,
    with no setting to turn it off. Python's own ``sys.stderr`` is left alone; nested uses are no-ops."""
    if not _QUIET_LOCK.acquire(blocking=False):  # already quiet (nested, or another thread's load)
        yield
        return
    saved = None
    try:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:  # no usable fd 2 (an embedded interpreter): nothing to silence
            saved = None
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        _QUIET_LOCK.release()


def default_concepts() -> dict[str, dict[str, Any]]:
    """The packaged concept groups: ``{name: {"classes": [...], "description": "..."}}``."""
    text = resources.files("sfumato").joinpath("data/concepts.json").read_text(encoding="utf-8")
    return json.loads(text)


def _validate(concepts: dict[str, list[int]]) -> dict[str, np.ndarray]:
    if not concepts:
        raise ValueError("concepts is empty: give at least one {name: [ImageNet indices]} group")
    out: dict[str, np.ndarray] = {}
    for name, classes in concepts.items():
        idx = np.asarray(list(classes))
        if name == "other":
            raise ValueError("'other' is reserved for images that match no concept; rename that group")
        if idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"concept {name!r}: classes must be a non-empty list of integer indices")
        if idx.min() < 1 or idx.max() >= N_OUTPUTS:
            raise ValueError(f"concept {name!r}: indices must be in 1..1000 of the 1001-output space "
                             f"(0 is 'background'; ImageNet-1k class c is c + 1), got {idx.min()}..{idx.max()}")
        if len(set(idx.tolist())) != idx.size:
            raise ValueError(f"concept {name!r}: repeated class indices")
        out[name] = idx.astype(np.int64)
    return out


class ConceptJudge:
    """MobileNetV2 ImageNet probabilities summed over concept groups."""

    def __init__(self, *, models_dir: str | os.PathLike[str] | None = None,
                 concepts: dict[str, list[int]] | None = None, model: MobileNetV2 | None = None,
                 fit: Fit = "center_crop") -> None:
        if concepts is None:
            concepts = {k: v["classes"] for k, v in default_concepts().items()}
        self._groups = _validate(concepts)
        self.concepts: list[str] = list(self._groups)
        if model is None:
            with quiet_tflite():
                model = load_mobilenet(models_dir=models_dir)
        self.model = model
        self.fit: Fit = fit
        # [n_concepts, 1001] 0/1 membership matrix
        self._member = np.zeros((len(self.concepts), N_OUTPUTS), dtype=np.float32)
        for i, name in enumerate(self.concepts):
            self._member[i, self._groups[name]] = 1.0

    def __repr__(self) -> str:
        return f"ConceptJudge({len(self.concepts)} concepts, model={self.model!r})"

    def classes(self, concept: str) -> list[int]:
        """The ImageNet indices (1001-output space) of ``concept``."""
        return self._groups[self._check(concept)].tolist()

    def _check(self, concept: str) -> str:
        if concept not in self._groups:
            raise KeyError(f"unknown concept {concept!r}; known: {', '.join(self.concepts)}")
        return concept

    def probabilities(self, images: Any) -> np.ndarray:
        """The underlying ImageNet probabilities ``[N, 1001]``."""
        return self.model.predict(images, fit=self.fit)

    def scores(self, images: Any, *, probs: np.ndarray | None = None) -> np.ndarray:
        """Summed probability per concept ``[N, n_concepts]`` (columns in the order of ``concepts``).

        ``probs`` (here and in the other methods): precomputed :meth:`probabilities`, to skip the model.
        """
        p = self.probabilities(images) if probs is None else probs
        return p @ self._member.T

    def score(self, images: Any, concept: str, *, probs: np.ndarray | None = None) -> np.ndarray:
        """Group probability ``[N]`` of one concept; threshold it (e.g. >= 0.5) for "clearly shows C"."""
        i = self.concepts.index(self._check(concept))
        return self.scores(images, probs=probs)[:, i]

    def top_k_hits(self, images: Any, concept: str, *, k: int = 5,
                   probs: np.ndarray | None = None) -> np.ndarray:
        """Boolean ``[N]``: is any class of ``concept`` among the image's ``k`` most probable classes?"""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        idx = self._groups[self._check(concept)]
        p = self.probabilities(images) if probs is None else probs
        top = np.argsort(-p, axis=1)[:, :k]
        return np.isin(top, idx).any(axis=1)

    def classify(self, images: Any, *, min_score: float = 0.2, probs: np.ndarray | None = None) -> list[str]:
        """The highest-scoring concept per image, or ``"other"`` when no concept reaches ``min_score``."""
        s = self.scores(images, probs=probs)
        best = s.argmax(axis=1)
        return [self.concepts[j] if s[i, j] >= min_score else "other" for i, j in enumerate(best)]
