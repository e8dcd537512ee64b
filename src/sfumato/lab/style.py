"""The style experiment of the mimicry lab (issue 17): does a model trained on an artist's *protected*
images still learn that artist's style?

One generator is trained on the clean dataset (one class per artist) and one per protected variant, in
which the chosen artist's files are replaced by their protected versions (everything else unchanged),
each for every seed. Samples of every class are decoded and attributed by the de-confounded style judges
(:func:`sfumato.lab.readers.style_readers`). **Mimicry success** is the share of the protected artist's
samples attributed to them (Glaze's own protocol, Shan et al., USENIX Security 2023, §6, with a judge in
place of artists' ratings); the other artists' share is the control.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sfumato.lab.config import LabConfig
from sfumato.lab.data import class_folders
from sfumato.lab.experiment import run_lab
from sfumato.lab.protect import match_protected, protect_views
from sfumato.lab.readers import style_readers
from sfumato.lab.result import LabResult, style_summary

__all__ = ["protect_artist", "style_lab"]

PathLike = str | os.PathLike[str]


def protect_artist(files: Sequence[Path], out_dir: PathLike, *, quality: str = "default", intensity: str = "default",
                   size: int = 128, seed: int = 0, models_dir: PathLike | None = None,
                   log: Callable[[str], None] | None = None) -> dict[Path, Path]:
    """Cloak the trainer's view of each file with the shipped preset (``CloakConfig.preset``); the PNGs
    go to ``out_dir`` (reused when present)."""
    from sfumato.config import CloakConfig
    from sfumato.protections.cloak import cloak_array

    cfg = CloakConfig.preset(intensity=intensity, quality=quality, seed=seed)
    return protect_views(files, out_dir, lambda rgb: cloak_array(rgb, cfg, models_dir=models_dir), size=size,
                         budget=cfg.budget, models_dir=models_dir, log=log)


def style_lab(root: PathLike | Mapping[str, PathLike], *, artist: str, protected: Mapping[str, PathLike],
              config: LabConfig | None = None, seeds: Sequence[int] = (0, 1), classes: Sequence[str] | None = None,
              corpus_dir: PathLike | None = None, models_dir: PathLike | None = None,
              cache_dir: PathLike | None = None, encoder: Any = None, readers: Any = None,
              log: Callable[[str], None] | None = None, include_clean: bool = True) -> LabResult:
    """Run the style experiment (``include_clean=False`` skips the clean run, e.g. when it is stored). ``root``: a folder with one sub-folder per artist (or ``{artist:
    folder}``); ``protected``: ``{variant name: folder of the artist's protected files}``, matched by stem
    (``<stem>.png`` or ``<stem>.<variant>.png``). ``corpus_dir``: the reference corpus whose ``art128/``
    trains the judges (else a judge is trained on ``root``'s clean images)."""
    t0 = time.perf_counter()
    config = config or LabConfig()
    files = class_folders(root, classes)
    if artist not in files:
        raise ValueError(f"artist {artist!r} is not a class of the dataset; classes: {sorted(files)}")
    if len(files) < 2:
        raise ValueError("the style lab needs at least two artists (the others are the control)")
    variants: dict[str, dict[Path, Path]] = {"clean": {}} if include_clean else {}
    info: dict[str, dict[str, Any]] = {"clean": {"replaced": 0, "folder": None}} if include_clean else {}
    for name, folder in protected.items():
        if name == "clean":
            raise ValueError("'clean' is the name of the unprotected run; name the protected variant otherwise")
        m = match_protected(files[artist], folder, method=name)
        variants[name] = m
        info[name] = {"replaced": len(m), "of": len(files[artist]), "folder": str(folder)}
    if not variants:
        raise ValueError("nothing to run: no protected variant given and include_clean=False")
    if encoder is None:
        from sfumato.encoders import load_encoder

        encoder = load_encoder(config.encoder, models_dir=models_dir)
    if readers is None:
        readers = style_readers(list(files), corpus_dir=corpus_dir, models_dir=models_dir, cache_dir=cache_dir,
                                files=files)
    runs = run_lab(files, variants, encoder=encoder, readers=readers, config=config, seeds=seeds,
                   cache_dir=cache_dir, log=log)
    notes = [f"{info[v]['replaced']} of {len(files[artist])} files of {artist} replaced in variant {v!r}"
             for v in variants if v != "clean"]
    if any(v["replaced"] < len(files[artist]) for k, v in info.items() if k != "clean"):
        notes.append("Some of the artist's files had no protected version: those stayed clean in training.")
    return LabResult(kind="style", focus=artist, target=None, config=config, seeds=list(seeds), variants=info,
                     readers=[{"name": r.name, "description": r.description} for r in readers], runs=runs,
                     summary=style_summary(runs, artist=artist, readers=[r.name for r in readers]), notes=notes,
                     seconds=time.perf_counter() - t0)
