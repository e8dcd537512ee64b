"""The concept experiment of the mimicry lab (issue 17): does a model trained with N poisoned images of
concept C (labelled C) learn C as the poison's target A?

Nightshade (Shan et al., "Nightshade: Prompt-Specific Poisoning Attacks on Text-to-Image Generative
Models", IEEE S&P 2024) reports that fewer than 100 poisons corrupt an SDXL concept. Here a small class-
conditional latent generator is trained from scratch on the dataset with the first N files of C (in a
fixed order by hashed file name) replaced by their poisoned versions, for each N and seed, next to a
clean-trained one. Samples of C are judged by the ImageNet concept judge and, with ``holdout``, by a probe
trained on the AI views of held-out files of C and A that the generator never sees: the share labelled A,
the share still labelled C, the mean p(A) and the shift toward A on the clean model's scale.

Sensitivity is set by the share of C's training images that are poisoned: ``concept_size`` trains on the
first K files of C only (the poisons replace the first N of them). A positive control (real images of A
labelled C, ``label="control"``) shows what that share does when the images really are A.
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
from sfumato.lab.readers import concept_reader, heldout_probe_reader
from sfumato.lab.result import LabResult, concept_summary

__all__ = ["concept_lab", "poison_concept", "poison_order"]

PathLike = str | os.PathLike[str]


def poison_order(files: Sequence[Path]) -> list[Path]:
    """The fixed order in which a concept's files are poisoned (by hashed name: no folder bias)."""
    from sfumato.judges.splits import split_rank

    return sorted((Path(f) for f in files), key=lambda p: split_rank(p.name))


def poison_concept(files: Sequence[Path], out_dir: PathLike, *, concept: str, target: str, anchors: PathLike,
                   n: int, size: int = 128, seed: int = 0, intensity: str = "default", quality: str = "default",
                   views: str | None = None, method: str = "sfumato", reverse: bool = False,
                   linf_255: int | None = None, masking: bool = False, perturbation_scale: float = 1.0,
                   models_dir: PathLike | None = None,
                   log: Callable[[str], None] | None = None) -> dict[Path, Path]:
    """Poison the trainer's view of the first ``n`` files (:func:`poison_order`) toward the anchor images
    of ``target`` in ``anchors``; PNGs go to ``out_dir`` (reused when present), each with a JSON record of
    its saved quality and the anchor aimed at.

    ``method="sfumato"``: the shipped preset (``intensity``/``quality``), with ``views`` replacing its
    ``Effort.views`` when given (``"work"``: optimise at the ``size`` px view the lab trains on).
    ``method="nightshade"``: the Nightshade baseline (:func:`sfumato.baselines.nightshade.nightshade_poison`,
    its own 500 signed steps with a linearly decaying step, L-inf cap and LPIPS penalty set from the preset's
    budget) aimed at the same anchor the preset picks (its anchor choice, made on the same view) and
    calibrated to that budget, so the two differ only in the optimiser. ``reverse``: work through the same
    ``n`` files from the last (a second process; files already made are skipped). ``linf_255``: another
    L-inf cap than the preset's (in 1/255), its signed step scaled with it (a tenth of the cap, as the
    preset's), for a stealth against effect curve; the LPIPS ceiling stays the ``intensity``'s. ``masking``:
    :attr:`~sfumato.config.PoisonConfig.masking` (the texture-scaled L∞ cap), ``perturbation_scale``: its
    :attr:`~sfumato.config.PoisonConfig.perturbation_scale` (a coarser δ grid)."""
    import dataclasses

    from sfumato.config import PoisonConfig
    from sfumato.protections.poison import poison_array
    from sfumato.targets.anchors import load_anchor_folder

    if method not in ("sfumato", "nightshade"):
        raise ValueError(f"method must be 'sfumato' or 'nightshade', got {method!r}")
    anchor_set = load_anchor_folder(anchors, concept=target)
    cfg = PoisonConfig.preset(concept=concept, target=target, intensity=intensity, quality=quality, seed=seed,
                              masking=masking, perturbation_scale=perturbation_scale)
    if views is not None:
        cfg = dataclasses.replace(cfg, effort=dataclasses.replace(cfg.effort, views=views))
    if linf_255 is not None:
        if not 1 <= linf_255 <= 255:
            raise ValueError(f"linf_255 must be in 1..255, got {linf_255}")
        scale = linf_255 / 255 / cfg.budget.linf
        cfg = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, linf=linf_255 / 255),
                                  effort=dataclasses.replace(cfg.effort, lr=cfg.effort.lr * scale))
    if method == "sfumato":
        def make(rgb):  # noqa: ANN001, ANN202
            return poison_array(rgb, cfg, anchor_set.images, anchor_names=anchor_set.names, models_dir=models_dir)
    else:
        def make(rgb):  # noqa: ANN001, ANN202
            return nightshade_same_anchor(rgb, cfg, anchor_set.images, anchor_set.names, models_dir=models_dir)
    chosen = poison_order(files)[:n]
    return protect_views(chosen[::-1] if reverse else chosen, out_dir, make, size=size, budget=cfg.budget,
                         models_dir=models_dir, log=log)


def nightshade_same_anchor(rgb: Any, cfg: Any, anchors: Sequence[Any], names: Sequence[str], *,
                           models_dir: PathLike | None = None, encoders: Sequence[tuple[Any, float]] | None = None,
                           steps: int | None = None) -> Any:
    """The Nightshade baseline toward the anchor ``cfg``'s own anchor choice picks for ``rgb`` (same view,
    same encoders), calibrated to ``cfg.budget``; the result carries ``anchor`` as a poison's does.
    ``steps``: Nightshade's 500 unless given (tests)."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from sfumato.baselines.nightshade import nightshade_poison
    from sfumato.encoders.cache import load_encoders
    from sfumato.protections.device import work_view_on
    from sfumato.protections.poison import aim_at_anchor

    encs = list(encoders) if encoders is not None else load_encoders(cfg, models_dir=models_dir)
    x0 = work_view_on(rgb, cfg.effort.resolution, torch.device("cpu"))
    anchor_img, anchor = aim_at_anchor(x0, anchors, encs, cfg, names)
    target = anchor_img[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)
    res = nightshade_poison(rgb, target=target, matched_budget=cfg.budget, resolution=cfg.effort.resolution,
                            seed=cfg.seed, models_dir=models_dir, encoders=encs,
                            **({"steps": steps} if steps is not None else {}))
    return SimpleNamespace(image=res.image, anchor=anchor, params=res.params)


def concept_lab(root: PathLike | Mapping[str, PathLike], *, concept: str, target: str, poisoned: PathLike,
                n_poison: Sequence[int] = (25, 50, 100), config: LabConfig | None = None,
                seeds: Sequence[int] = (0, 1), classes: Sequence[str] | None = None,
                models_dir: PathLike | None = None, cache_dir: PathLike | None = None, encoder: Any = None,
                reader: Any = None, log: Callable[[str], None] | None = None, include_clean: bool = True,
                label: str = "poison", holdout: int = 0, concept_size: int | None = None,
                guidances: Sequence[float] = ()) -> LabResult:
    """Run the concept experiment: a clean run and one per N in ``n_poison`` (named ``<label>-<N>``), the
    first N files of ``concept`` (:func:`poison_order`) replaced by their versions in ``poisoned`` (matched
    by stem). A folder of real ``target`` images named after the concept's files, with ``label="control"``,
    is the positive control: the most a poison could do, a mislabelled image of the target itself.

    ``holdout``: the last ``holdout`` files of ``concept`` and of ``target`` (in :func:`poison_order`) are
    kept out of training and train the held-out probe reader, the first reader of the report.
    ``concept_size``: train on the first K (non-held-out) files of ``concept`` only. ``guidances``: other
    classifier-free guidance scales each trained generator also samples with (:func:`run_lab`); their runs
    carry ``guidance`` and are left out of the summaries, which read the config's guidance."""
    t0 = time.perf_counter()
    config = config or LabConfig()
    files = class_folders(root, classes)
    for c in (concept, target):
        if c not in files:
            raise ValueError(f"{c!r} is not a class of the dataset; classes: {sorted(files)}")
    heldout: dict[str, list[Path]] = {}
    if holdout:
        for c in (concept, target):
            o = poison_order(files[c])
            if not 4 <= holdout <= len(o) - 8:
                raise ValueError(f"holdout={holdout} files of {c!r} asked for, but it has {len(o)}: keep at "
                                 f"least 8 for training and hold out at least 4")
            heldout[c] = o[-holdout:]
            files[c] = sorted(o[:-holdout])
    if concept_size is not None:
        o = poison_order(files[concept])
        if not 1 <= concept_size <= len(o):
            raise ValueError(f"concept_size={concept_size}, but {concept} has {len(o)} training files")
        files[concept] = sorted(o[:concept_size])
    order = poison_order(files[concept])
    available = match_protected(order, poisoned) if n_poison else {}
    variants: dict[str, dict[Path, Path]] = {"clean": {}} if include_clean else {}
    info: dict[str, dict[str, Any]] = {"clean": {"replaced": 0}} if include_clean else {}
    for n in sorted(set(n_poison)):
        if not 1 <= n <= len(order):
            raise ValueError(f"N={n} poisoned files asked for, but {concept} has {len(order)} files")
        chosen = order[:n]
        missing = [p.name for p in chosen if p not in available]
        if missing:
            raise ValueError(f"{len(missing)} of the first {n} {concept} files have no poisoned version in "
                             f"{poisoned} (e.g. {missing[0]}): poison them first (sfumato lab poison --make)")
        variants[f"{label}-{n}"] = {p: available[p] for p in chosen}
        info[f"{label}-{n}"] = {"replaced": n, "of": len(files[concept]), "share": n / len(files[concept]),
                               "folder": str(poisoned)}
    if not variants:
        raise ValueError("nothing to run: give n_poison or include_clean=True")
    if encoder is None:
        from sfumato.encoders import load_encoder

        encoder = load_encoder(config.encoder, models_dir=models_dir)
    reader = reader or concept_reader(models_dir=models_dir)
    for c in (concept, target):
        if c not in reader.classes:
            raise ValueError(f"the concept judge has no concept {c!r}; it knows {sorted(reader.classes)}")
    readers = [reader]
    if heldout:
        readers.insert(0, heldout_probe_reader(heldout, encoder=encoder, size=config.size, models_dir=models_dir))
    runs = run_lab(files, variants, encoder=encoder, readers=readers, config=config, seeds=seeds,
                   cache_dir=cache_dir, log=log, guidances=guidances)
    main = [r for r in runs if r.guidance is None]
    summaries = {r.name: concept_summary(main, concept=concept, target=target, reader=r.name) for r in readers}
    notes = [f"{concept} files are poisoned in a fixed order (hashed names); each N replaces the first N of "
             f"the {len(files[concept])} {concept} training files"]
    if heldout:
        notes.append(f"held out of training for the probe reader: the last {holdout} files of {concept} and of "
                     f"{target} in that order")
    return LabResult(kind="concept", focus=concept, target=target, config=config, seeds=list(seeds),
                     variants=info, readers=[{"name": r.name, "description": r.description} for r in readers],
                     runs=runs, summary=summaries[readers[0].name], summaries=summaries, notes=notes,
                     seconds=time.perf_counter() - t0)
