"""The independent judges of ``sfumato check`` (:mod:`sfumato.judges`) on the *AI views* (TAEF2 decode of
the latent): the style judge's probability for the artist the original is attributed to, and the concept
judge's top concepts. They never took part in making the protection."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["JudgePanel", "concept_entry", "default_style_judge", "setup_judges", "style_entry"]


def style_entry(judge: Any, img: np.ndarray, artist: str) -> dict[str, Any]:
    """The style judge's reading of ``img``: its prediction, and its probability for ``artist``."""
    p = judge.predict_proba([img])[0]
    pred = judge.artists[int(np.argmax(p))]
    return {"prediction": pred, "still_attributed": pred == artist, "p_artist": float(p[judge.artists.index(artist)]),
            "proba": {a: float(v) for a, v in zip(judge.artists, p, strict=True)}}


def concept_entry(judge: Any, img: np.ndarray, k: int = 3) -> dict[str, Any]:
    """The concept judge's reading of ``img``: its label, its top ``k`` concepts and classes."""
    probs = judge.probabilities([img])
    s = judge.scores([img], probs=probs)[0]
    top = np.argsort(-s)[:k]
    labels = judge.model.labels
    return {"label": judge.classify([img], probs=probs)[0],
            "top": [[judge.concepts[int(i)], float(s[int(i)])] for i in top],
            "top_classes": [[labels[int(i)], float(probs[0, int(i)])] for i in np.argsort(-probs[0])[:k]]}


@dataclass
class JudgePanel:
    """The judges that could be set up (``None`` when skipped) and the reference artist once known."""

    style: Any = None
    concept: Any = None
    artist: str | None = None

    def read_baseline(self, ae_id: str, x_p: np.ndarray, x_o: np.ndarray | None, av_p: np.ndarray,
                      av_o: np.ndarray | None) -> dict[str, Any]:
        """The judges' section of the report for the protected (and original) image and their AI views;
        attributes the reference artist (from the original when given)."""
        info: dict[str, Any] = {"ai_view_encoder": ae_id}
        sj, cj = self.style, self.concept
        if sj is not None:
            ref_img, ref_from = (x_o, "original") if x_o is not None else (x_p, "protected")
            self.artist = artist = sj.predict([ref_img])[0]
            info["style"] = {"artists": list(sj.artists), "reference_artist": artist, "reference_from": ref_from,
                             "reference_image": style_entry(sj, ref_img, artist),
                             "ai_view_protected": style_entry(sj, av_p, artist)}
            if av_o is not None:
                info["style"]["ai_view_original"] = style_entry(sj, av_o, artist)
        if cj is not None:
            info["concept"] = {"ai_view_protected": concept_entry(cj, av_p)}
            if av_o is not None:
                info["concept"]["ai_view_original"] = concept_entry(cj, av_o)
                info["concept"]["original"] = concept_entry(cj, x_o)
        return info

    def read(self, ai_view: np.ndarray) -> dict[str, Any]:
        """The judges' reading of an attacked image's AI view."""
        jd: dict[str, Any] = {}
        if self.style is not None and self.artist is not None:
            jd["style"] = style_entry(self.style, ai_view, self.artist)
        if self.concept is not None:
            jd["concept"] = concept_entry(self.concept, ai_view)
        return jd


def default_style_judge(corpus_dir: Any, models_dir: Any, notes: list[str]) -> Any:
    """The de-confounded art128 judge when ``<corpus_dir>/art128`` exists; otherwise the judge trained on
    ``<corpus_dir>/art``, which is confounded by source (said in ``notes``)."""
    from pathlib import Path

    from sfumato.judges.style import StyleJudge

    if (Path(corpus_dir).expanduser() / "art128").is_dir():
        from sfumato.judges.reference import art128_judge

        notes.append("Style judge: the art128 whole-image judge (14 painters from one source, images squashed to "
                     "128 px; held-out accuracy per artist in docs/judges.md).")
        return art128_judge(Path(corpus_dir).expanduser() / "art128", models_dir=models_dir)
    notes.append("Style judge: trained on <corpus>/art, which is confounded by source (most Monets and all "
                 "Cezannes there are 256 px CycleGAN JPEGs); a corpus with an art128/ folder gives the "
                 "de-confounded judge.")
    return StyleJudge.default(corpus_dir=corpus_dir, models_dir=models_dir)


def setup_judges(judges: bool, style_judge: Any, concept_judge: Any, corpus_dir: Any, models_dir: Any,
                 notes: list[str]) -> JudgePanel:
    """Load the judges (or take the given ones); each one skipped says why in ``notes``."""
    if not judges:
        notes.append("Judges were switched off (judges=False).")
        return JudgePanel()
    if importlib.util.find_spec("ai_edge_litert") is None:
        notes.append("Judges skipped: they need the 'judges' extra (pip install 'sfumato[judges]').")
        return JudgePanel()
    from sfumato.judges.concept import ConceptJudge
    from sfumato.judges.style import ENV_CORPUS_DIR, StyleJudge

    if style_judge is None:
        if corpus_dir is not None or os.environ.get(ENV_CORPUS_DIR):
            if importlib.util.find_spec("sklearn") is None:
                notes.append("Style judge skipped: training it needs scikit-learn (the 'judges' extra).")
            else:
                style_judge = default_style_judge(corpus_dir or os.environ[ENV_CORPUS_DIR], models_dir, notes)
        else:
            notes.append(f"Style judge skipped: no corpus of reference paintings (pass corpus_dir / --corpus-dir "
                         f"or set {ENV_CORPUS_DIR}).")
    elif isinstance(style_judge, (str, os.PathLike)):
        style_judge = StyleJudge.load(style_judge, models_dir=models_dir)
    if concept_judge is None:
        concept_judge = ConceptJudge(models_dir=models_dir)
    return JudgePanel(style=style_judge, concept=concept_judge)
