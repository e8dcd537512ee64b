"""``sfumato protect``: style cloak + concept poison in one optimisation under one budget."""

from __future__ import annotations

import argparse
import sys

HELP = "Cloak and poison in one pass (one perceptual budget), instead of running two tools in sequence."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.commands.cloak import add_common_arguments
    from sfumato.commands.poison import add_poison_arguments

    add_common_arguments(p, intensity_help="one budget for both: low (LPIPS 0.05), default (0.07), high (0.10); "
                                           "L∞ cap 24/255 unless --linf")
    add_poison_arguments(p)
    p.add_argument("--target-style", default="auto", metavar="NAME|DIR", help="cloak target style (see cloak)")
    p.add_argument("--style-strength", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=1.0, help="weight of the cloak objective")
    p.add_argument("--poison-weight", type=float, default=1.0, help="weight of the poison objective")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sfumato.api import NotACandidate, protect_file
    from sfumato.batch import collect, run_batch
    from sfumato.commands.cloak import print_summary, rights_from_args
    from sfumato.commands.poison import poison_config
    from sfumato.io.outputs import manifest_path_for
    from sfumato.judges.scorers import make_scorer
    from sfumato.protections.protect import ProtectConfig
    from sfumato.targets.anchors import generate_anchors, load_anchor_folder

    if not (args.concept and args.target):
        print("error: give --concept C and --target A", file=sys.stderr)
        return 2
    if args.anchors:
        anchors = load_anchor_folder(args.anchors, concept=args.target)
    elif args.anchor_model:
        anchors = generate_anchors(args.anchor_model, concept=args.target, n=args.anchor_count, seed=args.seed)
    else:
        print(f"error: no anchors for {args.target!r}: give --anchors DIR or --anchor-model ID_OR_PATH",
              file=sys.stderr)
        return 2
    pc = poison_config(args, args.concept, args.target)
    cfg = ProtectConfig(concept=args.concept, target=args.target, budget=pc.budget, effort=pc.effort,
                        encoders=pc.encoders, target_style=args.target_style, style_strength=args.style_strength,
                        style_weight=args.style_weight, poison_weight=args.poison_weight,
                        anchor_choice=args.anchor_choice, anchor_index=args.anchor_index, seed=args.seed)
    xmp = rights_from_args(args, default=True)
    scorer = None if args.scorer == "none" else make_scorer(args.scorer, models_dir=args.models_dir)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def work(item):  # noqa: ANN001, ANN202
        try:
            r = protect_file(item.source, out_dir, cfg, anchors, scorer=scorer, force=args.force,
                             caption=not args.no_caption, output_format=args.format,
                             jpeg_quality=args.jpeg_quality, overwrite=args.overwrite, ai_view=args.ai_view,
                             models_dir=args.models_dir, rel_stem=item.rel_stem, xmp=xmp)
        except NotACandidate as e:
            print(f"skipped: {item.source}: {e}", file=sys.stderr)
            return None
        m = r.manifest
        lat = m["latent"]
        print(f"{item.source} -> {r.output} lpips={m['achieved']['lpips_alex']:.4f} " + " ".join(
            f"{k}={v['relative_reduction']:.1%}" for k, v in lat.items()))
        return r

    report = run_batch(collect(args.paths), out_dir, work, resume=args.resume,
                       manifest_name=lambda stem: manifest_path_for(out_dir, stem), quiet=args.quiet)
    report.done = [d for d in report.done if d is not None]
    print_summary(report, "protect")
    return report.exit_code
