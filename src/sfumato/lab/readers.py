"""The judges the lab reads its samples with, behind one small interface.

A :class:`Reader` turns decoded samples (float32 HWC in [0, 1]) into per-class probabilities over its
own ``classes``. Readers are independent instruments: they never train or steer the generator.

* :func:`style_readers` -- the de-confounded art128 judges (MobileNetV2 whole-image probe and AlexNet
  Gram statistics, both trained on the fixed art128 *training* split; :mod:`sfumato.judges.reference`)
  when every lab class is one of their painters; otherwise a MobileNetV2 probe trained on the lab's own
  clean images (it has seen them, which the report says).
* :func:`heldout_probe_reader` -- a MobileNetV2 linear probe trained on the AI views (encoder round trip
  at the lab's size) of *held-out* files of each class: files the generator never trains on. It reads
  samples in the lab's own domain (decoded latents), which an ImageNet classifier trained on sharp photos
  does not: the ``cpu`` lab's cat samples are blurry and the ImageNet judge calls most of them dogs.
* :func:`concept_reader` -- the ImageNet MobileNetV2 concept judge (:class:`sfumato.judges.concept.ConceptJudge`):
  group probabilities of the packaged concepts (``dog``, ``cat``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Reader", "ai_views", "concept_reader", "heldout_probe_reader", "style_readers"]


@dataclass
class Reader:
    """``proba(images) -> (N, len(classes))``; ``labels`` applies ``min_score`` (below it: ``"other"``)."""

    name: str
    classes: list[str]
    proba: Callable[[list[np.ndarray]], np.ndarray]
    description: str
    min_score: float = 0.0

    def labels(self, p: np.ndarray) -> list[str]:
        best = p.argmax(axis=1)
        return [self.classes[j] if p[i, j] >= self.min_score else "other" for i, j in enumerate(best)]


def style_readers(classes: Sequence[str], *, corpus_dir: str | os.PathLike[str] | None,
                  models_dir: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None,
                  files: Mapping[str, Sequence[Path]] | None = None) -> list[Reader]:
    """Style judges for ``classes`` (see module doc)."""
    from sfumato.judges.reference import art128_view, train_art128_judge, train_gram_judge

    if corpus_dir is not None and (Path(corpus_dir) / "art128").is_dir():
        art = train_art128_judge(corpus_dir, models_dir=models_dir, cache_dir=cache_dir)
        if set(classes) <= set(art.artists):
            gram = train_gram_judge(corpus_dir, models_dir=models_dir, cache_dir=cache_dir)
            return [Reader("art128", list(art.artists), lambda im: art.predict_proba(art128_view(im)),
                           "MobileNetV2 linear probe, art128 training split (58.0 % held-out, 14 painters)"),
                    Reader("gram", list(gram.artists), lambda im: gram.predict_proba(art128_view(im)),
                           "AlexNet Gram statistics + logistic regression, art128 training split (67.0 % held-out)")]
    if files is None:
        raise ValueError("the lab's classes are not art128 painters: pass their files so a judge can be "
                         "trained on them, or a corpus folder with art128/")
    from sfumato.judges.style import StyleJudge

    judge = StyleJudge.train({c: list(files[c]) for c in classes}, models_dir=models_dir, tiles=False)
    return [Reader("own-probe", list(judge.artists), judge.predict_proba,
                   "MobileNetV2 linear probe trained on the lab's own clean training images (it has seen them)")]


def ai_views(paths: Sequence[Path], encoder: Any, size: int, *, batch: int = 32) -> list[np.ndarray]:
    """What a generator trained on ``paths`` at ``size`` px could reproduce at best: each file's square
    trainer view (:func:`sfumato.lab.data.square_view`) encoded and decoded by ``encoder``."""
    import torch

    from sfumato.lab.data import square_view

    dev = next(encoder.parameters()).device
    out: list[np.ndarray] = []
    for s in range(0, len(paths), batch):
        x = torch.from_numpy(np.stack([square_view(p, size) for p in paths[s:s + batch]])).permute(0, 3, 1, 2)
        with torch.no_grad():
            out += as_images(encoder.decode(encoder.encode(x.to(dev))).clamp(0, 1))
    return out


def heldout_probe_reader(files: Mapping[str, Sequence[Path]], *, encoder: Any, size: int,
                         models_dir: str | os.PathLike[str] | None = None) -> Reader:
    """A MobileNetV2 linear probe (whole image, no tiles) on the AI views of ``files`` (``{class: held-out
    paths}``, at least 4 per class). Its accuracy is estimated by 2-fold cross-validation over the
    held-out files (alternate files in each fold) and written into the reader's description."""
    from sfumato.judges.style import StyleJudge

    if len(files) < 2 or min(len(v) for v in files.values()) < 4:
        raise ValueError("a held-out probe needs at least 2 classes with 4 or more held-out files each")
    views = {c: ai_views(list(v), encoder, size) for c, v in files.items()}
    correct = total = 0
    for fold in (0, 1):
        fit = {c: v[fold::2] for c, v in views.items()}
        test = {c: v[1 - fold::2] for c, v in views.items()}
        judge = StyleJudge.train(fit, models_dir=models_dir, tiles=False)
        for c, imgs in test.items():
            pred = judge.predict_proba(imgs).argmax(axis=1)
            correct += int(sum(judge.artists[j] == c for j in pred))
            total += len(imgs)
    judge = StyleJudge.train(views, models_dir=models_dir, tiles=False)
    acc = correct / total
    n = ", ".join(f"{len(v)} {c}" for c, v in files.items())
    return Reader("heldout-probe", list(judge.artists), judge.predict_proba,
                  f"MobileNetV2 linear probe on the AI views of held-out files the generator never sees ({n}); "
                  f"2-fold held-out accuracy {100 * acc:.1f} % (chance {100 / len(files):.0f} %)")


def concept_reader(*, models_dir: str | os.PathLike[str] | None, min_score: float = 0.2) -> Reader:
    """The ImageNet concept judge as a reader over every packaged concept."""
    from sfumato.judges.concept import ConceptJudge

    judge = ConceptJudge(models_dir=models_dir)
    return Reader("imagenet-concepts", list(judge.concepts), judge.scores,
                  "MobileNetV2 ImageNet classifier (int8), probabilities summed per concept group",
                  min_score=min_score)


def as_images(x: Any) -> list[np.ndarray]:
    """A batch (NCHW tensor or NHWC array) as a list of HWC float32 arrays."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    return [np.asarray(a, dtype=np.float32) for a in x]
