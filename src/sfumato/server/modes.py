"""What a server job may ask for: the table of modes (cloak, poison, protect) and the validated job options.

Modes are a table (:data:`MODES`): ``mode -> (sfumato.api function, sfumato.config class)``, looked up
at run time, so a protection added to :mod:`sfumato.api` is served without changing the server; a mode
whose function does not exist yet fails its job with a one-line "not available in this version" error.

Each mode builds its configuration with the named presets of :mod:`sfumato.config`
(``CloakConfig.preset``, ``PoisonConfig.preset``, ``ProtectConfig.preset``), the same ones the command
line uses, so the same image, options and seed give the same output through the CLI, the server and the
Python API.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sfumato.config import require
from sfumato.server.settings import ServerSettings

INTENSITIES = ("low", "default", "high")
QUALITIES = ("fast", "default", "slow")
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")


@dataclass(frozen=True)
class ModeCall:
    """One image to protect: what a mode's runner receives. ``check()`` raises when the image must stop
    (the server stops, the job was deleted); ``progress`` calls it too. An executor that runs the image
    elsewhere (:mod:`sfumato.cluster`) calls ``check`` while it waits. ``stage(name)`` says a new stage of
    the image begins (:data:`sfumato.server.eta.STAGES`: ``check`` when the saved file is judged); the
    optimisation's steps come through ``progress``."""

    src: Path
    out_dir: Path
    stem: str
    progress: Callable[[int, int], None]
    check: Callable[[], None] | None = None
    stage: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Mode:
    """A protection the server can run.

    ``requires``: ``"module:attribute"`` names that must exist in the installed sfumato (checked at run
    time, so a newer sfumato adds modes without touching the server); ``prepare(opts, settings, cache)``
    builds the configuration once per job and returns the function that protects one image
    (:class:`ModeCall` → :class:`sfumato.api.FileResult`). ``prepare`` raises ``ValueError`` with a
    one-line message when the job cannot run (the job fails with it).
    """

    name: str
    title: str
    description: str
    requires: tuple[str, ...]
    prepare: Callable[[JobOptions, ServerSettings, dict[str, Any]], Callable[[ModeCall], Any]]

    def missing(self) -> str | None:
        """The first required name the installed sfumato lacks, or ``None`` when the mode can run."""
        return first_missing(self.requires)

    def unavailable_message(self) -> str | None:
        from sfumato._version import __version__

        what = self.missing()
        if what is None:
            return None
        return (f"mode {self.name!r} is not available in this version of sfumato ({__version__}: {what} does "
                "not exist); use mode 'cloak' or upgrade sfumato")


def first_missing(requires: tuple[str, ...]) -> str | None:
    """The first ``"module:attribute"`` of ``requires`` the installed sfumato lacks (as ``module.attribute``)."""
    for req in requires:
        mod, _, attr = req.partition(":")
        if find_spec(mod) is None or not hasattr(import_module(mod), attr):
            return f"{mod}.{attr}"
    return None


def _per_image(protect: Callable[..., Any], config: Any, opts: JobOptions, settings: ServerSettings, *args: Any,
               **extra: Any) -> Callable[[ModeCall], Any]:
    """The function that protects one image with ``protect(src, out_dir, config, *args, ...)`` and the
    job's file options; the server's ``effort_override`` (tests, benchmarks) replaces the preset's effort."""
    if settings.effort_override is not None:
        config = dataclasses.replace(config, effort=settings.effort_override)
    kw = {"output_format": opts.output_format, "jpeg_quality": opts.jpeg_quality, "overwrite": True,
          "ai_view": opts.ai_view, "models_dir": settings.models_dir, **extra}

    def run(c: ModeCall) -> Any:
        res = protect(c.src, c.out_dir, config, *args, rel_stem=c.stem, progress=c.progress, **kw)
        if isinstance(getattr(res, "manifest", None), dict):  # the plain verdict, as the CLI writes it
            from sfumato.io.atomic import write_json_atomic
            from sfumato.verification.plain import file_verdict

            if c.stage is not None:
                c.stage("check")
            file_verdict(c.src, res.output, res.manifest, models_dir=settings.models_dir)
            if c.check is not None:  # deleted or stopping while it was judged: write nothing more
                c.check()
            if getattr(res, "manifest_path", None) is not None:
                write_json_atomic(Path(res.manifest_path), res.manifest, overwrite=True)
        return res

    return run


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")

_PARTNERS = {"cat": "dog", "dog": "cat", "horse": "zebra", "zebra": "horse", "car": "truck", "truck": "car",
             "teapot": "vase", "vase": "teapot", "cup": "teapot", "bird": "airplane", "airplane": "bird"}
"""Natural poison pairs (target -> the concept most often shown instead): the page's default pair."""


def anchors_root(settings: ServerSettings) -> tuple[Path | None, str | None]:
    """The folder of anchor folders and where it comes from: ``settings.anchors_dir`` (``--anchors-dir``),
    else the ``photos`` folder of the reference corpus when one is configured or found beside the models
    (:func:`sfumato.verification.discovery.find_corpus_dir`: ``$SFUMATO_CORPUS_DIR``, ``sfumato config``)."""
    if settings.anchors_dir is not None:
        return settings.anchors_dir, "--anchors-dir"
    try:
        from sfumato.verification.discovery import find_corpus_dir

        corpus = find_corpus_dir(models_dir=settings.models_dir)
    except Exception:  # noqa: BLE001 - no models folder configured, an unreadable config: no anchors
        corpus = None
    if corpus is not None and (corpus / "photos").is_dir():
        return corpus / "photos", "the photos of the reference corpus"
    return None, None


def anchor_targets(settings: ServerSettings) -> list[str]:
    """The target concepts this server has anchor images for: sub-folders of :func:`anchors_root` named
    after a known concept (``sfumato/data/concepts.json``) holding at least one image."""
    ad = anchors_root(settings)[0]
    if ad is None or not ad.is_dir():
        return []
    known = set(concept_names())
    out = []
    for d in sorted(ad.iterdir()):
        try:
            if d.name in known and d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()):
                out.append(d.name)
        except OSError:  # an unreadable folder offers nothing
            continue
    return out


def poison_status(settings: ServerSettings) -> dict[str, Any]:
    """Whether poison and protect can run here (they need anchor images of the target concept), why not
    in plain words, the anchored targets and a sensible default pair (dog -> cat where cats are anchored)."""
    anchored = anchor_targets(settings)
    if not anchored:
        where = ("it was started without --anchors-dir" if settings.anchors_dir is None
                 else "its anchors folder has no sub-folder of pictures named after a concept")
        reason = ("Poisoning teaches a model the wrong concept, so it needs a few pictures of that other concept "
                  f"(anchor images), and this server has none: {where}. Ask its admin to restart it with "
                  "'sfumato serve --anchors-dir DIR', where DIR/cat/ holds pictures of cats (one folder per "
                  "concept), or point 'sfumato config set corpus_dir' at a reference corpus with a photos folder. "
                  "The style cloak works without them.")
        return {"available": False, "reason": reason, "anchor_targets": [], "concept": None, "target": None,
                "source": None}
    names = concept_names()
    target = next((t for t in ("cat", "dog") if t in anchored), anchored[0])
    concept = _PARTNERS.get(target)
    if concept is None or concept not in names:
        concept = next(c for c in ("dog", "cat", *names) if c in names and c != target)
    return {"available": True, "reason": None, "anchor_targets": anchored, "concept": concept, "target": target,
            "source": anchors_root(settings)[1]}


def _anchors(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Any:
    from sfumato.targets.anchors import load_anchor_folder

    target = str(opts.target)
    root = anchors_root(settings)[0]
    folder = root / target if root is not None else None
    if folder is None or target not in anchor_targets(settings):
        raise ValueError(f"this server has no anchor images of {target!r}, which poisoning toward it needs; the "
                         f"admin must put pictures of {target!r} in <anchors dir>/{target}/ and start sfumato serve "
                         "with --anchors-dir")
    key = f"anchors:{target}"
    if key not in cache:
        cache[key] = load_anchor_folder(folder, concept=target)
    return cache[key]


def _prepare_cloak(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Callable[[ModeCall], Any]:
    from sfumato.api import cloak_file
    from sfumato.config import CloakConfig

    cfg = CloakConfig.preset(intensity=opts.intensity, quality=opts.quality, target_style=opts.target_style,
                             seed=opts.seed)
    return _per_image(cloak_file, cfg, opts, settings)


def _prepare_poison(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Callable[[ModeCall], Any]:
    from sfumato.api import poison_file
    from sfumato.config import PoisonConfig

    cfg = PoisonConfig.preset(concept=str(opts.concept), target=str(opts.target), intensity=opts.intensity,
                              quality=opts.quality, seed=opts.seed)
    return _per_image(poison_file, cfg, opts, settings, _anchors(opts, settings, cache))


def _prepare_protect(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Callable[[ModeCall], Any]:
    from sfumato.api import protect_file, rights_xmp
    from sfumato.config import ProtectConfig
    from sfumato.optout.xmp import load_rights_config

    cfg = ProtectConfig.preset(concept=str(opts.concept), target=str(opts.target), intensity=opts.intensity,
                               quality=opts.quality, target_style=opts.target_style, seed=opts.seed)
    anchors = _anchors(opts, settings, cache)
    # protect embeds the IPTC/XMP "do not train" reservation by default, as the CLI does
    return _per_image(protect_file, cfg, opts, settings, anchors, xmp=rights_xmp(load_rights_config()))


MODES: dict[str, Mode] = {
    "cloak": Mode("cloak", "Style cloak", "Glaze-style: models that train on the image learn a different style.",
                  ("sfumato.api:cloak_file", "sfumato.config:CloakConfig"), _prepare_cloak),
    "poison": Mode("poison", "Concept poison",
                   "Nightshade-style: models that train on the image learn the wrong concept.",
                   ("sfumato.api:poison_file", "sfumato.targets.anchors:load_anchor_folder",
                    "sfumato.config:PoisonConfig"), _prepare_poison),
    "protect": Mode("protect", "Cloak + poison", "Both protections in one perturbation, under one budget.",
                    ("sfumato.api:protect_file", "sfumato.targets.anchors:load_anchor_folder",
                     "sfumato.config:ProtectConfig"), _prepare_protect),
}
"""``mode -> Mode``: the protections the server offers (a mode whose requirements are missing fails its
jobs with a "not available in this version" error)."""


def builtin_style_names() -> list[str]:
    from sfumato.targets.styles import STYLE_FAMILIES

    return sorted(STYLE_FAMILIES)


def concept_names() -> list[str]:
    from importlib.resources import files

    return sorted(json.loads((files("sfumato") / "data" / "concepts.json").read_text(encoding="utf-8")))


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """What to do with every image of a job (validated when the job is submitted).

    ``target_style`` is ``"auto"`` or a built-in style name: a server never accepts a folder path from a
    client. ``concept``/``target`` name concepts of ``sfumato/data/concepts.json`` (required for poison).
    ``output_format``: ``None`` keeps the input's format family. ``check``: also write the verification
    report when :func:`sfumato.server.results.check_available`.
    """

    mode: str = "cloak"
    intensity: str = "default"
    quality: str = "default"
    target_style: str = "auto"
    concept: str | None = None
    target: str | None = None
    seed: int = 0
    output_format: str | None = None
    jpeg_quality: int = 98
    ai_view: bool = True
    check: bool = False

    def __post_init__(self) -> None:
        require(self.mode in MODES, f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        require(self.intensity in INTENSITIES, f"unknown intensity {self.intensity!r}; choose one of "
               f"{', '.join(INTENSITIES)}")
        require(self.quality in QUALITIES, f"unknown quality {self.quality!r}; choose one of {', '.join(QUALITIES)}")
        styles = builtin_style_names()
        require(self.target_style == "auto" or self.target_style in styles,
               f"unknown target_style {self.target_style!r}; choose 'auto' or one of {', '.join(styles)} "
               "(style folders can only be used from the command line)")
        if self.concept is not None or self.target is not None or self.mode == "poison":
            names = concept_names()
            for label, v in (("concept", self.concept), ("target", self.target)):
                require(v in names, f"{label} {v!r} is not a known concept; choose one of {', '.join(names)}"
                       + (" (mode poison needs both concept and target)" if self.mode == "poison" else ""))
            require(self.concept != self.target, f"concept and target must differ (both are {self.concept!r})")
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
               f"seed must be a non-negative integer, got {self.seed!r}")
        require(self.output_format is None or self.output_format in OUTPUT_FORMATS,
               f"unknown output_format {self.output_format!r}; choose one of {', '.join(OUTPUT_FORMATS)} "
               "or leave it empty to keep the input's format")
        require(isinstance(self.jpeg_quality, int) and 95 <= self.jpeg_quality <= 100,
               f"jpeg_quality must be 95-100 (lower erases the perturbation), got {self.jpeg_quality!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        require(not unknown, f"unknown job option(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)
