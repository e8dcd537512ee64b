"""The independent judges of ``sfumato check`` (:mod:`sfumato.judges`) on the *AI views* (TAEF2 decode of
the latent): the style judge's probability for the artist the original is attributed to, and the concept
judge's top concepts. They never took part in making the protection.

Next to the whole-image style judge (art128: everything squashed to 128 px), the **crop judge**
(:class:`~sfumato.judges.crop.CropStyleJudge`, trained on the corpus's ``ace_*`` paintings; 5 painters)
looks at the scale a trainer sees: for an image whose long side exceeds :data:`CROP_JUDGE_MIN_SIDE` it
reads the AI view of every bucket and native trainer view of at least :data:`CROP_VIEW_MIN_SIDE` px, cut
into 224 px crops as given (no resize). Its reference artist is its own attribution of the original
(else of the protected file)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ACE_PAINTERS_NOTE", "CROP_JUDGE_MIN_SIDE", "CROP_VIEW_MIN_SIDE", "CropViewReader", "JudgePanel",
           "concept_entry", "corpus_has_ace", "crop_view_wanted", "default_crop_judge", "default_style_judge",
           "setup_judges", "style_entry"]

CROP_JUDGE_MIN_SIDE = 256
"""The crop judge is used only when the protected image's long side (px) is larger than this: a smaller
image is upscaled to every bucket, so its crops would show interpolation, not brushwork."""
CROP_VIEW_MIN_SIDE = 512
"""The crop judge reads bucket and native trainer views whose long side (px) is at least this."""
ACE_PAINTERS_NOTE = ("knows only the painters it was trained on (5 for the ace judge: Canaletto, Monet, "
                     "Signac, Van Gogh, Matisse); any other artist is mapped to the closest of them")


def style_entry(judge: Any, img: np.ndarray, artist: str, *, proba: np.ndarray | None = None) -> dict[str, Any]:
    """The style judge's reading of ``img`` (or its probabilities ``proba``, already computed): its
    prediction, and its probability for ``artist``."""
    p = np.asarray(judge.predict_proba([img])[0] if proba is None else proba, dtype=np.float64)
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


class CropViewReader:
    """A crop judge as :func:`~sfumato.verification.views.measure_views` calls it: the AI view of a trainer
    view already *is* the trainer's scale, so crops are cut from it as given (``predict_proba_crops``;
    a judge without it is asked ``predict_proba``)."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.artists = list(judge.artists)

    def predict_proba(self, images: Any) -> np.ndarray:
        read = getattr(self.judge, "predict_proba_crops", None) or self.judge.predict_proba
        return np.asarray(read(images), dtype=np.float64)


def crop_view_wanted(view: Any) -> bool:
    """Whether the crop judge reads trainer view ``view``: a bucket or the native size, long side >= 512."""
    return view.kind in ("bucket", "native") and max(view.out_size) >= CROP_VIEW_MIN_SIDE


@dataclass
class JudgePanel:
    """The judges that could be set up (``None`` when skipped) and the reference artists once known
    (``artist`` for the whole-image style judge, ``crop_artist`` for the crop judge)."""

    style: Any = None
    concept: Any = None
    artist: str | None = None
    crop_style: Any = None
    crop_artist: str | None = None

    def view_judges(self) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
        """What the trainer-views step hands :func:`~sfumato.verification.views.measure_views`: the judges
        by name, their reference artists and, per judge, which views it reads (absent: all)."""
        judges: dict[str, Any] = {}
        artists: dict[str, str] = {}
        wanted: dict[str, Any] = {}
        if self.style is not None and self.artist is not None:
            judges["style"], artists["style"] = self.style, self.artist
        if self.crop_style is not None and self.crop_artist is not None:
            judges["crop_style"], artists["crop_style"] = CropViewReader(self.crop_style), self.crop_artist
            wanted["crop_style"] = crop_view_wanted
        return judges, artists, wanted

    def read_crop_views(self, info: dict[str, Any], views: dict[str, Any] | None, notes: list[str]) -> None:
        """Copy the crop judge's reading of each trainer view into ``info["crop_style"]["views"]`` (a list of
        ``{view, size, upscaled, prediction, still_attributed, p_artist, p_original}``)."""
        crop = info.get("crop_style")
        if not crop:
            return
        rows = [r for r in (views or {}).get("rows") or [] if "crop_style" in (r.get("judges") or {})]
        crop["views"] = [{"view": r["name"], "size": r["size"], "upscaled": r.get("upscaled", False),
                          "prediction": r["judges"]["crop_style"]["prediction"],
                          "still_attributed": r["judges"]["crop_style"]["still_attributed"],
                          "p_artist": r["judges"]["crop_style"]["p_protected"],
                          "p_original": r["judges"]["crop_style"]["p_original"]} for r in rows]
        if not crop["views"]:
            notes.append("Crop judge: it reads the AI views of the trainer views (buckets and native size, "
                         f">= {CROP_VIEW_MIN_SIDE} px), which were not measured (views off, or no original); "
                         "only its reading of the reference image is reported.")

    def read_baseline(self, ae_id: str, x_p: np.ndarray, x_o: np.ndarray | None, av_p: np.ndarray,
                      av_o: np.ndarray | None) -> dict[str, Any]:
        """The judges' section of the report for the protected (and original) image and their AI views;
        attributes the reference artists (from the original when given)."""
        info: dict[str, Any] = {"ai_view_encoder": ae_id}
        sj, cj = self.style, self.concept
        ref_img, ref_from = (x_o, "original") if x_o is not None else (x_p, "protected")
        if self.crop_style is not None:
            cr = self.crop_style
            p = np.asarray(cr.predict_proba([ref_img])[0], dtype=np.float64)
            self.crop_artist = crop_artist = cr.artists[int(np.argmax(p))]
            info["crop_style"] = {"artists": list(cr.artists), "reference_artist": crop_artist,
                                  "reference_from": ref_from,
                                  "reference_image": style_entry(cr, ref_img, crop_artist, proba=p),
                                  "view_min_side": CROP_VIEW_MIN_SIDE, "views": [],
                                  "known_artists_only": f"The crop judge {ACE_PAINTERS_NOTE}."}
        if sj is not None:
            p_av_o = None
            if av_o is not None:  # the artist is the judge's reading of what a model sees of the original, as
                # in the protecting commands' verdict: the same kind of image as the protected file's AI view
                p_av_o = np.asarray(sj.predict_proba([av_o])[0], dtype=np.float64)
                artist = sj.artists[int(np.argmax(p_av_o))]
            else:
                artist = sj.predict([ref_img])[0]
            self.artist = artist
            info["style"] = {"artists": list(sj.artists), "reference_artist": artist, "reference_from": ref_from,
                             "reference_read_on": "ai_view" if av_o is not None else "pixels",
                             "reference_image": style_entry(sj, ref_img, artist),
                             "ai_view_protected": style_entry(sj, av_p, artist)}
            if av_o is not None:
                info["style"]["ai_view_original"] = style_entry(sj, av_o, artist, proba=p_av_o)
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


def corpus_has_ace(corpus_dir: Any) -> bool:
    """Whether ``corpus_dir`` (the shared corpus, or its ``art/``) holds ``art/<artist>/ace_*`` files."""
    from pathlib import Path

    root = Path(corpus_dir).expanduser()
    art = root if root.name == "art" and not (root / "art").is_dir() else root / "art"
    return art.is_dir() and any(art.glob("*/ace_*"))


def default_crop_judge(corpus_dir: Any, models_dir: Any, notes: list[str]) -> Any:
    """The ace crop judge (:func:`sfumato.judges.reference.ace_judge`, cached) when the corpus has ``ace_*``
    files, else ``None`` with a note saying why."""
    if corpus_dir is None or not corpus_has_ace(corpus_dir):
        if corpus_dir is not None:
            notes.append("Crop judge skipped: the corpus has no art/<artist>/ace_* paintings to train it on.")
        return None
    if importlib.util.find_spec("scipy") is None:
        notes.append("Crop judge skipped: training it needs scipy (the 'judges' extra).")
        return None
    from sfumato.judges.reference import ace_judge

    try:
        judge = ace_judge(corpus_dir, models_dir=models_dir)
    except (ValueError, FileNotFoundError) as e:
        notes.append(f"Crop judge skipped: it could not be trained on the corpus's ace_* paintings ({e}).")
        return None
    notes.append(f"Crop judge: the ace crop-level judge (224 px crops of the trainer's buckets; held-out accuracy "
                 f"in docs/judges.md) reads every bucket and native trainer view of >= {CROP_VIEW_MIN_SIDE} px; "
                 f"{ACE_PAINTERS_NOTE}.")
    return judge


def setup_judges(judges: bool, style_judge: Any, concept_judge: Any, corpus_dir: Any, models_dir: Any,
                 notes: list[str], *, crop_judge: Any = None, long_side: int | None = None) -> JudgePanel:
    """Load the judges (or take the given ones); each one skipped says why in ``notes``. ``crop_judge``:
    ``None`` (the ace crop judge when the corpus has one), ``False`` (off), a judge or a saved judge's path;
    it is used only when ``long_side`` (the protected image's, px) is larger than 256."""
    if not judges:
        notes.append("Judges were switched off (judges=False).")
        return JudgePanel()
    if importlib.util.find_spec("ai_edge_litert") is None:
        notes.append("Judges skipped: they need the 'judges' extra (pip install 'sfumato[judges]').")
        return JudgePanel()
    from sfumato.judges.concept import ConceptJudge, quiet_tflite
    from sfumato.judges.style import ENV_CORPUS_DIR, StyleJudge
    from sfumato.verification.discovery import find_corpus_dir

    corpus = find_corpus_dir(corpus_dir or None, models_dir=models_dir)
    crop = None
    if crop_judge is False:
        pass
    elif long_side is not None and long_side <= CROP_JUDGE_MIN_SIDE:
        notes.append(f"Crop judge not used: the protected image is {long_side} px on its long side (<= "
                     f"{CROP_JUDGE_MIN_SIDE} px); every trainer bucket would be an upscale, so its crops would "
                     "show interpolation, not brushwork.")
    elif crop_judge is None:
        with quiet_tflite():
            crop = default_crop_judge(corpus, models_dir, notes)
    elif isinstance(crop_judge, (str, os.PathLike)):
        from sfumato.judges.crop import CropStyleJudge

        crop = CropStyleJudge.load(crop_judge, models_dir=models_dir)
    else:
        crop = crop_judge

    if style_judge is None:
        if corpus is not None:
            if importlib.util.find_spec("scipy") is None:
                notes.append("Style judge skipped: training it needs scipy (the 'judges' extra).")
            else:
                with quiet_tflite():
                    style_judge = default_style_judge(corpus, models_dir, notes)
        else:
            notes.append(f"Style judge skipped: no corpus of reference paintings found (pass corpus_dir / "
                         f"--corpus-dir, set {ENV_CORPUS_DIR}, run 'sfumato config set corpus_dir FOLDER', or keep "
                         "a corpus/ folder with art128/ or art/<artist>/ beside the models folder).")
    elif isinstance(style_judge, (str, os.PathLike)):
        with quiet_tflite():
            style_judge = StyleJudge.load(style_judge, models_dir=models_dir)
    if concept_judge is None:
        concept_judge = ConceptJudge(models_dir=models_dir)
    return JudgePanel(style=style_judge, concept=concept_judge, crop_style=crop)
