"""``sfumato cloak``: add a style cloak to images (files or folders)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfumato.commands import number, one_line_errors

#: Default largest image the protecting commands accept, in megapixels: sized so that one run stays within
#: 8 GB of memory (a 6000x4000 camera image fits); ``--max-megapixels`` raises it up to the library's guard.
DEFAULT_MAX_MEGAPIXELS = 25.0

HELP = "Add a style cloak (Glaze-style) to artworks: files or folders, written to OUT_DIR."


def add_common_arguments(p: argparse.ArgumentParser, *, intensity_help: str | None = None) -> None:
    p.add_argument("paths", nargs="+", metavar="PATHS", help="image files or folders (recursive)")
    p.add_argument("-o", "--out", dest="out_dir", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--intensity", choices=["low", "default", "high"], default="default",
                   help=intensity_help or "perceptual budget: low (LPIPS 0.03, L∞ 16/255), default (0.05, 24/255), "
                                          "high (0.07, 32/255)")
    p.add_argument("--quality", choices=["fast", "default", "slow"], default="default",
                   help="search effort: fast, default or slow (more steps, higher resolution)")
    p.add_argument("--lpips", type=number(float, lo=0, hi=1, lo_open=True, hi_open=True), default=None,
                   help="override the LPIPS budget p, in (0, 1)")
    p.add_argument("--linf", type=number(float, lo=0, hi=255, lo_open=True, unit=" (1/255 units)"), default=None,
                   help="override the L∞ cap, in 1/255 units, (0, 255] (e.g. 8)")
    p.add_argument("--encoder", action="append", default=None, metavar="SPEC[=WEIGHT]",
                   help="encoder to target (repeatable): taef2, taesana, diffusers:<id or path>; default taef2")
    p.add_argument("--steps", type=number(int, lo=1, hi=100_000), default=None,
                   help="override the preset's optimisation steps (1-100000)")
    p.add_argument("--resolution", type=number(int, lo=64, hi=4096, unit=" px"), default=None,
                   help="override the long side (px) at which the encoder sees the image (a trainer's size)")
    p.add_argument("--seed", type=number(int, lo=0, hi=2**32 - 1), default=0,
                   help="random seed, 0..2^32-1 (recorded in the manifest)")
    p.add_argument("--format", choices=["PNG", "JPEG", "WEBP", "TIFF"], default=None,
                   help="output format (default: same family as the input; PNG in -> PNG out)")
    p.add_argument("--jpeg-quality", type=number(int, lo=95, hi=100), default=98,
                   help="JPEG quality, 95-100 (default 98; 4:4:4 chroma always)")
    p.add_argument("--models-dir", default=None, help="folder with model weights (else $SFUMATO_MODELS_DIR)")
    p.add_argument("--ai-view", action="store_true", help="also write PNGs of what the encoder sees, before/after")
    p.add_argument("--max-megapixels", type=number(float, lo=0, hi=100, lo_open=True, unit=" MP"),
                   default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                   help=f"refuse larger images (default {DEFAULT_MAX_MEGAPIXELS:g} MP, which keeps a run within 8 GB "
                        "of memory; at most 100)")
    p.add_argument("--resume", action="store_true",
                   help="skip images whose manifest matches the source file (SHA-256); redo the others")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rights", action=argparse.BooleanOptionalAction, default=None,
                   help="embed the IPTC/XMP 'do not train' reservation (plus:DataMining; creator and notice from "
                        "~/.config/sfumato/rights.toml or --rights-config). Default: off for cloak/poison, on for "
                        "protect")
    p.add_argument("--rights-config", default=None, metavar="FILE", help="TOML/JSON rights options")


def rights_from_args(args: argparse.Namespace, *, default: bool):  # noqa: ANN201
    """The ``xmp=`` argument of the file API for these options (None when rights are off)."""
    if not (args.rights if args.rights is not None else default):
        return None
    from sfumato.api import rights_xmp
    from sfumato.optout.xmp import load_rights_config

    return rights_xmp(load_rights_config(args.rights_config))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--target-style", default="auto", metavar="NAME|DIR",
                   help="'auto' (built-in style chosen as in Glaze), a built-in style name, or a folder of "
                        "reference images of the target style")
    p.add_argument("--eot", default="none", choices=["none", "light", "default", "strong"],
                   help="robustness: sample differentiable JPEG/resize/crop/noise/blur(/TAE) during optimisation")
    p.add_argument("--masking", action="store_true",
                   help="adaptive masking: less perturbation on flat colour and smooth gradients")
    p.add_argument("--perturbation-scale", type=number(float, lo=0.125, hi=1), default=1.0, metavar="S",
                   help="robustness: optimise the perturbation on a grid S times the work resolution, (0.125-1] "
                        "(0.5 = low-frequency, survives resizing and JPEG better; default 1)")
    p.add_argument("--no-anti-fingerprint", action="store_true",
                   help="use the same seed structure for every image (deterministic variant; easier to detect)")
    p.add_argument("--style-strength", type=number(float, lo=0, hi=1, lo_open=True), default=1.0,
                   help="how far the target's latent goes toward the style rendering, (0-1] (default 1)")
    p.add_argument("--target-renderer", default="gatys", choices=["gatys", "latent-wct", "img2img"],
                   help="how the target style rendering is made: neural style transfer (Gatys), latent WCT, or "
                        "a diffusers img2img pipeline (--target-model)")
    p.add_argument("--target-model", default="", metavar="FOLDER_OR_ID",
                   help="local diffusers text-to-image pipeline for --target-renderer img2img")
    p.add_argument("--target-overshoot", type=number(float, lo=1, hi=4), default=None,
                   help="aim the latent this many times as far as the target, [1-4] (default: the preset's)")


def parse_encoders(specs: list[str] | None) -> tuple[tuple[str, float], ...]:
    if not specs:
        return (("taef2", 1.0),)
    out = []
    for s in specs:
        name, _, w = s.partition("=")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            weight = float("nan")
        if not name.strip() or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"--encoder {s!r}: give SPEC or SPEC=WEIGHT with a positive weight, e.g. taef2=1.5")
        out.append((name, weight))
    return tuple(out)


def preset_options(args: argparse.Namespace) -> dict:
    """The preset and override options shared by cloak, poison and protect, for
    :func:`sfumato.plans.preset_config` (``--linf`` turned from 1/255 units into pixel units)."""
    return {"intensity": args.intensity, "quality": args.quality, "lpips": args.lpips,
            "linf": None if args.linf is None else args.linf / 255, "steps": args.steps,
            "resolution": args.resolution, "encoders": parse_encoders(args.encoder), "seed": args.seed}


def file_options(args: argparse.Namespace, item: Any = None) -> dict:
    """The output options of the file API (:func:`sfumato.api.cloak_file` and its siblings) for a planned
    batch ``item``: it replaces an existing output only where the plan said so (``item.overwrite``)."""
    return {"output_format": args.format, "jpeg_quality": args.jpeg_quality,
            "overwrite": args.overwrite if item is None else item.overwrite,
            "ai_view": args.ai_view, "models_dir": args.models_dir}


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from sfumato.config import CloakConfig, Robustness
    from sfumato.plans import preset_config

    return preset_config(CloakConfig, **preset_options(args), target_style=args.target_style,
                         style_strength=args.style_strength, target_renderer=args.target_renderer,
                         target_model=args.target_model,
                         **({} if args.target_overshoot is None else {"target_overshoot": args.target_overshoot}),
                         robustness=Robustness(eot=args.eot, masking=args.masking,
                                               anti_fingerprint=not args.no_anti_fingerprint,
                                               perturbation_scale=args.perturbation_scale))


def print_summary(report, label: str) -> None:  # noqa: ANN001
    print(f"{label}: {len(report.done)} done, {len(report.skipped)} skipped (resume), "
          f"{len(report.failed)} failed, {report.seconds:.1f} s", file=sys.stderr)


def run_files(args: argparse.Namespace, label: str, process: Callable[[Any, Path], Any]):  # noqa: ANN201
    """Run ``process(item, out_dir)`` over the images of ``args.paths`` into ``args.out_dir`` and print the
    summary. Before any image is computed: the output folder is created and checked for writing (one-line
    error otherwise), temp files of an interrupted run are removed, and every output is planned
    (:func:`sfumato.plans.plan_outputs`: collisions, originals, resume). Then progress, one line per
    failure; ``None`` results are not counted as done."""
    from sfumato.batch import SIDECAR_SUFFIXES, clean_out_dir, collect, prepare_out_dir, run_batch
    from sfumato.plans import plan_outputs

    out_dir = prepare_out_dir(args.out_dir)
    removed = clean_out_dir(out_dir)
    if removed:
        print(f"note: removed {len(removed)} temp file(s) left by an interrupted run in {out_dir}", file=sys.stderr)
    items = collect(args.paths)
    sidecars = (SIDECAR_SUFFIXES if args.ai_view else ()) + (() if getattr(args, "no_caption", True) else (".txt",))
    plan_outputs(items, out_dir, output_format=args.format, resume=args.resume, overwrite=args.overwrite,
                 sidecars=sidecars, max_pixels=round(args.max_megapixels * 1_000_000))
    report = run_batch(items, lambda item: process(item, out_dir), quiet=args.quiet)
    report.done = [d for d in report.done if d is not None]
    print_summary(report, label)
    return report


def _run(args: argparse.Namespace) -> int:
    from sfumato.api import cloak_file

    cfg = config_from_args(args)
    xmp = rights_from_args(args, default=False)

    def work(item, out_dir: Path):  # noqa: ANN001, ANN202
        r = cloak_file(item.source, out_dir, cfg, rel_stem=item.rel_stem, xmp=xmp, **file_options(args, item))
        m = r.manifest
        lat = next(iter(m["latent"].values()))
        print(f"{item.source} -> {r.output}  lpips={m['achieved'][f'lpips_{cfg.budget.lpips_net}']:.4f} "
              f"linf={m['achieved']['linf'] * 255:.1f}/255 target={m['target']['style']} "
              f"latent_reduction={lat['relative_reduction']:.1%} {m['timing_s']['file_total']:.1f}s")
        return r

    return run_files(args, "cloak", work).exit_code


run = one_line_errors(_run)
