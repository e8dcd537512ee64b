"""Independent judges: they only *measure* (numpy in, numpy out) and never enter an optimisation loss.

* :class:`MobileNetV2` / :func:`load_mobilenet` — int8 TFLite ImageNet classifier and 1280-d embedder;
* :class:`ConceptJudge` — ImageNet classes grouped into concepts ("dog", "cat", "teapot", ...);
* :class:`StyleJudge` — artist classifier (logistic regression on MobileNetV2 embeddings);
* :class:`CropStyleJudge` — the same probe on 224 px crops of 512/768/1024 px views (trainer's scale);
* :class:`GramStyleJudge` — a second family: AlexNet (LPIPS) Gram statistics + logistic regression;
* :func:`art128_split` / :func:`ace_split` — fixed hash splits of the shared corpus; the reference judges
  trained on them (:func:`train_art128_judge`, :func:`train_gram_judge`, :func:`train_ace_judge`);
* :func:`flip_rate` — efficacy: recognised clean, no longer recognised protected; drop in p(true).

The old 5-artist ``corpus/art`` judge (:meth:`StyleJudge.default`) is confounded by source.

Needs the ``judges`` extra (``ai-edge-litert``, ``scikit-learn`` for training a style judge).
"""

from __future__ import annotations

from sfumato.judges.concept import ConceptJudge, default_concepts
from sfumato.judges.crop import CropStyleJudge
from sfumato.judges.efficacy import FlipReport, flip_rate
from sfumato.judges.gram import GramStyleJudge
from sfumato.judges.heldout import HeldOutReport, heldout_report, top1_disagreement
from sfumato.judges.mobilenet import MobileNetV2, load_mobilenet
from sfumato.judges.reference import (
    art128_view,
    evaluate_holdout,
    train_ace_judge,
    train_art128_judge,
    train_gram_judge,
)
from sfumato.judges.splits import ace_split, art128_split
from sfumato.judges.style import SplitReport, StyleJudge, evaluate_split, evaluate_splits

__all__ = [
    "ConceptJudge",
    "CropStyleJudge",
    "FlipReport",
    "GramStyleJudge",
    "HeldOutReport",
    "ace_split",
    "art128_split",
    "art128_view",
    "evaluate_holdout",
    "flip_rate",
    "heldout_report",
    "top1_disagreement",
    "train_ace_judge",
    "train_art128_judge",
    "train_gram_judge",
    "MobileNetV2",
    "SplitReport",
    "StyleJudge",
    "default_concepts",
    "evaluate_split",
    "evaluate_splits",
    "load_mobilenet",
]
