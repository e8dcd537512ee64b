"""Protection benchmark: Sfumato's presets and the peer baselines on the shared corpus at matched budgets.

For each image set and method: protect every image, then run :func:`sfumato.verify.check` on the saved
(quantised) result with the attack suite and the independent judges, and write one markdown table:
quality, judge verdicts on the AI view, latent protection, survival under each attack, best-of-N and
seconds per image.

    python benchmarks/protection.py --quick -o docs/benchmarks-protection.md
    python benchmarks/protection.py --sets vangogh dog --limit 4 --methods sfumato-default glaze nightshade

Sets: ``vangogh`` (corpus/art/vincent_van_gogh, style cloak; the style judge asks whether the AI view
still looks like Van Gogh), ``dog`` (corpus/photos/dog, concept poison toward cat with corpus/photos/cat as
anchors; the concept judge asks whether the AI view shows a cat). Matched budgets: LPIPS-alex ≤ 0.05 and
L∞ ≤ 24/255 for cloaks, ≤ 0.07 and 24/255 for poisons, measured on the quantised image. Judges (MobileNetV2
TFLite) never enter any loss. Models: TAEF2 (madebyollin/taesd), LPIPS v0.1 AlexNet.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))

CLOAK_METHODS = ("sfumato-fast", "sfumato-default", "sfumato-slow", "glaze", "photoguard", "mist")
POISON_METHODS = ("sfumato-poison", "nightshade", "photoguard", "mist")


def run_method(method: str, rgb: np.ndarray, *, kind: str, anchors, resolution: int, steps_scale: float,  # noqa: ANN001
               seed: int) -> tuple[np.ndarray, float, int]:
    import dataclasses

    from sfumato.baselines import get_baseline
    from sfumato.config import Budget, CloakConfig
    from sfumato.poison import PoisonConfig, poison_array
    from sfumato.style_cloak import cloak_array

    budget = Budget(lpips=0.05, linf=24 / 255) if kind == "cloak" else Budget(lpips=0.07, linf=24 / 255)
    t = time.perf_counter()

    def steps(n: int) -> int:
        return max(1, round(n * steps_scale))

    if method.startswith("sfumato-") and method != "sfumato-poison":
        cfg = CloakConfig.preset(quality=method.split("-", 1)[1], seed=seed)
        cfg = dataclasses.replace(cfg, budget=budget, effort=dataclasses.replace(
            cfg.effort, resolution=resolution, steps=steps(cfg.effort.steps)))
        r = cloak_array(rgb, cfg)
        return r.image, time.perf_counter() - t, r.steps_run
    if method == "sfumato-poison":
        cfg = PoisonConfig(concept="dog", target="cat", budget=budget, seed=seed)
        cfg = dataclasses.replace(cfg, effort=dataclasses.replace(cfg.effort, resolution=resolution,
                                                                  steps=steps(cfg.effort.steps)))
        r = poison_array(rgb, cfg, anchors.images, anchor_names=anchors.names)
        return r.image, time.perf_counter() - t, r.steps_run
    fn = get_baseline(method)
    published = {"glaze": 500, "nightshade": 500, "photoguard": 200, "mist": 100}[method]
    kw = {"steps": steps(published), "resolution": resolution, "seed": seed, "matched_budget": budget}
    if method == "nightshade":
        kw["target"] = anchors.images[0]
    r = fn(rgb, **kw)
    return r.image, time.perf_counter() - t, r.steps_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["vangogh", "dog"], choices=["vangogh", "dog"])
    ap.add_argument("--methods", nargs="+", default=None, help="default: all methods that fit the set")
    ap.add_argument("--limit", type=int, default=None, help="images per set")
    ap.add_argument("--resolution", type=int, default=512, help="encoder resolution for every method")
    ap.add_argument("--steps-scale", type=float, default=1.0,
                    help="multiply every method's step count (published counts at 1.0)")
    ap.add_argument("--attacks", default="default")
    ap.add_argument("--quick", action="store_true",
                    help="2 images per set, resolution 256, steps x0.25, methods sfumato + glaze + nightshade")
    ap.add_argument("-o", "--out", default=None, help="write the markdown table here too")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
    os.environ.setdefault("SFUMATO_CORPUS_DIR", str(SHARED / "corpus"))
    if args.quick:
        args.limit = args.limit or 2
        args.resolution = 256
        args.steps_scale = 0.25
        if args.attacks == "default":
            args.attacks = "jpeg-q95-444,jpeg-q75-420,resize-x0.5-lanczos,noisy-upscale,tae-roundtrip"
    attacks = args.attacks.split(",") if "," in args.attacks else args.attacks

    import torch

    from sfumato import io as sio
    from sfumato.anchors import load_anchor_folder
    from sfumato.encoders import load_encoder
    from sfumato.judges.concept import ConceptJudge
    from sfumato.judges.style import StyleJudge
    from sfumato.style_cloak import ai_view
    from sfumato.verify import check

    torch.set_num_threads(os.cpu_count() or 1)
    corpus = SHARED / "corpus"
    style_judge = StyleJudge.default(corpus_dir=corpus)
    concept_judge = ConceptJudge()
    anchors = load_anchor_folder(corpus / "photos" / "cat", concept="cat")
    taef2 = load_encoder("taef2")
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cmd = "python benchmarks/protection.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out(f"Command: `{cmd}`  ")
    out(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (CPU, fp32); "
        f"encoder resolution {args.resolution}; steps × {args.steps_scale}; attacks '{args.attacks}'.")
    for set_name in args.sets:
        kind = "cloak" if set_name == "vangogh" else "poison"
        folder = corpus / ("art/vincent_van_gogh" if set_name == "vangogh" else "photos/dog")
        files = sio.iter_image_paths([folder])[: args.limit]
        methods = args.methods or list(CLOAK_METHODS if kind == "cloak" else POISON_METHODS)
        if args.quick and args.methods is None:
            methods = ["sfumato-default", "glaze"] if kind == "cloak" else ["sfumato-poison", "nightshade"]
        agg: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        attack_names: list[str] = []
        for f in files:
            rgb = sio.load_image(f).rgb
            for m in methods:
                img, secs, _ = run_method(m, rgb, kind=kind, anchors=anchors, resolution=args.resolution,
                                          steps_scale=args.steps_scale, seed=args.seed)
                rep = check(img, original=rgb, attacks=attacks, style_judge=style_judge,
                            concept_judge=concept_judge, seed=args.seed)
                d = rep.to_dict()
                a = agg[m]
                a["seconds"].append(secs)
                a["lpips"].append(d["quality"]["lpips_alex"])
                a["psnr"].append(d["quality"]["psnr"])
                a["ssim"].append(d["quality"]["ssim"])
                lat = next(iter(d["latent"].values()))
                a["shift"].append(lat.get("shift_away_relative"))
                if kind == "cloak":
                    a["ai_still_artist"].append(bool(d["judges"]["style"]["ai_view_protected"]["still_attributed"]))
                else:
                    av = ai_view(img, taef2, resolution=args.resolution)
                    a["ai_cat"].append(bool(concept_judge.top_k_hits([av], "cat", k=5)[0]))
                for atk in d["attacks"]:
                    if atk["name"] not in attack_names:
                        attack_names.append(atk["name"])
                    a[f"verdict:{atk['name']}"].append(atk["verdict"])
                a["best"].append((d.get("best_of_n") or {}).get("verdict", "n/a"))
                print(f"  {set_name} {f.name} {m}: lpips={a['lpips'][-1]:.4f} {secs:.0f}s "
                      f"summary={d['summary'][:100]}", file=sys.stderr, flush=True)
        out()
        out(f"### {set_name}: {len(files)} images ({kind})")
        out()
        judge_col = ("AI view still attributed to the original's artist (style judge)" if kind == "cloak"
                     else "AI view shows cat, top-5 (concept judge)")
        out(f"| method | LPIPS-alex | PSNR | SSIM | latent shift | {judge_col} | " +
            " | ".join(f"{n} survives" for n in attack_names) + " | best-of-N survives | s/img |")
        out("|---" * (7 + len(attack_names) + 1) + "|")
        for m in methods:
            a = agg[m]
            jv = a["ai_still_artist"] if kind == "cloak" else a["ai_cat"]
            cells = [f"{np.mean(a['lpips']):.4f}", f"{np.mean(a['psnr']):.1f}", f"{np.mean(a['ssim']):.3f}",
                     f"{np.mean([s for s in a['shift'] if s is not None]):.3f}" if any(
                         s is not None for s in a["shift"]) else "n/a",
                     f"{sum(jv)}/{len(jv)}"]
            for n in attack_names:
                v = a[f"verdict:{n}"]
                cells.append(f"{sum(x == 'survives' for x in v)}/{len(v)}")
            cells.append(f"{sum(x == 'survives' for x in a['best'])}/{len(a['best'])}")
            cells.append(f"{np.mean(a['seconds']):.0f}")
            out(f"| {m} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
