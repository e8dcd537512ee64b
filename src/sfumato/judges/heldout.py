"""Held-out accuracy of a judge, per artist, and where two judges disagree.

Figures for the fixed splits of :mod:`sfumato.judges.splits`: accuracy per artist (recall of the true
artist among that artist's hold-out images), overall accuracy, balanced accuracy (mean of per-artist
recalls), the confusion matrix, and the share of images on which two judges' top-1 differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["HeldOutReport", "heldout_report", "top1_disagreement"]


@dataclass(frozen=True)
class HeldOutReport:
    """Held-out accuracy of one judge (``per_artist[a] = (correct, n)``)."""

    judge: str
    artists: list[str]
    per_artist: dict[str, tuple[int, int]]
    accuracy: float
    balanced_accuracy: float
    chance: float
    confusion: list[list[int]]  # rows: true artist, columns: predicted (order of ``artists``)
    misclassified: list[tuple[str, str, str]] = field(default_factory=list)  # (name, true, predicted)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_artist"] = {a: {"correct": c, "n": n, "accuracy": c / n if n else None}
                           for a, (c, n) in self.per_artist.items()}
        return d

    def table(self) -> str:
        """A plain-text table: one row per artist, then the overall figures."""
        w = max(12, *(len(a) for a in self.artists))
        lines = [f"{self.judge}: held-out accuracy {self.accuracy:.3f} (balanced {self.balanced_accuracy:.3f}, "
                 f"chance {self.chance:.3f}) on {sum(n for _, n in self.per_artist.values())} images",
                 f"  {'artist':<{w}s} correct/n  accuracy"]
        for a in self.artists:
            c, n = self.per_artist[a]
            lines.append(f"  {a:<{w}s} {c:>4d}/{n:<4d}  {c / n if n else float('nan'):.3f}")
        return "\n".join(lines)


def heldout_report(judge: str, artists: Sequence[str], proba: Any, true_labels: Sequence[str],
                   names: Sequence[str] | None = None) -> HeldOutReport:
    """Per-artist accuracy of ``proba`` (``[N, len(artists)]``, columns in ``artists`` order) against
    artist names ``true_labels``."""
    artists = list(artists)
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (len(true_labels), len(artists)):
        raise ValueError(f"probabilities {p.shape} do not match {len(true_labels)} labels x {len(artists)} artists")
    k = {a: i for i, a in enumerate(artists)}
    conf = np.zeros((len(artists), len(artists)), dtype=int)
    pred = [artists[j] for j in p.argmax(axis=1)]
    for t, q in zip(true_labels, pred, strict=True):
        conf[k[t], k[q]] += 1
    per = {a: (int(conf[i, i]), int(conf[i].sum())) for i, a in enumerate(artists)}
    recalls = [c / n for c, n in per.values() if n]
    names = list(names) if names is not None else [str(i) for i in range(len(pred))]
    return HeldOutReport(judge=judge, artists=artists, per_artist=per,
                         accuracy=float(np.trace(conf) / max(1, conf.sum())),
                         balanced_accuracy=float(np.mean(recalls)) if recalls else float("nan"),
                         chance=1.0 / len(artists), confusion=conf.tolist(),
                         misclassified=[(nm, t, q) for nm, t, q in zip(names, true_labels, pred, strict=True)
                                        if t != q])


def top1_disagreement(proba_a: Any, proba_b: Any) -> float:
    """Share of images on which two judges (same columns, same image order) have different top-1."""
    a, b = np.asarray(proba_a), np.asarray(proba_b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"both judges' probabilities must be [N, n_artists] of one shape, got {a.shape}, {b.shape}")
    if a.shape[0] == 0:
        return float("nan")
    return float(np.mean(a.argmax(axis=1) != b.argmax(axis=1)))
