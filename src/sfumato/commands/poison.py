"""``sfumato poison``: Nightshade-style concept poisoning of images of concept C toward concept A."""

from __future__ import annotations

import argparse
import sys

HELP = "Poison images of a concept (e.g. dog) so a model's encoder sees another (e.g. cat)."


def add_poison_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--concept", default=None, help="what the images show (C), e.g. dog")
    p.add_argument("--target", default=None, help="what the model should learn instead (A), e.g. cat")
    p.add_argument("--mapping", default=None, metavar="FILE",
                   help="JSON/TOML/CSV file of C -> A pairs (with optional anchors folder per pair) for "
                        "batches with several concepts; each image is assigned to the C it shows best")
    p.add_argument("--anchors", default=None, metavar="DIR", help="folder of target-concept (A) images")
    p.add_argument("--anchor-model", default=None, metavar="ID_OR_PATH",
                   help="diffusers text-to-image model to generate anchors of A (one fixed seed)")
    p.add_argument("--anchor-count", type=int, default=4, help="anchors to generate with --anchor-model")
    p.add_argument("--anchor-choice", choices=["cheapest", "fixed"], default="cheapest",
                   help="per image the anchor with the nearest latent (cheapest), or --anchor-index")
    p.add_argument("--anchor-index", type=int, default=0)
    p.add_argument("--scorer", default="mobilenet",
                   help="candidate check: 'mobilenet' (offline default), 'clip:<id or path>', or 'none'")
    p.add_argument("--force", action="store_true", help="poison images even if they don't clearly show C")
    p.add_argument("--no-caption", action="store_true", help="do not write <stem>.txt captions")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.commands.cloak import add_common_arguments

    add_common_arguments(p, intensity_help="perceptual budget: low (LPIPS 0.05), default (0.07, Nightshade's "
                                           "p), high (0.10); L∞ cap 24/255 unless --linf")
    add_poison_arguments(p)


POISON_INTENSITY = {"low": 0.05, "default": 0.07, "high": 0.10}


def poison_config(args: argparse.Namespace, concept: str, target: str):  # noqa: ANN201
    import dataclasses

    from sfumato.commands.cloak import parse_encoders
    from sfumato.config import Budget
    from sfumato.protections.poison import POISON_QUALITY, PoisonConfig

    eff = POISON_QUALITY[args.quality]
    eff = dataclasses.replace(eff, steps=args.steps if args.steps is not None else eff.steps,
                              resolution=args.resolution if args.resolution is not None else eff.resolution)
    budget = Budget(lpips=args.lpips if args.lpips is not None else POISON_INTENSITY[args.intensity],
                    linf=(args.linf if args.linf is not None else 24) / 255)
    return PoisonConfig(concept=concept, target=target, budget=budget, effort=eff,
                        encoders=parse_encoders(args.encoder), anchor_choice=args.anchor_choice,
                        anchor_index=args.anchor_index, seed=args.seed)


def load_mapping(path: str) -> list[dict]:
    """C → A pairs from JSON ({"dog": "cat"} or [{"concept":..,"target":..,"anchors":..}]), TOML
    ([[pair]] tables) or CSV (concept,target[,anchors])."""
    import csv
    import json
    import tomllib
    from pathlib import Path

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
        data = [{"concept": r[0].strip(), "target": r[1].strip(), **({"anchors": r[2].strip()} if len(r) > 2 and r[2].strip() else {})}
                for r in rows]
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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sfumato.api import NotACandidate, poison_file
    from sfumato.batch import collect, run_batch
    from sfumato.commands.cloak import print_summary, rights_from_args
    from sfumato.io.outputs import manifest_path_for
    from sfumato.judges.scorers import make_scorer
    from sfumato.targets.anchors import generate_anchors, load_anchor_folder

    if args.mapping:
        pairs = load_mapping(args.mapping)
    elif args.concept and args.target:
        pairs = [{"concept": args.concept, "target": args.target}]
    else:
        print("error: give --concept C and --target A (or --mapping FILE)", file=sys.stderr)
        return 2
    anchor_sets = {}
    for pair in pairs:
        folder = pair.get("anchors") or args.anchors
        if folder:
            anchor_sets[pair["concept"]] = load_anchor_folder(folder, concept=pair["target"])
        elif args.anchor_model:
            anchor_sets[pair["concept"]] = generate_anchors(args.anchor_model, concept=pair["target"],
                                                            n=args.anchor_count, seed=args.seed)
        else:
            print(f"error: no anchors for target {pair['target']!r}: give --anchors DIR (images of it) or "
                  "--anchor-model ID_OR_PATH", file=sys.stderr)
            return 2
    scorer = None if args.scorer == "none" else make_scorer(args.scorer, models_dir=args.models_dir)
    if len(pairs) > 1 and scorer is None:
        print("error: --mapping with several concepts needs a scorer to assign images", file=sys.stderr)
        return 2
    configs = {p["concept"]: poison_config(args, p["concept"], p["target"]) for p in pairs}
    xmp = rights_from_args(args, default=False)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = collect(args.paths)
    not_candidates: list[str] = []

    def work(item):  # noqa: ANN001, ANN202
        concept = pairs[0]["concept"]
        if len(pairs) > 1:
            from sfumato.io import image as sio

            rgb = sio.load_image(item.source).rgb
            scores = {c: float(scorer.score([rgb], c)[0]) for c in configs}
            concept = max(scores, key=scores.get)
        cfg = configs[concept]
        try:
            r = poison_file(item.source, out_dir, cfg, anchor_sets[concept], scorer=scorer, force=args.force,
                            caption=not args.no_caption, output_format=args.format,
                            jpeg_quality=args.jpeg_quality, overwrite=args.overwrite, ai_view=args.ai_view,
                            models_dir=args.models_dir, rel_stem=item.rel_stem, xmp=xmp)
        except NotACandidate as e:
            not_candidates.append(str(item.source))
            print(f"skipped: {item.source}: {e}", file=sys.stderr)
            return None
        m = r.manifest
        j = m.get("judged", {})
        print(f"{item.source} -> {r.output}  {cfg.concept}->{cfg.target} anchor={m['anchor']['name']} "
              f"lpips={m['achieved']['lpips_alex']:.4f} "
              f"pixels_show_{cfg.concept}={j.get('pixels_show_concept', {}).get('after')} "
              f"ai_view_shows_{cfg.target}={j.get('ai_view_shows_target', {}).get('after')} "
              f"{m['timing_s']['file_total']:.1f}s")
        return r

    report = run_batch(items, out_dir, work, resume=args.resume,
                       manifest_name=lambda stem: manifest_path_for(out_dir, stem), quiet=args.quiet)
    report.done = [d for d in report.done if d is not None]
    print_summary(report, "poison")
    if not_candidates:
        print(f"{len(not_candidates)} image(s) skipped as not clearly showing the concept (use --force)",
              file=sys.stderr)
    return report.exit_code
