"""Gram style judge: a second judge family, on AlexNet feature statistics instead of MobileNetV2.

A verdict from one network is one network's opinion. This judge describes an image by the style
statistics of Gatys, Ecker and Bethge ("Image Style Transfer Using Convolutional Neural Networks",
CVPR 2016) computed on the ImageNet AlexNet ``features`` stack that LPIPS ships (Krizhevsky et al.,
NeurIPS 2012; the weights of :func:`sfumato.metrics.lpips.load_lpips`, raw activations after each of
the 5 ReLUs via :meth:`~sfumato.metrics.lpips.LPIPS.activations`). It never enters a loss or a target
choice: AlexNet is in the *budget* (LPIPS), not in the objective.

Features of one image (squashed to ``input_side`` x ``input_side``, default 224), per tapped layer l with
activations ``F_l`` (``C_l x HW``):

* channel means and channel standard deviations of ``F_l`` (first and second order "AdaIN" statistics);
* the Gram matrix ``G_l = F_l F_l^T / HW`` (upper triangle, signed square root), projected to
  ``proj_dim`` dimensions by a fixed Rademacher (+-1) matrix drawn from the PCG64 *bit* stream with a
  stored seed (bit generators are stable across numpy versions; a checksum of the projection is stored
  and checked at load).

All of it is ``log1p``-compressed where non-negative, standardised, and fed to the judges' L2 logistic
regression (:func:`sfumato.judges.style.fit_logistic`). Saved as JSON (never pickle), tied to the
AlexNet weights' SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sfumato.judges.base import JsonJudge
from sfumato.judges.mobilenet import as_image_list, image_items, resize_float
from sfumato.judges.style import fit_logistic, linear_proba

__all__ = ["GramStyleJudge", "gram_features", "rademacher_projection"]

FORMAT = "sfumato.gram_style_judge/1"
DEFAULT_SIDE = 224
DEFAULT_PROJ = 64
DEFAULT_SEED = 20231

Item = np.ndarray | str | os.PathLike[str]


def rademacher_projection(n_in: int, n_out: int, seed: int) -> np.ndarray:
    """A fixed ``[n_in, n_out]`` matrix of +-1/sqrt(n_out) from the PCG64 bit stream of ``seed``."""
    words = -(-n_in * n_out // 64)
    raw = np.random.PCG64(seed).random_raw(words).astype("<u8")
    bits = np.unpackbits(raw.view(np.uint8), bitorder="little")[: n_in * n_out]
    return ((bits.astype(np.float32) * 2 - 1) / np.float32(np.sqrt(n_out))).reshape(n_in, n_out)


@functools.lru_cache(maxsize=8)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n)


def _projections(chans: Sequence[int], proj_dim: int, seed: int) -> list[np.ndarray]:
    return [rademacher_projection(c * (c + 1) // 2, proj_dim, seed + i) for i, c in enumerate(chans)]


def _checksum(projs: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for p in projs:
        h.update(np.ascontiguousarray(p, dtype="<f4").tobytes())
    return h.hexdigest()


def gram_features(lpips: Any, images: Any, *, input_side: int = DEFAULT_SIDE, proj_dim: int = DEFAULT_PROJ,
                  seed: int = DEFAULT_SEED, projections: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``[N, d]`` style features (see module doc) of images (paths or float HxWx3 arrays) through the
    AlexNet of an LPIPS module (``load_lpips("alex")``)."""
    import torch

    if getattr(lpips, "net", None) != "alex":
        raise ValueError("the Gram judge uses the AlexNet LPIPS backbone: pass load_lpips('alex')")
    projs = list(projections) if projections is not None else None
    rows = []
    for item in images:
        img = resize_float(as_image_list([item])[0], (input_side, input_side))
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()
        with torch.no_grad():
            acts = [a[0].flatten(1).double().numpy() for a in lpips.activations(x)]
        if projs is None:
            projs = _projections([a.shape[0] for a in acts], proj_dim, seed)
        parts = []
        for a, proj in zip(acts, projs, strict=True):
            g = a @ a.T / a.shape[1]
            upper = np.sqrt(np.maximum(g[_triu(g.shape[0])], 0.0)).astype(np.float32)
            parts += [np.log1p(a.mean(axis=1)), np.log1p(a.std(axis=1)), (upper @ proj).astype(np.float64)]
        rows.append(np.concatenate(parts))
    return np.array(rows, dtype=np.float64)


class GramStyleJudge(JsonJudge):
    """Artist classifier on AlexNet Gram / channel statistics (see module doc)."""

    def __init__(self, *, artists: Sequence[str], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, input_side: int = DEFAULT_SIDE, proj_dim: int = DEFAULT_PROJ,
                 seed: int = DEFAULT_SEED, training: Mapping[str, Any] | None = None,
                 models_dir: str | os.PathLike[str] | None = None) -> None:
        self.artists = list(artists)
        self.params = self.as_linear_params(mean=mean, scale=scale, coef=coef, intercept=intercept)
        rows = 1 if len(self.artists) == 2 else len(self.artists)
        if self.params["coef"].shape != (rows, self.params["mean"].shape[0]) or len(self.artists) < 2:
            raise ValueError(f"inconsistent Gram judge: {len(self.artists)} artists, coef "
                             f"{self.params['coef'].shape}, mean {self.params['mean'].shape}")
        self.input_side, self.proj_dim, self.seed = int(input_side), int(proj_dim), int(seed)
        self.training = dict(training or {})
        self.models_dir = models_dir
        self._lpips: Any = None
        self._projs: list[np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"GramStyleJudge(artists={self.artists}, input_side={self.input_side}, proj_dim={self.proj_dim})"

    @property
    def lpips(self) -> Any:
        if self._lpips is None:
            from sfumato.metrics.lpips import load_lpips

            self._lpips = load_lpips("alex", models_dir=self.models_dir)
        return self._lpips

    @property
    def projections(self) -> list[np.ndarray]:
        if self._projs is None:
            self._projs = _projections([64, 192, 384, 256, 256], self.proj_dim, self.seed)
        return self._projs

    def features(self, images: Any) -> np.ndarray:
        """``[N, d]`` feature rows of images (paths or float HxWx3 arrays in [0, 1])."""
        return gram_features(self.lpips, image_items(images), input_side=self.input_side, proj_dim=self.proj_dim,
                             seed=self.seed, projections=self.projections)

    @classmethod
    def train(cls, reference: Mapping[str, Sequence[Item]], *, models_dir: str | os.PathLike[str] | None = None,
              C: float = 0.1, seed: int = 0, input_side: int = DEFAULT_SIDE,
              proj_dim: int = DEFAULT_PROJ) -> GramStyleJudge:
        """Fit on ``{artist: [image paths or float HxWx3 arrays]}``."""
        if len(reference) < 2 or any(len(v) < 1 for v in reference.values()):
            raise ValueError("a Gram style judge needs at least 2 artists with at least 1 image each")
        if C <= 0:
            raise ValueError(f"C (inverse L2 strength) must be > 0, got {C}")
        k = len(reference)
        probe = cls(artists=[str(i) for i in range(max(k, 3))], mean=np.zeros(1), scale=np.ones(1),
                    coef=np.zeros((max(k, 3), 1)), intercept=np.zeros(max(k, 3)), input_side=input_side,
                    proj_dim=proj_dim, models_dir=models_dir)
        feats, labels = [], []
        for artist, items in reference.items():
            f = probe.features(list(items))
            feats += [row[None] for row in f]
            labels += [artist] * len(f)
        params = fit_logistic(feats, labels, C=C, seed=seed)
        training = {"C": C, "seed": seed, "n_images": {a: len(v) for a, v in reference.items()}}
        judge = cls(**params, input_side=input_side, proj_dim=proj_dim, training=training, models_dir=models_dir)
        judge._lpips, judge._projs = probe._lpips, probe._projs
        return judge

    def predict_proba(self, images: Any) -> np.ndarray:
        """``[N, n_artists]`` probabilities (columns in ``artists`` order)."""
        f = self.features(images)
        return linear_proba(f, **self.params) if len(f) else np.zeros((0, len(self.artists)))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "artists": self.artists,
                "features": {"backbone": "lpips-alex", "weights_sha256": dict(self.lpips.weights_sha256),
                             "input_side": self.input_side, "proj_dim": self.proj_dim, "seed": self.seed,
                             "projection_sha256": _checksum(self.projections)},
                "training": self.training, **{k: v.tolist() for k, v in self.params.items()}}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             models_dir: str | os.PathLike[str] | None = None) -> GramStyleJudge:
        """Read a judge written by :meth:`save` (refuses other AlexNet weights or another projection)."""
        d = cls.read_saved(path, FORMAT, "Gram style judge")
        f = d["features"]
        judge = cls(artists=d["artists"], **cls.linear_params(d),
                    input_side=f["input_side"], proj_dim=f["proj_dim"], seed=f["seed"],
                    training=d.get("training"), models_dir=models_dir)
        if _checksum(judge.projections) != f["projection_sha256"]:
            raise ValueError(f"{path}: this numpy draws a different Gram projection; retrain the judge")
        if dict(judge.lpips.weights_sha256) != f["weights_sha256"]:
            raise ValueError(f"{path}: trained on different AlexNet weights; retrain it")
        return judge
