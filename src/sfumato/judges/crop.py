"""Crop-level style judge: which artist does this image look like *at the scale a trainer sees*?

A whole-image judge at 224 px (or at 128 px on ``art128``) cannot see what a cloak made at 512 px does
to brushwork: fine-tuning pipelines resize a painting to a bucket (long side 512, 768 or 1024) and
train on crops of it. This judge looks the same way. Each image is resized so its long side is
512, 768 and 1024 px (bicubic, antialiased when shrinking; the "views"), and from each view a fixed
``grid x grid`` lattice of 224x224 crops is cut (evenly spaced, corners included). Every crop is
embedded by the int8 MobileNetV2 (:mod:`sfumato.judges.mobilenet`, 1280-d penultimate features) and the
linear probe of :mod:`sfumato.judges.style` (Razavian et al., "CNN Features off-the-shelf", CVPR-W 2014;
Glaze's independent artist classifier, Shan et al., USENIX Security 2023) is fitted on the crops of the
training paintings. A prediction averages the crop probabilities (of one view, or of all views).

Train it on the full-resolution ``ace_*`` files of the shared corpus, split *by painting*
(:func:`sfumato.judges.splits.ace_split`), never by crop. It only measures (numpy in, numpy out) and
never enters an optimisation loss. Saved as JSON (never pickle), tied to the embedding model's SHA-256.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sfumato.judges.base import MobileNetJudge
from sfumato.judges.mobilenet import (
    INPUT_SIZE,
    VARIANTS,
    MobileNetV2,
    as_image_list,
    image_items,
    resize_float,
)
from sfumato.judges.style import fit_logistic, linear_proba

__all__ = ["CROP_SIZE", "VIEW_SIDES", "CropStyleJudge", "crop_grid", "trainer_view"]

FORMAT = "sfumato.crop_style_judge/1"
VIEW_SIDES: tuple[int, ...] = (512, 768, 1024)
CROP_SIZE = INPUT_SIZE  # 224: the crops enter MobileNetV2 unresized
DEFAULT_GRID = 3

Item = np.ndarray | str | os.PathLike[str]


def trainer_view(img: np.ndarray, long_side: int) -> np.ndarray:
    """``img`` (float HxWx3) resized so that its long side is ``long_side`` (aspect ratio kept)."""
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    return resize_float(img, (max(1, round(w * s)), max(1, round(h * s))))


def crop_grid(view: np.ndarray, grid: int = DEFAULT_GRID, size: int = CROP_SIZE) -> list[np.ndarray]:
    """A ``grid x grid`` lattice of ``size`` px crops, evenly spaced from corner to corner. A view whose
    short side is under ``size`` is first upscaled so it is exactly ``size``."""
    h, w = view.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        view = resize_float(view, (max(size, round(w * s)), max(size, round(h * s))))
        h, w = view.shape[:2]
    ys = np.unique(np.linspace(0, h - size, grid).round().astype(int))
    xs = np.unique(np.linspace(0, w - size, grid).round().astype(int))
    return [view[y:y + size, x:x + size] for y in ys for x in xs]


class CropStyleJudge(MobileNetJudge):
    """Artist classifier on 224 px crops of 512/768/1024 px views (see module doc)."""

    def __init__(self, *, artists: Sequence[str], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, view_sides: Sequence[int] = VIEW_SIDES, grid: int = DEFAULT_GRID,
                 variant: str = "quant", training: Mapping[str, Any] | None = None,
                 models_dir: str | os.PathLike[str] | None = None) -> None:
        self.artists = list(artists)
        self.params = self.as_linear_params(mean=mean, scale=scale, coef=coef, intercept=intercept)
        rows = 1 if len(self.artists) == 2 else len(self.artists)
        if self.params["coef"].shape[0] != rows or len(self.artists) < 2:
            raise ValueError(f"inconsistent crop judge: {len(self.artists)} artists, coef "
                             f"{self.params['coef'].shape}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown MobileNetV2 variant {variant!r}; use one of {sorted(VARIANTS)}")
        self.view_sides = tuple(int(v) for v in view_sides)
        self.grid = int(grid)
        self.variant = variant
        self.training = dict(training or {})
        self.models_dir = models_dir
        self._model: MobileNetV2 | None = None

    def __repr__(self) -> str:
        return f"CropStyleJudge(artists={self.artists}, view_sides={self.view_sides}, grid={self.grid})"

    # -- features ------------------------------------------------------------------------------------

    def _embed_crops(self, view: np.ndarray) -> np.ndarray:
        return self.model.embed(crop_grid(view, self.grid), fit="squash").astype(np.float64)

    def _embed_views(self, img: np.ndarray, sides: Sequence[int]) -> dict[int, np.ndarray]:
        return {s: self._embed_crops(trainer_view(img, s)) for s in sides}

    def _proba(self, feats: np.ndarray) -> np.ndarray:
        return linear_proba(feats, **self.params).mean(axis=0)

    # -- training ------------------------------------------------------------------------------------

    @classmethod
    def train(cls, reference: Mapping[str, Sequence[Item]], *,
              models_dir: str | os.PathLike[str] | None = None, view_sides: Sequence[int] = VIEW_SIDES,
              grid: int = DEFAULT_GRID, C: float = 1.0, seed: int = 0, variant: str = "quant") -> CropStyleJudge:
        """Fit on ``{artist: [image paths or float HxWx3 arrays]}``: every crop of every view of a
        training painting is a sample labelled with its artist."""
        if len(reference) < 2 or any(len(v) < 1 for v in reference.values()):
            raise ValueError("a crop style judge needs at least 2 artists with at least 1 image each")
        if C <= 0:
            raise ValueError(f"C (inverse L2 strength) must be > 0, got {C}")
        probe = cls(artists=["a", "b"], mean=np.zeros(1), scale=np.ones(1), coef=np.zeros((1, 1)),
                    intercept=np.zeros(1), view_sides=view_sides, grid=grid, variant=variant,
                    models_dir=models_dir)
        feats, labels = [], []
        for artist, items in reference.items():
            for item in items:
                img = as_image_list([item])[0]
                feats.append(np.concatenate(list(probe._embed_views(img, probe.view_sides).values())))
                labels.append(artist)
        params = fit_logistic(feats, labels, C=C, seed=seed)
        training = {"C": C, "seed": seed, "n_images": {a: len(v) for a, v in reference.items()},
                    "n_crops": int(sum(len(f) for f in feats))}
        judge = cls(**params, view_sides=probe.view_sides, grid=grid, variant=variant, training=training,
                    models_dir=models_dir)
        judge._model = probe._model
        return judge

    # -- inference -----------------------------------------------------------------------------------

    def predict_proba_views(self, images: Any, view_sides: Sequence[int] | None = None) -> dict[int, np.ndarray]:
        """``{view side: [N, n_artists]}``: per view, crop probabilities averaged (each image read once)."""
        sides = tuple(view_sides or self.view_sides)
        out = {s: [] for s in sides}
        for item in image_items(images):
            img = as_image_list([item])[0]
            for s, f in self._embed_views(img, sides).items():
                out[s].append(self._proba(f))
        k = len(self.artists)
        return {s: np.array(v, dtype=np.float64).reshape(-1, k) for s, v in out.items()}

    def predict_proba(self, images: Any, view_side: int | None = None) -> np.ndarray:
        """``[N, n_artists]`` probabilities (columns in ``artists`` order): crop probabilities averaged
        over the view of long side ``view_side``, or over all the judge's views when ``None``."""
        sides = self.view_sides if view_side is None else (int(view_side),)
        per_view = self.predict_proba_views(images, sides)
        return np.mean([per_view[s] for s in sides], axis=0)

    def predict_proba_crops(self, images: Any) -> np.ndarray:
        """``[N, n_artists]`` for images that already *are* the trainer's view: crops are cut from them
        as given (no resize), probabilities averaged."""
        return np.array([self._proba(self._embed_crops(img)) for img in as_image_list(image_items(images))]
                        ).reshape(-1, len(self.artists))

    # -- persistence (JSON, no pickle) ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        from sfumato.models import REGISTRY

        return {"format": FORMAT, "artists": self.artists,
                "embedding": {"model": VARIANTS[self.variant], "variant": self.variant,
                              "weights_sha256": REGISTRY[VARIANTS[self.variant]].sha256},
                "views": {"view_sides": list(self.view_sides), "grid": self.grid, "crop": CROP_SIZE},
                "training": self.training, **{k: v.tolist() for k, v in self.params.items()}}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             models_dir: str | os.PathLike[str] | None = None) -> CropStyleJudge:
        """Read a judge written by :meth:`save` (refuses another embedding model or crop size)."""
        from sfumato.models import REGISTRY

        d = cls.read_saved(path, FORMAT, "crop style judge")
        emb, views = d["embedding"], d["views"]
        if emb["variant"] not in VARIANTS or REGISTRY[VARIANTS[emb["variant"]]].sha256 != emb["weights_sha256"]:
            raise ValueError(f"{path}: trained on embeddings of an unknown model; retrain it")
        if views["crop"] != CROP_SIZE:
            raise ValueError(f"{path}: crop size {views['crop']} differs from {CROP_SIZE}; retrain it")
        return cls(artists=d["artists"], **cls.linear_params(d),
                   view_sides=views["view_sides"], grid=views["grid"], variant=emb["variant"],
                   training=d.get("training"), models_dir=models_dir)
