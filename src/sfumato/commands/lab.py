"""``sfumato lab``: the mimicry lab (issue 17) -- train a small generator on protected images and judge
what it learned. ``lab style`` measures style mimicry of one artist, ``lab poison`` concept poisoning."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfumato.commands import one_line_errors

HELP = ("Mimicry lab: train a small image generator on clean and on protected copies of a dataset and judge "
        "what it learned (style mimicry of one artist, or a poisoned concept).")

PROTECT_PRESETS = ("default", "slow", "fast")


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", dest="out_dir", required=True, metavar="OUT",
                   help="report folder: lab.json, lab.html, grids/ (and protected/, cache/)")
    p.add_argument("--preset", choices=["tiny", "cpu", "cpu-wide", "gpu"], default="cpu",
                   help="generator size: tiny (tests, seconds), cpu (128 px, the 2-core benchmark; default), "
                        "cpu-wide (128 px, 4x wider: the concept benchmark), gpu (256 px, wider, longer; use with --device cuda)")
    p.add_argument("--config", default=None, metavar="LAB.json",
                   help="LabConfig JSON whose fields replace the preset's (--steps still overrides)")
    p.add_argument("--steps", type=int, default=None, help="override the training steps of each run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], metavar="SEED",
                   help="one training run per seed and variant (default 0 1)")
    p.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                   help="use only these sub-folders of DATA as classes (default: all)")
    p.add_argument("--device", choices=["cpu", "cuda", "mps"], default="cpu",
                   help="where the encoder (and the lab, which follows it) runs (default cpu)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="memoised latents and judge features (default OUT/cache)")
    p.add_argument("--models-dir", default=None, help="folder with model weights (else $SFUMATO_MODELS_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="lab_command", metavar="EXPERIMENT", required=True)
    s = sub.add_parser("style", help="does a model trained on an artist's protected images still learn the style?",
                       description="Train one generator on the clean dataset (one class per artist) and one per "
                                   "protected variant, in which ARTIST's files are replaced by protected versions; "
                                   "report the share of ARTIST's samples a style judge attributes to ARTIST.")
    s.add_argument("data", metavar="DATA", help="folder with one sub-folder of images per artist")
    s.add_argument("--artist", required=True, metavar="NAME", help="the protected artist (a sub-folder of DATA)")
    s.add_argument("--protected", action="append", default=[], metavar="[NAME=]DIR",
                   help="folder of the artist's already protected files, matched by file stem (repeatable; the "
                        "variant is named NAME, else the folder's name)")
    s.add_argument("--protect", action="append", default=[], choices=PROTECT_PRESETS, metavar="PRESET",
                   help="protect the artist's files here with the shipped cloak at this quality preset "
                        "(default|slow|fast; repeatable), at the lab's size, into OUT/protected/PRESET/")
    s.add_argument("--corpus-dir", default=None, metavar="DIR",
                   help="reference corpus whose art128/ trains the style judges (else a judge is trained on "
                        "DATA's clean images, which the report says)")
    _add_training_arguments(s)
    s.set_defaults(_lab=_style)

    c = sub.add_parser("poison", help="does a model trained with N poisoned images of a concept learn the target?",
                       description="Train one generator on the clean dataset and one per N, with the first N "
                                   "files of CONCEPT replaced by their poisoned versions; report how the concept "
                                   "judge labels the CONCEPT samples.")
    c.add_argument("data", nargs="?", default=None, metavar="DATA",
                   help="folder with one sub-folder of images per class (or give --class)")
    c.add_argument("--class", dest="class_dirs", action="append", default=[], metavar="NAME=DIR",
                   help="a class and its folder (repeatable), instead of DATA")
    c.add_argument("--concept", required=True, help="the poisoned class (C), e.g. dog")
    c.add_argument("--target", required=True, help="what the poison aims at (A), e.g. cat")
    c.add_argument("--poisoned", required=True, metavar="DIR",
                   help="folder of poisoned CONCEPT files, matched by file stem (written there with --make)")
    c.add_argument("--make", action="store_true",
                   help="first poison the first max(N) CONCEPT files at the lab's size into --poisoned "
                        "(existing files are reused)")
    c.add_argument("--anchors", default=None, metavar="DIR", help="images of TARGET for --make")
    c.add_argument("--n", nargs="+", type=int, default=[25, 50, 100], metavar="N",
                   help="numbers of poisoned files, one run each (default 25 50 100)")
    c.add_argument("--holdout", type=int, default=0, metavar="K",
                   help="keep the last K files of CONCEPT and TARGET out of training and read the samples with "
                        "a probe trained on their AI views too (recommended: 40 or more)")
    c.add_argument("--concept-size", type=int, default=None, metavar="K",
                   help="train on only the first K CONCEPT files (so N poisons are a share N/K of the concept)")
    c.add_argument("--also-guidance", type=float, nargs="+", default=[], metavar="SCALE",
                   help="also sample each trained model at these classifier-free guidance scales (1 = none; "
                        "the preset samples at 3): more runs in the report, same training")
    _add_training_arguments(c)
    c.set_defaults(_lab=_poison)


def lab_config(args: argparse.Namespace):  # noqa: ANN201
    """The :class:`~sfumato.lab.config.LabConfig` of these options: the preset, then ``--config``'s fields,
    then ``--steps``."""
    import json

    from sfumato.lab.config import LabConfig

    cfg = LabConfig.preset(args.preset)
    if args.config:
        path = Path(args.config).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--config {path}: no such file (a LabConfig JSON, e.g. {{\"train_steps\": 500}})")
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"--config {path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(fields, dict):
            raise ValueError(f"--config {path}: expected a JSON object of LabConfig fields")
        cfg = LabConfig.from_dict({**cfg.to_dict(), **fields})
    if args.steps is not None:
        cfg = LabConfig.from_dict({**cfg.to_dict(), "train_steps": args.steps})
    return cfg


def lab_encoder(spec: str, device: str, models_dir: Any):  # noqa: ANN201
    """The lab's encoder, on ``device`` (a one-line error when that device is not available)."""
    import torch

    from sfumato.encoders import load_encoder

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU on this machine (driver missing, or a CPU-only "
                         "torch build); use --device cpu")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError("--device mps: Apple Metal (MPS) is not available to torch here; use --device cpu")
    return load_encoder(spec, models_dir=models_dir).to(device)


def _named_folders(specs: list[str], flag: str) -> dict[str, Path]:
    """``[NAME=]DIR`` options as ``{name: folder}`` (the name defaults to the folder's name)."""
    out: dict[str, Path] = {}
    for s in specs:
        name, sep, folder = s.partition("=")
        if not sep or not name or "/" in name or "\\" in name:
            name, folder = Path(s).expanduser().name, s
        if not folder:
            raise ValueError(f"{flag} {s!r}: give NAME=DIR or DIR")
        if name in out:
            raise ValueError(f"{flag}: the name {name!r} is given twice; write NAME=DIR to name them apart")
        out[name] = Path(folder).expanduser()
    return out


def _logger(args: argparse.Namespace) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    return log


def _finish(result: Any, out_dir: Path) -> int:
    from sfumato.lab.report import markdown, write_report

    paths = write_report(result, out_dir)
    print(markdown(result))
    for n in result.notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"JSON report: {paths['json']}", file=sys.stderr)
    print(f"HTML report: {paths['html']}", file=sys.stderr)
    return 0


def _style(args: argparse.Namespace, cfg: Any, out_dir: Path, cache_dir: Path, log: Callable[[str], None]) -> int:
    from sfumato.api import lab_style
    from sfumato.lab import style as style_lab_module
    from sfumato.lab.data import class_folders

    protected = _named_folders(args.protected, "--protected")
    if not protected and not args.protect:
        raise ValueError("give the artist's protected files (--protected DIR) or a preset to make them here "
                         "(--protect default)")
    files = class_folders(args.data, args.classes)
    if args.artist not in files:
        raise ValueError(f"--artist {args.artist!r} is not a class of {args.data}; classes: {sorted(files)}")
    encoder = lab_encoder(cfg.encoder, args.device, args.models_dir)
    for preset in dict.fromkeys(args.protect):
        name = f"sfumato-{preset}"
        if name in protected:
            raise ValueError(f"--protected {name}=... and --protect {preset} name the same variant")
        folder = out_dir / "protected" / preset
        log(f"[lab] protecting {len(files[args.artist])} files of {args.artist} ({preset}) into {folder}")
        style_lab_module.protect_artist(files[args.artist], folder, quality=preset, size=cfg.size,
                                        models_dir=args.models_dir, log=log)
        protected[name] = folder
    result = lab_style(args.data, artist=args.artist, protected=protected, config=cfg, seeds=args.seeds,
                       classes=args.classes, corpus_dir=args.corpus_dir, models_dir=args.models_dir,
                       cache_dir=cache_dir, encoder=encoder, log=log)
    return _finish(result, out_dir)


def _poison(args: argparse.Namespace, cfg: Any, out_dir: Path, cache_dir: Path, log: Callable[[str], None]) -> int:
    from sfumato.api import lab_poison
    from sfumato.lab import concept as concept_lab_module
    from sfumato.lab.data import class_folders

    if bool(args.data) == bool(args.class_dirs):
        raise ValueError("give the dataset as DATA (one sub-folder per class) or as --class NAME=DIR ..., not both"
                         if args.data else "give the dataset: DATA (one sub-folder per class) or --class NAME=DIR ...")
    bad = [s for s in args.class_dirs if "=" not in s]
    if bad:
        raise ValueError(f"--class {bad[0]!r}: write NAME=DIR, e.g. --class dog=photos/dogs")
    root: Any = args.data or {k: v for k, _, v in (s.partition("=") for s in args.class_dirs)}
    if any(n < 1 for n in args.n):
        raise ValueError(f"--n must be >= 1 (the clean run is always made), got {args.n}")
    if args.holdout < 0:
        raise ValueError(f"--holdout must be >= 0 (files per class kept out of training), got {args.holdout}")
    if any(g < 0 for g in args.also_guidance):
        raise ValueError(f"--also-guidance scales must be >= 0 (1 = no guidance), got {args.also_guidance}")
    if args.concept_size is not None and args.concept_size < max(args.n):
        raise ValueError(f"--concept-size {args.concept_size} is smaller than the largest --n {max(args.n)}")
    if args.anchors and not args.make:
        raise ValueError("--anchors is only used with --make (to poison the files first)")
    encoder = lab_encoder(cfg.encoder, args.device, args.models_dir)
    if args.make:
        if not args.anchors:
            raise ValueError("--make needs --anchors DIR: a folder of images of the target concept")
        files = class_folders(root, args.classes)
        if args.concept not in files:
            raise ValueError(f"--concept {args.concept!r} is not a class of the dataset; classes: {sorted(files)}")
        log(f"[lab] poisoning the first {max(args.n)} {args.concept} files toward {args.target} into {args.poisoned}")
        concept_lab_module.poison_concept(files[args.concept], args.poisoned, concept=args.concept, target=args.target,
                                          anchors=args.anchors, n=max(args.n), size=cfg.size,
                                          models_dir=args.models_dir, log=log)
    result = lab_poison(root, concept=args.concept, target=args.target, poisoned=args.poisoned, n_poison=args.n,
                        config=cfg, seeds=args.seeds, classes=args.classes, models_dir=args.models_dir,
                        cache_dir=cache_dir, encoder=encoder, log=log, holdout=args.holdout,
                        concept_size=args.concept_size, guidances=args.also_guidance)
    return _finish(result, out_dir)


def _run(args: argparse.Namespace) -> int:
    cfg = lab_config(args)
    out_dir = Path(args.out_dir).expanduser()
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else out_dir / "cache"
    from sfumato.lab.protect import MissedBudget

    try:
        return args._lab(args, cfg, out_dir, cache_dir, _logger(args))
    except MissedBudget as e:  # a protected file that misses its budget: nothing was written for it
        print(f"error: {e}", file=sys.stderr)
        return 1


run = one_line_errors(_run)
