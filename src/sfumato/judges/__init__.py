"""Independent judges: they only *measure* (numpy in, numpy out) and never enter an optimisation loss.

* :class:`MobileNetV2` / :func:`load_mobilenet` — int8 TFLite ImageNet classifier and 1280-d embedder;
* :class:`ConceptJudge` — ImageNet classes grouped into concepts ("dog", "cat", "teapot", ...);
* :class:`StyleJudge` — artist classifier (logistic regression on MobileNetV2 embeddings).

Needs the ``judges`` extra (``ai-edge-litert``, ``scikit-learn`` for training a style judge).
"""

from __future__ import annotations

from sfumato.judges.concept import ConceptJudge, default_concepts
from sfumato.judges.mobilenet import MobileNetV2, load_mobilenet
from sfumato.judges.style import SplitReport, StyleJudge, evaluate_split, evaluate_splits

__all__ = [
    "ConceptJudge",
    "MobileNetV2",
    "SplitReport",
    "StyleJudge",
    "default_concepts",
    "evaluate_split",
    "evaluate_splits",
    "load_mobilenet",
]
