"""The reference judges: trained on the fixed splits of the shared corpus, evaluated on their hold-outs.

Three de-confounded judges, so that a verdict is neither one network's opinion nor one source's:

* :func:`train_art128_judge` — :class:`~sfumato.judges.style.StyleJudge` (MobileNetV2 linear probe)
  on the ``art128`` training split (14 painters, one 128 px pipeline). Whole-image view only
  (``tiles=False``): measured on the fixed hold-out (112 images), tiles lift accuracy from 0.58 to 0.65
  but cost six times the embeddings, and on an image larger than 128 px a tile is a different scale
  than the 64 px tiles it was trained on. Feed it images brought to 128x128 (:func:`art128_view`, a
  squash, as the corpus pipeline made them).
* :func:`train_gram_judge` — :class:`~sfumato.judges.gram.GramStyleJudge` (AlexNet Gram statistics,
  another network and another feature family) on the same ``art128`` training split.
* :func:`train_ace_judge` — :class:`~sfumato.judges.crop.CropStyleJudge` on the ``ace_*`` training
  split (5 painters, full resolution): the judge at the trainer's scale, for images larger than
  about 256 px.

The old 5-artist ``corpus/art`` judge (:meth:`StyleJudge.default`) is **confounded by source** and is
a secondary measure only. ``cache_dir`` (never inside the repository) keeps a trained judge as JSON,
keyed by its settings and the split's file names and sizes. :func:`art128_judge` and :func:`ace_judge`
(what ``sfumato check`` uses) train once per process and keep the result in :func:`judge_cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.judges.crop import VIEW_SIDES, CropStyleJudge
from sfumato.judges.gram import GramStyleJudge
from sfumato.judges.heldout import HeldOutReport, heldout_report
from sfumato.judges.mobilenet import as_image_list, resize_float
from sfumato.judges.splits import SPLIT_SALT, ace_split, art128_split
from sfumato.judges.style import StyleJudge

__all__ = ["ACE_HOLDOUT", "ART128_HOLDOUT", "ART128_SIDE", "ENV_JUDGE_CACHE_DIR", "Art128Judge", "ace_judge",
           "art128_judge", "art128_view", "evaluate_holdout", "judge_cache_dir", "train_ace_judge",
           "train_art128_judge", "train_gram_judge"]

ART128_SIDE = 128
ART128_HOLDOUT = 8
ACE_HOLDOUT = 3
ENV_JUDGE_CACHE_DIR = "SFUMATO_JUDGE_CACHE_DIR"

Judge = StyleJudge | CropStyleJudge | GramStyleJudge


def art128_view(images: Any) -> list[np.ndarray]:
    """Images (paths, arrays) squashed to 128x128, as ``art128`` was made: the art128 judges' input."""
    return [resize_float(img, (ART128_SIDE, ART128_SIDE)) for img in as_image_list(images)]


def _key(kind: str, split: Mapping[str, Sequence[Path]], settings: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps({"kind": kind, "salt": SPLIT_SALT, "settings": settings}, sort_keys=True,
                                  default=str).encode())
    for artist in sorted(split):
        for p in split[artist]:
            h.update(f"{artist}/{p.name}:{p.stat().st_size};".encode())
    return f"{kind}-{h.hexdigest()[:16]}.json"


def _cached(kind: str, cls: Any, split: Mapping[str, Sequence[Path]], settings: Mapping[str, Any],
            cache_dir: str | os.PathLike[str] | None, models_dir: str | os.PathLike[str] | None,
            train: Any) -> Any:
    path = Path(cache_dir).expanduser() / _key(kind, split, settings) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return cls.load(path, models_dir=models_dir)
        except (ValueError, KeyError, OSError):  # unreadable or stale: train again and overwrite
            pass
    judge = train()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        judge.save(tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    return judge


def train_art128_judge(corpus_dir: str | os.PathLike[str], *, models_dir: str | os.PathLike[str] | None = None,
                       holdout_per_artist: int = ART128_HOLDOUT, tiles: bool = False, C: float = 1.0,
                       cache_dir: str | os.PathLike[str] | None = None) -> StyleJudge:
    """The whole-image MobileNetV2 style judge on the ``art128`` training split (see module doc)."""
    train, _ = art128_split(corpus_dir, holdout_per_artist=holdout_per_artist)
    settings = {"tiles": tiles, "C": C, "holdout": holdout_per_artist}
    return _cached("art128-style", StyleJudge, train, settings, cache_dir, models_dir,
                   lambda: StyleJudge.train(train, models_dir=models_dir, tiles=tiles, C=C))


def train_gram_judge(corpus_dir: str | os.PathLike[str], *, models_dir: str | os.PathLike[str] | None = None,
                     holdout_per_artist: int = ART128_HOLDOUT, C: float | None = None,
                     cache_dir: str | os.PathLike[str] | None = None) -> GramStyleJudge:
    """The AlexNet Gram style judge on the ``art128`` training split (see module doc)."""
    train, _ = art128_split(corpus_dir, holdout_per_artist=holdout_per_artist)
    kw = {} if C is None else {"C": C}
    settings = {"C": C, "holdout": holdout_per_artist}
    return _cached("art128-gram", GramStyleJudge, train, settings, cache_dir, models_dir,
                   lambda: GramStyleJudge.train(train, models_dir=models_dir, **kw))


def train_ace_judge(corpus_dir: str | os.PathLike[str], *, models_dir: str | os.PathLike[str] | None = None,
                    holdout_per_artist: int = ACE_HOLDOUT, view_sides: Sequence[int] = VIEW_SIDES,
                    C: float = 1.0, cache_dir: str | os.PathLike[str] | None = None) -> CropStyleJudge:
    """The crop-level judge on the ``ace_*`` training split, by painting (see module doc)."""
    train, _ = ace_split(corpus_dir, holdout_per_artist=holdout_per_artist)
    settings = {"view_sides": list(view_sides), "C": C, "holdout": holdout_per_artist}
    return _cached("ace-crop", CropStyleJudge, train, settings, cache_dir, models_dir,
                   lambda: CropStyleJudge.train(train, models_dir=models_dir, view_sides=view_sides, C=C))


def evaluate_holdout(judge: Judge, holdout: Mapping[str, Sequence[Path]], *, name: str,
                     proba: np.ndarray | None = None, **predict_kwargs: Any) -> tuple[HeldOutReport, np.ndarray]:
    """Per-artist held-out accuracy of ``judge`` on ``{artist: [paths]}`` and its ``[N, n_artists]``
    probabilities (hold-out images in artist, then file-name order). Pass ``proba`` to report on
    probabilities already computed in that order."""
    unknown = sorted(set(holdout) - set(judge.artists))
    if unknown:
        raise KeyError(f"hold-out artists {unknown} unknown to the judge ({', '.join(judge.artists)})")
    paths = [p for a in holdout for p in holdout[a]]
    labels = [a for a in holdout for _ in holdout[a]]
    if proba is None:
        proba = judge.predict_proba(paths, **predict_kwargs)
    return heldout_report(name, judge.artists, proba, labels, [p.name for p in paths]), proba


class Art128Judge:
    """The art128 whole-image judge as ``sfumato check`` uses it: any image is first squashed to 128x128
    (:func:`art128_view`), the scale its training paintings have. De-confounded (one source for every
    painter); held-out accuracy per artist in docs/judges.md."""

    def __init__(self, judge: StyleJudge) -> None:
        self.judge = judge
        self.artists = list(judge.artists)

    def predict_proba(self, images: Any) -> np.ndarray:
        return self.judge.predict_proba(art128_view(images))

    def predict(self, images: Any) -> list[str]:
        return [self.artists[j] for j in self.predict_proba(images).argmax(axis=1)]


def judge_cache_dir() -> Path:
    """Where :func:`art128_judge` and :func:`ace_judge` keep trained judges (JSON):
    ``$SFUMATO_JUDGE_CACHE_DIR``, else ``~/.cache/sfumato/judges``."""
    base = os.environ.get(ENV_JUDGE_CACHE_DIR)
    return Path(base).expanduser() if base else Path.home() / ".cache" / "sfumato" / "judges"


_ART128_JUDGES: dict[tuple[str, str], Art128Judge] = {}
_ACE_JUDGES: dict[tuple[str, str], CropStyleJudge] = {}


def art128_judge(corpus_dir: str | os.PathLike[str], *,
                 models_dir: str | os.PathLike[str] | None = None) -> Art128Judge:
    """The :class:`Art128Judge` trained on ``<corpus_dir>/art128``'s training split (once per process,
    kept in :func:`judge_cache_dir`)."""
    key = (str(Path(corpus_dir).resolve()), str(models_dir))
    if key not in _ART128_JUDGES:
        _ART128_JUDGES[key] = Art128Judge(train_art128_judge(corpus_dir, models_dir=models_dir,
                                                             cache_dir=judge_cache_dir()))
    return _ART128_JUDGES[key]


def ace_judge(corpus_dir: str | os.PathLike[str], *,
              models_dir: str | os.PathLike[str] | None = None) -> CropStyleJudge:
    """The crop-level judge trained on the ``ace_*`` training split of ``<corpus_dir>/art`` (once per
    process, kept in :func:`judge_cache_dir`; training takes about half a minute on one CPU core)."""
    key = (str(Path(corpus_dir).resolve()), str(models_dir))
    if key not in _ACE_JUDGES:
        _ACE_JUDGES[key] = train_ace_judge(corpus_dir, models_dir=models_dir, cache_dir=judge_cache_dir())
    return _ACE_JUDGES[key]
