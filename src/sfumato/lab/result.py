"""The typed result of a lab experiment and its summary figures.

Style (:func:`style_summary`): **mimicry success** = the share of the protected artist's samples the judge
attributes to that artist, per variant, with its mean and range over seeds; the same share averaged over
the *other* artists is the control (it should not move), and ``chance`` is one over the number of classes
the judge chooses among.

Concept (:func:`concept_summary`): per variant, the share of the poisoned concept's samples the judge
labels as the target concept, the share still labelled as the concept, and the mean p(target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sfumato.lab.config import LabConfig
from sfumato.lab.experiment import LabRun

__all__ = ["LabResult", "concept_summary", "style_summary"]


def _stats(values: Sequence[float]) -> dict[str, Any]:
    v = [float(x) for x in values]
    return {"mean": float(np.mean(v)) if v else float("nan"), "min": min(v, default=float("nan")),
            "max": max(v, default=float("nan")), "per_seed": v}


def _variants(runs: Sequence[LabRun]) -> list[str]:
    return list(dict.fromkeys(r.variant for r in runs))


def style_summary(runs: Sequence[LabRun], *, artist: str, readers: Sequence[str]) -> dict[str, Any]:
    """Mimicry success of ``artist`` and the other artists' control, per reader and variant."""
    out: dict[str, Any] = {}
    for rd in readers:
        out[rd] = {}
        for v in _variants(runs):
            rs = [r for r in runs if r.variant == v]
            classes = list(rs[0].tables[rd])
            own = [r.tables[rd][artist]["share"].get(artist, 0.0) for r in rs]
            p_own = [r.tables[rd][artist]["mean_p"].get(artist, 0.0) for r in rs]
            others = [float(np.mean([r.tables[rd][c]["share"].get(c, 0.0) for c in classes if c != artist]))
                      for r in rs]
            per_class = {c: float(np.mean([r.tables[rd][c]["share"].get(c, 0.0) for r in rs])) for c in classes}
            out[rd][v] = {"mimicry_success": _stats(own), "mean_p_artist": _stats(p_own),
                          "others_success": _stats(others), "all_classes_success": float(np.mean(list(per_class.values()))),
                          "per_class_success": per_class,
                          # the judge picks among its own classes (the lab may train on a subset of them)
                          "chance": 1.0 / max(1, len(rs[0].tables[rd][artist]["mean_p"]) or len(classes))}
    return out


def concept_summary(runs: Sequence[LabRun], *, concept: str, target: str, reader: str) -> dict[str, Any]:
    """How ``reader`` labels the samples of ``concept`` (and of ``target``), per variant.

    With a ``clean`` variant, ``shift_to_target`` places each variant's mean p(target) on the concept's
    samples on the clean model's scale, per seed: 0 = where the clean model's concept samples are, 1 =
    where its target samples are. A positive control that mislabels a share s of the concept's images as
    real target images should read about s if the lab learns what it is shown."""
    out: dict[str, Any] = {}
    clean = {r.seed: r.tables[reader] for r in runs if r.variant == "clean"}
    for v in _variants(runs):
        rs = [r for r in runs if r.variant == v]
        row: dict[str, Any] = {}
        for c in dict.fromkeys((concept, target)):
            t = [r.tables[reader][c] for r in rs]
            row[c] = {"judged_target": _stats([x["share"].get(target, 0.0) for x in t]),
                      "judged_concept": _stats([x["share"].get(concept, 0.0) for x in t]),
                      "judged_self": _stats([x["share"].get(c, 0.0) for x in t]),
                      "mean_p_target": _stats([x["mean_p"].get(target, 0.0) for x in t]),
                      "mean_p_concept": _stats([x["mean_p"].get(concept, 0.0) for x in t])}
        shifts = []
        for r in rs:
            base = clean.get(r.seed)
            if base is None:
                continue
            lo = base[concept]["mean_p"].get(target, 0.0)
            hi = base[target]["mean_p"].get(target, 0.0)
            if hi - lo > 1e-6:
                shifts.append((r.tables[reader][concept]["mean_p"].get(target, 0.0) - lo) / (hi - lo))
        if shifts:
            row[concept]["shift_to_target"] = _stats(shifts)
        out[v] = row
    return out


@dataclass
class LabResult:
    """Everything a lab experiment measured (``to_dict`` is the JSON report)."""

    kind: str  # "style" | "concept"
    focus: str  # the protected artist, or the poisoned concept
    target: str | None
    config: LabConfig
    seeds: list[int]
    variants: dict[str, dict[str, Any]]
    readers: list[dict[str, str]]
    runs: list[LabRun]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: concept runs: the summary per reader (``summary`` is the first reader's)
    summaries: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "focus": self.focus, "target": self.target, "config": self.config.to_dict(),
                "seeds": list(self.seeds), "variants": self.variants, "readers": self.readers,
                "summary": self.summary, "runs": [r.to_dict() for r in self.runs], "notes": list(self.notes),
                "seconds": round(self.seconds, 1), **({"summaries": self.summaries} if self.summaries else {})}
