"""Protection benchmark: Sfumato's presets and the peer baselines on the shared corpus at matched budgets.

For each image set and method: protect every image, then run :func:`sfumato.verification.check.check` on the saved
(quantised) result with the attack suite and the independent judges, and write one markdown table:
quality, judge verdicts on the AI view, latent protection, survival under each attack, best-of-N and
seconds per image.

    python benchmarks/protection.py --quick -o docs/benchmarks-protection.md
    python benchmarks/protection.py --sets vangogh dog --limit 4 --methods sfumato-default glaze nightshade
    python benchmarks/protection.py --sets vangogh dog --limit 2 --side 512 --resolution 256 \
        --rows runs/protection.jsonl -o docs/benchmarks-protection.md     # resumable

Every (set, image, method) result is appended to ``--rows`` as one JSON line the moment it is measured;
a rerun with the same ``--rows`` skips what is already there, and the table is always built from the rows
file, so a long run that is stopped loses nothing.

Sets: ``vangogh`` (corpus/art/vincent_van_gogh, style cloak; the style judge asks whether the AI view
still looks like Van Gogh), ``dog`` (corpus/photos/dog, concept poison toward cat with corpus/photos/cat as
anchors; the concept judge asks whether the AI view shows a cat). Matched budgets: LPIPS-alex ≤ 0.05 and
L∞ ≤ 24/255 for cloaks, ≤ 0.07 and 24/255 for poisons, measured on the quantised image. Judges (MobileNetV2
TFLite) never enter any loss. Models: TAEF2 (madebyollin/taesd), LPIPS v0.1 AlexNet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_downscaled  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))

CLOAK_METHODS = ("sfumato-fast", "sfumato-default", "sfumato-slow", "glaze", "photoguard", "mist")
POISON_METHODS = ("sfumato-poison", "nightshade", "photoguard", "mist")


def run_method(method: str, rgb: np.ndarray, *, kind: str, anchors, resolution: int, steps_scale: float,  # noqa: ANN001
               seed: int) -> tuple[np.ndarray, float, int]:
    import dataclasses

    from sfumato.baselines import get_baseline
    from sfumato.config import Budget, CloakConfig, PoisonConfig
    from sfumato.protections.cloak import cloak_array
    from sfumato.protections.poison import poison_array

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


def measure(m: str, name: str, rgb: np.ndarray, *, set_name: str, kind: str, anchors, args, attacks,  # noqa: ANN001
            style_judge, concept_judge, taef2) -> dict:  # noqa: ANN001
    """Protect one image with method ``m``, check the result, and return one JSON-safe row."""
    from sfumato.encoders.views import ai_view
    from sfumato.verification.check import check

    img, secs, steps_run = run_method(m, rgb, kind=kind, anchors=anchors, resolution=args.resolution,
                                      steps_scale=args.steps_scale, seed=args.seed)
    rep = check(img, original=rgb, attacks=attacks, style_judge=style_judge, concept_judge=concept_judge,
                seed=args.seed)
    d = rep.to_dict()
    lat = next(iter(d["latent"].values()))
    row: dict = {"set": set_name, "file": name, "method": m, "size": [int(rgb.shape[1]), int(rgb.shape[0])],
                 "seconds": float(secs), "steps_run": int(steps_run),
                 "lpips": float(d["quality"]["lpips_alex"]), "psnr": float(d["quality"]["psnr"]),
                 "ssim": float(d["quality"]["ssim"]), "linf": float(d["quality"]["linf"]),
                 "shift": None if lat.get("shift_away_relative") is None else float(lat["shift_away_relative"]),
                 "summary": str(d["summary"])}
    if kind == "cloak":
        st = d["judges"]["style"]["ai_view_protected"]
        row["ai_still_artist"] = bool(st["still_attributed"])
        row["ai_p_artist"] = float(st["p_artist"])
    else:
        av = ai_view(img, taef2, resolution=args.resolution)
        row["ai_cat"] = bool(concept_judge.top_k_hits([av], "cat", k=5)[0])
        row["pixels_dog"] = bool(concept_judge.top_k_hits([img], "dog", k=5)[0])
    row["attacks"] = {a["name"]: {"verdict": str(a["verdict"]),
                                  "retained": None if a["retained"] is None else float(a["retained"]),
                                  "usable": bool(a["usable"])} for a in d["attacks"]}
    best = d.get("best_of_n") or {}
    row["best_of_n"] = {"name": best.get("name"), "verdict": str(best.get("verdict", "n/a")),
                        "retained": None if best.get("retained") is None else float(best["retained"])}
    return row


def table(set_name: str, kind: str, n_files: int, methods: list[str], rows: list[dict]) -> list[str]:
    """The markdown table of one set, built from its rows."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["method"]].append(r)
    attack_names: list[str] = []
    for r in rows:
        for n in r["attacks"]:
            if n not in attack_names:
                attack_names.append(n)
    judge_col = ("AI view still attributed to the original's artist (style judge)" if kind == "cloak"
                 else "AI view shows cat, top-5 (concept judge)")
    lines = ["", f"### {set_name}: {n_files} images ({kind})", "",
             f"| method | LPIPS-alex (max) | PSNR | SSIM | latent shift | {judge_col} | "
             + " | ".join(f"{n} survives" for n in attack_names) + " | best-of-N survives | s/img |",
             "|---" * (7 + len(attack_names) + 1) + "|"]
    for m in methods:
        rs = by[m]
        jv = [r["ai_still_artist"] if kind == "cloak" else r["ai_cat"] for r in rs]
        shifts = [r["shift"] for r in rs if r["shift"] is not None]
        cells = [f"{np.mean([r['lpips'] for r in rs]):.4f} ({max(r['lpips'] for r in rs):.4f})",
                 f"{np.mean([r['psnr'] for r in rs]):.1f}", f"{np.mean([r['ssim'] for r in rs]):.3f}",
                 f"{np.mean(shifts):.3f}" if shifts else "n/a", f"{sum(jv)}/{len(jv)}"]
        for n in attack_names:
            v = [r["attacks"][n]["verdict"] for r in rs if n in r["attacks"]]
            ret = [r["attacks"][n]["retained"] for r in rs if n in r["attacks"] and r["attacks"][n]["retained"] is not None]
            cells.append(f"{sum(x == 'survives' for x in v)}/{len(v)}" + (f" ({np.mean(ret):.2f})" if ret else ""))
        b = [r["best_of_n"] for r in rs]
        bret = [x["retained"] for x in b if x["retained"] is not None]
        cells.append(f"{sum(x['verdict'] == 'survives' for x in b)}/{len(b)}" + (f" ({np.mean(bret):.2f})" if bret else ""))
        cells.append(f"{np.mean([r['seconds'] for r in rs]):.0f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: images where the protection survives / images (mean retained share of the latent shift "
              "in its own direction, 1.0 = all of it). Best-of-N: per image, the usable attack that retains the "
              "least."]
    return lines


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
    ap.add_argument("--side", type=int, default=None,
                    help="Lanczos-downscale each image so its long side is at most this (the published size); "
                         "default: full size")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--rows", default=None,
                    help="append one JSON line per (set, image, method) here and skip rows already present")
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

    import sfumato.io as sio
    from sfumato.encoders import load_encoder
    from sfumato.judges.concept import ConceptJudge
    from sfumato.judges.style import StyleJudge
    from sfumato.targets.anchors import load_anchor_folder

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
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
    rows_path = Path(args.rows) if args.rows else None
    done: dict[tuple[str, str, str], dict] = {}
    if rows_path is not None and rows_path.exists():
        for line in rows_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["set"], r["file"], r["method"])] = r
    settings = {"side": args.side, "resolution": args.resolution, "steps_scale": args.steps_scale,
                "attacks": args.attacks, "seed": args.seed}
    for set_name in args.sets:
        kind = "cloak" if set_name == "vangogh" else "poison"
        folder = corpus / ("art/vincent_van_gogh" if set_name == "vangogh" else "photos/dog")
        files = sio.iter_image_paths([folder])[: args.limit]
        methods = args.methods or list(CLOAK_METHODS if kind == "cloak" else POISON_METHODS)
        if args.quick and args.methods is None:
            methods = ["sfumato-default", "glaze"] if kind == "cloak" else ["sfumato-poison", "nightshade"]
        for f in files:
            rgb = load_downscaled(f, args.side) if args.side else sio.load_image(f).rgb
            for m in methods:
                key = (set_name, f.name, m)
                if key in done:
                    if done[key].get("settings") != settings:
                        raise SystemExit(f"{rows_path} holds {key} measured with {done[key].get('settings')}, "
                                         f"not {settings}: use another --rows file")
                    continue
                row = measure(m, f.name, rgb, set_name=set_name, kind=kind, anchors=anchors, args=args,
                              attacks=attacks, style_judge=style_judge, concept_judge=concept_judge, taef2=taef2)
                row["settings"] = settings
                done[key] = row
                if rows_path is not None:
                    rows_path.parent.mkdir(parents=True, exist_ok=True)
                    with rows_path.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
                print(f"  {set_name} {f.name} {m}: lpips={row['lpips']:.4f} {row['seconds']:.0f}s "
                      f"summary={row['summary'][:100]}", file=sys.stderr, flush=True)
        rows = [done[(set_name, f.name, m)] for f in files for m in methods]
        for line in table(set_name, kind, len(files), methods, rows):
            out(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
