"""Planning a batch of poison or protect runs over files, before any pixel moves.

* :func:`load_mapping` — the C → A pairs of a mapping file (JSON, TOML or CSV), for batches with several
  concepts;
* :func:`anchor_set` / :func:`anchor_sets` — the anchor images of each target A: a folder of pictures of A,
  or pictures drawn by a text-to-image model (:mod:`sfumato.targets.anchors`);
* :func:`assign_concept` — per image, the concept C the candidate scorer says it shows best
  (Nightshade's candidate selection, Shan et al., IEEE S&P 2024, §5.2, applied to several concepts);
* :func:`preset_config`, :func:`poison_config`, :func:`protect_config` — configs from the named presets
  (``intensity``/``quality``) with the overrides the command line and the server offer;
* :func:`plan_poison` — all of the above for one batch: a :class:`PoisonPlan` that gives each image its
  config and anchors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.config import PoisonConfig, ProtectConfig

__all__ = ["PoisonPlan", "anchor_set", "anchor_sets", "assign_concept", "load_mapping", "plan_poison",
           "poison_config", "preset_config", "protect_config"]


def load_mapping(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """C → A pairs from a mapping file, each ``{"concept": C, "target": A}`` plus an optional
    ``"anchors"`` folder of pictures of A for that pair.

    JSON: ``{"dog": "cat", ...}`` or ``[{"concept": ..., "target": ..., "anchors": ...}, ...]``; TOML:
    ``[[pair]]`` tables with the same keys; anything else is read as CSV rows ``concept,target[,anchors]``
    (an optional ``concept,target`` header, ``#`` comment rows). Raises ``ValueError`` for a pair without
    a concept or a target, or a file without pairs.
    """
    import csv
    import json
    import tomllib

    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    elif p.suffix.lower() == ".toml":
        data = tomllib.loads(text).get("pair", [])
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].startswith("#")]
        if rows and rows[0][:2] == ["concept", "target"]:
            rows = rows[1:]
        data = [{"concept": r[0].strip(), "target": r[1].strip(),
                 **({"anchors": r[2].strip()} if len(r) > 2 and r[2].strip() else {})} for r in rows]
    if isinstance(data, dict):
        data = [{"concept": k, "target": v} for k, v in data.items()]
    pairs = []
    for d in data:
        if not isinstance(d, dict) or "concept" not in d or "target" not in d:
            raise ValueError(f"{path}: each pair needs 'concept' and 'target' (got {d!r})")
        pairs.append(d)
    if not pairs:
        raise ValueError(f"{path}: no C -> A pairs found")
    return pairs


def anchor_set(target: str, *, folder: str | os.PathLike[str] | None = None, model: str | None = None,
               count: int = 4, seed: int = 0) -> Any:
    """The :class:`~sfumato.targets.anchors.AnchorSet` of concept ``target``: the images in ``folder``
    when given, else ``count`` images drawn by the text-to-image ``model`` with ``seed``. Raises
    ``ValueError`` when neither is given."""
    from sfumato.targets.anchors import generate_anchors, load_anchor_folder

    if folder:
        return load_anchor_folder(folder, concept=target)
    if model:
        return generate_anchors(model, concept=target, n=count, seed=seed)
    raise ValueError(f"no anchors for target {target!r}: give --anchors DIR (images of it) or "
                     "--anchor-model ID_OR_PATH")


def anchor_sets(pairs: Sequence[dict[str, str]], *, folder: str | os.PathLike[str] | None = None,
                model: str | None = None, count: int = 4, seed: int = 0) -> dict[str, Any]:
    """``concept -> AnchorSet`` for each pair: the pair's own ``"anchors"`` folder, else ``folder``, else
    images drawn by ``model`` (see :func:`anchor_set`)."""
    return {p["concept"]: anchor_set(p["target"], folder=p.get("anchors") or folder, model=model, count=count,
                                     seed=seed) for p in pairs}


def assign_concept(image: str | os.PathLike[str] | np.ndarray, concepts: Sequence[str], scorer: Any) -> str:
    """The concept of ``concepts`` that ``scorer`` (a :class:`~sfumato.judges.scorers.ConceptScorer`) gives
    the highest score on ``image`` (a path or an ``HxWx3`` float array); the first one on a tie."""
    if isinstance(image, np.ndarray):
        rgb = image
    else:
        import sfumato.io as sio

        rgb = sio.load_image(image).rgb
    scores = {c: float(scorer.score([rgb], c)[0]) for c in concepts}
    return max(scores, key=scores.__getitem__)


def preset_config(cls: Any, *, intensity: str = "default", quality: str = "default", lpips: float | None = None,
                  linf: float | None = None, steps: int | None = None, resolution: int | None = None,
                  **kw: Any) -> Any:
    """``cls.preset(intensity=..., quality=..., **kw)`` (a cloak, poison or protect config) with the budget's
    ``lpips`` and ``linf`` (in [0, 1] pixel units) and the effort's ``steps`` and ``resolution``
    overridden where given."""
    cfg = cls.preset(intensity=intensity, quality=quality, **kw)
    if lpips is not None or linf is not None:
        b = cfg.budget
        cfg = dataclasses.replace(cfg, budget=dataclasses.replace(
            b, lpips=b.lpips if lpips is None else lpips, linf=b.linf if linf is None else linf))
    if steps is not None or resolution is not None:
        e = cfg.effort
        cfg = dataclasses.replace(cfg, effort=dataclasses.replace(
            e, steps=e.steps if steps is None else steps, resolution=e.resolution if resolution is None else resolution))
    return cfg


def poison_config(concept: str, target: str, **options: Any) -> Any:
    """A :class:`~sfumato.config.PoisonConfig` of ``concept`` → ``target`` from the poison presets and
    ``options`` (see :func:`preset_config`; other keywords are config fields)."""
    return preset_config(PoisonConfig, concept=concept, target=target, **options)


def protect_config(concept: str, target: str, **options: Any) -> Any:
    """A :class:`~sfumato.config.ProtectConfig` (joint cloak + poison) from the protect presets and
    ``options`` (see :func:`preset_config`; other keywords are config fields, e.g. ``target_style``)."""
    return preset_config(ProtectConfig, concept=concept, target=target, **options)


@dataclass(frozen=True)
class PoisonPlan:
    """Configs and anchors per concept C, and the scorer that checks candidates and assigns images."""

    configs: dict[str, Any]
    anchors: dict[str, Any]
    scorer: Any = None

    def concept_of(self, src: str | os.PathLike[str]) -> str:
        """The concept the image at ``src`` is poisoned as: the only one, or the one it shows best."""
        if len(self.configs) == 1:
            return next(iter(self.configs))
        return assign_concept(src, list(self.configs), self.scorer)

    def for_image(self, src: str | os.PathLike[str]) -> tuple[Any, Any]:
        """``(config, anchors)`` for the image at ``src``."""
        concept = self.concept_of(src)
        return self.configs[concept], self.anchors[concept]


def plan_poison(pairs: Sequence[dict[str, str]], *, make_config: Callable[[str, str], Any], scorer: Any = None,
                anchors: str | os.PathLike[str] | None = None, anchor_model: str | None = None,
                anchor_count: int = 4, seed: int = 0) -> PoisonPlan:
    """A :class:`PoisonPlan` for ``pairs`` (see :func:`load_mapping`): anchors per pair (see
    :func:`anchor_sets`), ``make_config(concept, target)`` per pair (e.g. :func:`poison_config` with
    the options bound). Several pairs need a ``scorer`` to assign each image; ``ValueError`` otherwise."""
    sets = anchor_sets(pairs, folder=anchors, model=anchor_model, count=anchor_count, seed=seed)
    if len(pairs) > 1 and scorer is None:
        raise ValueError("--mapping with several concepts needs a scorer to assign images")
    return PoisonPlan({p["concept"]: make_config(p["concept"], p["target"]) for p in pairs}, sets, scorer)


# ----------------------------------------------------------------------------------------------------
# outputs of a batch


def plan_outputs(items: Sequence[Any], out_dir: str | os.PathLike[str], *, output_format: str | None = None,
                 resume: bool = False, overwrite: bool = False, sidecars: Sequence[str] = (),
                 max_pixels: int | None = None, min_side: int | None = None) -> None:
    """Decide, before any pixel moves, what each :class:`~sfumato.batch.BatchItem` of a batch writes, and
    refuse (``item.error``, one line) what must not run; the other items still go on.

    Each source is vetted from its header (:func:`sfumato.io.read.probe_image`: readable, a still image
    of a handled format, at most ``max_pixels``, at least ``min_side`` px a side; a transparent source
    asked to become a JPEG) and given its output (``STEM`` + the suffix of ``output_format``, else of the
    source's lossless default, as :mod:`sfumato.api` names it), its manifest and its ``sidecars`` (suffixes
    after ``STEM``). Refused: two sources that would write the same path (``x.jpg`` and ``x.png``), and any
    output, manifest or sidecar that is one of the batch's sources (compared by path and by inode), even
    with ``overwrite``. Resume is keyed on the manifest's source SHA-256: a source is ``done`` when its
    manifest names this very file content and an output that is still as written; a manifest that no
    longer matches, or an image left without its manifest by an interrupted run (its pending marker,
    :func:`sfumato.batch.pending_marker`), is redone (``item.overwrite``) under ``resume``. A file at an
    output path that Sfumato did not write (no manifest names it, no pending marker) is never replaced,
    not even with ``overwrite``.
    """
    from sfumato.batch import pending_marker
    from sfumato.io.read import MAX_PIXELS, MIN_SIDE

    out = Path(out_dir)
    inputs: dict[str, Path] = {}
    inodes: dict[tuple[int, int], Path] = {}
    for it in items:
        inputs.setdefault(os.path.realpath(it.source), it.source)
        try:
            st = os.stat(it.source)
            inodes.setdefault((st.st_dev, st.st_ino), it.source)
        except OSError:
            pass
    planned = [it for it in items if it.error is None and _plan_one(
        it, out, output_format, sidecars, MAX_PIXELS if max_pixels is None else max_pixels,
        MIN_SIDE if min_side is None else min_side)]

    def original_at(q: Path) -> Path | None:
        hit = inputs.get(os.path.realpath(q))
        if hit is None:
            try:
                st = os.stat(q)
                hit = inodes.get((st.st_dev, st.st_ino))
            except OSError:
                pass
        return hit

    writers: dict[str, list[Any]] = {}
    for it in planned:
        for q in (it.output, it.manifest, *it.sidecars):
            writers.setdefault(os.path.realpath(q), []).append(it)
    for it in planned:
        for q in (it.output, it.manifest, *it.sidecars):
            orig = original_at(q)
            if orig is not None:
                what = "itself" if orig == it.source else f"the original {orig}"
                it.error = (f"its output {q} would replace {what}; Sfumato never replaces originals: choose "
                            "another output folder (-o)")
                break
            others = [o for o in writers[os.path.realpath(q)] if o is not it]
            if others:
                it.error = (f"would be written as {q}, like {others[0].source} (same name); rename one of them "
                            "or protect them in separate runs")
                break
    for it in planned:
        if it.error is None:
            _resume_state(it, pending_marker(it.output), resume=resume, overwrite=overwrite)


def _plan_one(it: Any, out: Path, output_format: str | None, sidecars: Sequence[str], max_pixels: int,
              min_side: int) -> bool:
    """Vet one source from its header and set its paths; False (with ``it.error``) when it is refused."""
    import sfumato.io as sio
    from sfumato.io.outputs import LOSSLESS_DEFAULTS, manifest_path_for
    from sfumato.io.read import probe_image

    try:
        fmt, _size, mode = probe_image(it.source, max_pixels=max_pixels, min_side=min_side)
        out_fmt = (output_format or LOSSLESS_DEFAULTS.get(fmt) or sio.default_output_format(fmt)).upper()
        if out_fmt == "JPEG" and (mode in ("RGBA", "LA", "La", "RGBa", "PA") or mode == "P"):
            img = sio.load_image(it.source, max_pixels=max_pixels)
            if img.alpha is not None and not (img.alpha == (255 if img.alpha.dtype.itemsize == 1 else 65535)).all():
                raise sio.ImageError(it.source, "has transparency, which JPEG cannot store",
                                     "save it as PNG, WebP or TIFF (leave --format unset or use --format PNG)")
    except sio.ImageError as e:
        it.error = f"{e.problem}; {e.advice}"
        return False
    except PermissionError:
        it.error = "cannot be read (permission denied); check the file's permissions"
        return False
    except OSError as e:
        it.error = f"cannot be read ({e.strerror or type(e).__name__}); check the file"
        return False
    it.output = out / f"{it.rel_stem}{sio.output_suffix(out_fmt)}"
    it.manifest = manifest_path_for(out, it.rel_stem)
    it.sidecars = tuple(out / f"{it.rel_stem}{s}" for s in sidecars)
    return True


def _read_manifest(it: Any) -> tuple[str | None, str | None]:
    """``(why the manifest at it.manifest does not stand for the source as it is now, or None; the output
    file name it records, or None when it is unreadable)``."""
    import json

    from sfumato.io.atomic import sha256_bytes_of

    try:
        m = json.loads(it.manifest.read_text(encoding="utf-8"))
        src, outp = m["source"], m["output"]
        named = str(outp["file"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its manifest is unreadable", None
    if src.get("sha256") != sha256_bytes_of(it.source):
        return "the source is not the file its manifest was made from", named
    made = it.manifest.parent / named
    if not made.is_file():
        return f"its output {made.name} is missing", named
    if outp.get("sha256") and outp["sha256"] != sha256_bytes_of(made):
        return f"its output {made.name} was changed since it was written", named
    return None, named


def _resume_state(it: Any, marker: Path, *, resume: bool, overwrite: bool) -> None:
    """Set ``done``/``overwrite``/``error``/``note`` of a planned item from what its folder holds. A file at
    the output path is only ever replaced when Sfumato wrote it: its manifest names it, or its pending
    marker says a run was interrupted while writing it; anything else is refused, even with --overwrite."""
    why, named = _read_manifest(it) if it.manifest.exists() else (None, None)
    if it.output.exists() and named != it.output.name and not marker.exists():
        it.error = (f"{it.output} already exists and no manifest names it as a Sfumato output; Sfumato only "
                    "replaces files it wrote: move it away or choose another output folder (-o)")
    elif it.manifest.exists():
        if why is None:
            if resume:
                it.done = True
            elif overwrite:
                it.overwrite = True
            else:
                it.error = (f"already protected as {it.output.name} ({it.manifest}); pass --resume to skip done "
                            "images or --overwrite to redo them")
        elif resume or overwrite:
            it.overwrite, it.note = True, f"redone: {why}"
        else:
            it.error = f"{it.manifest} exists but {why}; pass --resume to redo it (or --overwrite)"
    elif it.output.exists():  # with its pending marker: half-written by an interrupted run
        if resume or overwrite:
            it.overwrite, it.note = True, f"redone: {it.output.name} was left without its manifest by an interrupted run"
        else:
            it.error = (f"{it.output} was left without its manifest by an interrupted run; pass --resume to "
                        "redo it")
    else:
        it.overwrite = overwrite
