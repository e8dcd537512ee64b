"""Protection efficacy as a judge sees it: recognised clean, no longer recognised protected.

Two figures, both over the same images judged clean and protected (issue 22):

* **flip rate** — of the images whose clean top-1 is the true artist, the share whose protected top-1
  is not (``nan`` when the judge recognises none of them clean);
* **mean drop in p(true artist)** — ``mean(p_clean[true] - p_protected[true])`` over all images
  (positive = the protection moved the judge away from the artist).

Pure numpy; the judge that produced the probabilities never enters a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["FlipReport", "flip_rate"]


@dataclass(frozen=True)
class FlipReport:
    """Result of :func:`flip_rate` (shares in [0, 1], probabilities in [0, 1])."""

    flip_rate: float  # flipped / recognised_clean (nan when recognised_clean == 0)
    n_images: int
    recognised_clean: int  # clean top-1 == true artist
    flipped: int  # of those, protected top-1 != true artist
    recognised_protected: int  # protected top-1 == true artist (all images)
    mean_p_true_clean: float
    mean_p_true_protected: float
    mean_p_true_drop: float  # mean over all images of p_clean[true] - p_protected[true]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(true_labels: Sequence[int] | Sequence[str] | np.ndarray, artists: Sequence[str] | None,
            n: int, k: int) -> np.ndarray:
    labels = list(true_labels)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} true labels for {n} images")
    if labels and isinstance(labels[0], str):
        if artists is None:
            raise ValueError("true labels are artist names: pass artists=[...] (the judge's column order)")
        index = {a: i for i, a in enumerate(artists)}
        missing = sorted({lab for lab in labels if lab not in index})
        if missing:
            raise KeyError(f"unknown artist(s) {missing}; the judge knows: {', '.join(artists)}")
        out = np.array([index[lab] for lab in labels], dtype=int)
    else:
        out = np.asarray(labels, dtype=int).reshape(-1)
    if out.size and (out.min() < 0 or out.max() >= k):
        raise ValueError(f"true label indices must lie in [0, {k}), got [{out.min()}, {out.max()}]")
    return out


def flip_rate(judge_clean_probs: Any, judge_protected_probs: Any,
              true_labels: Sequence[int] | Sequence[str] | np.ndarray, *,
              artists: Sequence[str] | None = None) -> FlipReport:
    """Flip rate and mean drop in p(true artist) (see module doc).

    ``judge_*_probs``: ``[N, n_artists]`` probabilities of the same judge on the same images, clean and
    protected, in the same order. ``true_labels``: ``N`` column indices, or artist names with
    ``artists`` giving the column order (e.g. ``judge.artists``).
    """
    clean = np.asarray(judge_clean_probs, dtype=np.float64)
    prot = np.asarray(judge_protected_probs, dtype=np.float64)
    if clean.ndim != 2 or clean.shape != prot.shape:
        raise ValueError(f"clean and protected probabilities must both be [N, n_artists], got "
                         f"{clean.shape} and {prot.shape}")
    n, k = clean.shape
    y = _labels(true_labels, artists, n, k)
    if n == 0:
        nan = float("nan")
        return FlipReport(nan, 0, 0, 0, 0, nan, nan, nan)
    rows = np.arange(n)
    ok_clean = clean.argmax(axis=1) == y
    ok_prot = prot.argmax(axis=1) == y
    rec = int(ok_clean.sum())
    flipped = int((ok_clean & ~ok_prot).sum())
    pc, pp = clean[rows, y], prot[rows, y]
    return FlipReport(flip_rate=flipped / rec if rec else float("nan"), n_images=n, recognised_clean=rec,
                      flipped=flipped, recognised_protected=int(ok_prot.sum()),
                      mean_p_true_clean=float(pc.mean()), mean_p_true_protected=float(pp.mean()),
                      mean_p_true_drop=float((pc - pp).mean()))
