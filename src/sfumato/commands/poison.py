"""``sfumato poison``: Nightshade-style concept poisoning of images of concept C toward concept A."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from sfumato.commands import number, one_line_errors, require_module

HELP = "Poison images of a concept (e.g. dog) so a model's encoder sees another (e.g. cat)."

EPILOG = """examples:
  sfumato poison photos/dogs -o poisoned/ --concept dog --target cat --anchors photos/cats
  sfumato poison photos/ -o poisoned/ --mapping pairs.toml      # several concepts in one batch

Each image ends with a verdict: whether the concept judge sees the target (cat) or still the concept
(dog) in what a model sees. <stem>.txt holds a caption naming the concept (--no-caption to skip).
"""


def add_poison_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--concept", default=None, help="what the images show (C), e.g. dog")
    p.add_argument("--target", default=None, help="what the model should learn instead (A), e.g. cat")
    p.add_argument("--mapping", default=None, metavar="FILE",
                   help="JSON/TOML/CSV file of C -> A pairs (with optional anchors folder per pair) for "
                        "batches with several concepts; each image is assigned to the C it shows best")
    p.add_argument("--anchors", default=None, metavar="DIR", help="folder of target-concept (A) images")
    p.add_argument("--anchor-model", default=None, metavar="ID_OR_PATH",
                   help="diffusers text-to-image model to generate anchors of A (one fixed seed)")
    p.add_argument("--anchor-count", type=number(int, lo=1, hi=1000), default=4,
                   help="anchors to generate with --anchor-model (1-1000)")
    p.add_argument("--anchor-choice", choices=["aligned", "cheapest", "fixed"], default="aligned",
                   help="per image: 'aligned' (default) flips, crops and scales each anchor to the photo's "
                        "layout and takes the one whose latent is nearest (never farther than 'cheapest'); "
                        "'cheapest' the centre-cropped anchor with the nearest latent; 'fixed' the "
                        "anchor --anchor-index")
    p.add_argument("--anchor-index", type=number(int, lo=0), default=0,
                   help="the anchor used with --anchor-choice fixed (0 = the first)")
    p.add_argument("--scorer", default="mobilenet",
                   help="candidate check: 'mobilenet' (offline default), 'clip:<id or path>', or 'none'")
    p.add_argument("--force", action="store_true", help="poison images even if they don't clearly show C")
    p.add_argument("--no-caption", action="store_true", help="do not write <stem>.txt captions")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.commands.cloak import add_common_arguments

    p.epilog = EPILOG
    add_common_arguments(p, intensity_help="perceptual budget: low (LPIPS 0.05), default (0.07, Nightshade's "
                                           "p), high (0.10); L∞ cap 24/255 unless --linf")
    add_poison_arguments(p)


def poison_config(args: argparse.Namespace, concept: str, target: str):  # noqa: ANN201
    """The :class:`~sfumato.config.PoisonConfig` these options give for ``concept`` → ``target``."""
    from sfumato.commands.cloak import preset_options
    from sfumato.plans import poison_config as build

    return build(concept, target, **preset_options(args), anchor_choice=args.anchor_choice,
                 anchor_index=args.anchor_index)


def plan_from_args(args: argparse.Namespace, make_config: Callable[[str, str], Any]):  # noqa: ANN201
    """The :class:`sfumato.plans.PoisonPlan` of these options: the pairs (``--mapping`` or ``--concept`` and
    ``--target``), the scorer, and anchors and a config (``make_config``) per pair."""
    if not getattr(args, "cluster", None):  # no GPU where one is asked for: one line, before loading any model
        from sfumato.protections.device import resolve_device

        resolve_device(getattr(args, "device", None))
    require_module("ai_edge_litert", f"sfumato {getattr(args, 'command', None) or 'poison'} (its MobileNet candidate check and judges)")
    from sfumato.judges.scorers import make_scorer
    from sfumato.plans import load_mapping, plan_poison

    if args.mapping:
        pairs = load_mapping(args.mapping)
    elif args.concept and args.target:
        pairs = [{"concept": args.concept, "target": args.target}]
    else:
        raise ValueError("give --concept C and --target A (or --mapping FILE)")
    from sfumato.judges.concept import quiet_tflite

    with quiet_tflite():
        scorer = None if args.scorer == "none" else make_scorer(args.scorer, models_dir=args.models_dir)
    return plan_poison(pairs, make_config=make_config, scorer=scorer, anchors=args.anchors,
                       anchor_model=args.anchor_model, anchor_count=args.anchor_count, seed=args.seed)


def run_plan(args: argparse.Namespace, label: str, plan: Any, file_fn: Callable[..., Any], *, rights: bool,
             describe: Callable[[Any, Any], str]) -> int:
    """Run ``file_fn`` (:func:`sfumato.api.poison_file` or ``protect_file``) over the images with each one's
    config and anchors from ``plan``; print ``describe(result, config)`` per image. Images that do not
    clearly show their concept are skipped (counted, not failed) unless ``--force``."""
    from sfumato.api import NotACandidate
    from sfumato.commands.cloak import add_verdict, file_options, print_result, rights_from_args, run_files

    xmp = rights_from_args(args, default=rights)
    not_candidates: list[str] = []

    def work(item, out_dir, progress):  # noqa: ANN001, ANN202
        cfg, anchors = plan.for_image(item.source)
        try:
            r = file_fn(item.source, out_dir, cfg, anchors, scorer=plan.scorer, force=args.force,
                        caption=not args.no_caption, rel_stem=item.rel_stem, xmp=xmp, progress=progress,
                        **file_options(args, item))
        except NotACandidate as e:
            not_candidates.append(str(item.source))
            print(f"skipped: {item.source}: {e}", file=sys.stderr)
            return None
        v = add_verdict(r, item.source, args, progress)
        print_result(item.source, r, v, describe(r.manifest, cfg))
        return r

    report = run_files(args, label, work)
    if not_candidates:
        print(f"{len(not_candidates)} image(s) skipped as not clearly showing the concept (use --force)",
              file=sys.stderr)
    return report.exit_code


def _describe(m: dict, cfg: Any) -> str:
    j = m.get("judged", {})
    return (f"{cfg.concept}->{cfg.target} anchor={m['anchor']['name']} lpips={m['achieved']['lpips_alex']:.4f} "
            f"pixels_show_{cfg.concept}={j.get('pixels_show_concept', {}).get('after')} "
            f"ai_view_shows_{cfg.target}={j.get('ai_view_shows_target', {}).get('after')} "
            f"{m['timing_s']['file_total']:.1f}s")


def _run(args: argparse.Namespace) -> int:
    from sfumato.api import poison_file

    plan = plan_from_args(args, lambda concept, target: poison_config(args, concept, target))
    return run_plan(args, "poison", plan, poison_file, rights=False, describe=_describe)


run = one_line_errors(_run)
