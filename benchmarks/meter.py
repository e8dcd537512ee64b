"""Protection meter benchmark (issue 22): Sfumato's ``default`` and ``slow`` cloak presets against naive
Glaze at the same budget and toward the same target, measured at every trainer view with de-confounded
judges.

    OMP_NUM_THREADS=1 python benchmarks/meter.py --per-artist 1                 # 14 art128 hold-out images
    OMP_NUM_THREADS=1 python benchmarks/meter.py --per-artist 1 --limit 3       # smoke run
    OMP_NUM_THREADS=1 python benchmarks/meter.py --per-artist 1 --phase protect # cloak only (cached)
    OMP_NUM_THREADS=1 python benchmarks/meter.py --per-artist 1 --ace 2         # plus 2 large ace_* paintings
    OMP_NUM_THREADS=1 python benchmarks/meter.py --per-artist 1 --methods noise-same-budget  # the noise control

Images: the ``corpus/art128`` hold-out of :func:`sfumato.judges.splits.art128_split` (8 per artist held
out; the first ``--per-artist`` of each artist by split rank are measured), every one a 128x128 JPEG,
cloaked at its own size (the presets' work resolution is never an upscale). The judges are trained on the
split's training half only; the cloak's target style is ``auto`` (built-in procedural styles), so no
target or exemplar comes from a judge's training images.

Methods: ``clean``; ``sfumato-default`` (``CloakConfig.preset()``); ``sfumato-slow``
(``CloakConfig.preset(quality="slow")``); ``sfumato-default-work``: the default preset optimised at its one
work view only (``Effort.views="work"``, the ablation of the trainer-view sampling; same target); ``glaze-same-target``: naive Glaze (Eq. 3, 500 Adam steps,
:func:`sfumato.baselines.glaze.glaze_style_cloak`) aimed at the *same rendered target tensor* as
``sfumato-default`` (the Gatys rendering at the cloak's work size, ``keep_target_image=True``) and held
to the same budget (LPIPS-alex <= 0.05 and L-inf <= 24/255 on the saved 8-bit file, ``matched_budget``);
``photoguard-same-target`` and ``mist-same-target``: PhotoGuard's encoder attack (200 signed steps,
linear decay) and Mist's textural loss (100 constant signed steps), at their authors' step settings, aimed at
that same target tensor and held to the same budget (``meter_ace.SAME_TARGET``);
``noise-same-budget``: the random-noise control, seeded i.i.d. Gaussian noise clipped to the L-inf cap whose
size is bisected so the saved 8-bit file sits at the same LPIPS budget (``benchmarks/meter_noise.py``); it has
no target, and its latent measure reads ``sfumato-default``'s target (so its ``toward`` should be ~0);
``sfumato-default-stride8`` and ``sfumato-default-tiles``: the default preset with its trainer-view crops
anywhere on the 8 px grid, or on 256 px tiles whose target latents are reused
(``Effort.view_stride``; ``meter_ace.VARIANTS``), side by side for the speed-up's cost in protection;
``sfumato-default-gram`` and ``sfumato-default-mix``: the default preset with issue 23's objective test, a
Gram style loss on the decoded AI view instead of the latent distance, or half each (``Effort.objective``,
:mod:`sfumato.optimise.ai_view_style`); ``sfumato-default-worst`` and ``sfumato-slow-worst``: the preset
with half its steps on the trainer view size that has moved least (``Effort.view_weighting="worst"``).
``--reverse`` runs the images last to first, for a second process
on the same ``--out`` (each skips the rows the other has written).

Phase ``protect`` writes each protected image as a lossless 8-bit PNG, the cloak's target as ``.npy`` and
one JSON line per (image, method) to ``runs/meter/protect.jsonl``; phase ``measure`` reads them back and
appends one JSON line per (image, method) to ``runs/meter/measure.jsonl``: per trainer view the latent
measure and its ceiling control, the worst view, and the art128 whole-image judge's and the AlexNet-Gram
judge's verdicts on the AI view (TAEF2 decode of the view's latent). Both files are resumable: a rerun
skips what is there. The report (markdown) is always built from the rows files.

Models: TAEF2 (madebyollin/taesd; encoder, decoder and AI view), LPIPS v0.1 AlexNet (budget), MobileNetV2
int8 TFLite (art128 judge), AlexNet features (Gram judge). Judges never enter a loss or a target choice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meter_ace import ACE_METHODS, ALL_ACE_METHODS, SAME_TARGET, cloak_config, same_target_baseline  # noqa: E402
from meter_measure import measure_image, report  # noqa: E402
from meter_noise import noise_same_budget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
METHODS = ("clean", "sfumato-default", "sfumato-slow", "sfumato-default-work", "glaze-same-target",
           "photoguard-same-target", "mist-same-target", "noise-same-budget", "sfumato-default-stride8",
           "sfumato-default-tiles", "sfumato-default-gram", "sfumato-default-mix",
           "sfumato-default-worst", "sfumato-slow-worst")
LPIPS_MAX, LINF_MAX = 0.05, 24 / 255
JUDGE_HOLDOUT = 8  # the judges' fixed split holds out 8 per artist; we measure the first N of those


def holdout_images(corpus: Path, per_artist: int) -> list[tuple[str, Path]]:
    """(artist, path) of the first ``per_artist`` art128 hold-out images of every artist, by split rank."""
    from sfumato.judges.splits import art128_split, split_rank

    _, hold = art128_split(corpus, holdout_per_artist=JUDGE_HOLDOUT)
    out = []
    for artist, paths in sorted(hold.items()):
        out += [(artist, p) for p in sorted(paths, key=lambda p: split_rank(p.name))[:per_artist]]
    return out


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def save_png(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def protect_one(method: str, rgb: np.ndarray, key: str, out: Path, *, seed: int, glaze_steps: int) -> dict:
    """Protect ``rgb`` with ``method``; save the PNG (and the cloak's target) under ``out``."""
    from sfumato.protections.cloak import cloak_array

    t = time.perf_counter()
    png = out / "images" / f"{key}.{method}.png"
    row: dict = {"key": key, "method": method, "png": str(png.relative_to(out))}
    if method == "clean":
        img = rgb
    elif method.startswith("sfumato-"):
        cfg = cloak_config(method, seed)  # a preset, or an ablation of its effort (meter_ace.VARIANTS)
        r = cloak_array(rgb, cfg, keep_target_image=True)
        img = r.image
        tgt = out / "targets" / f"{key}.{method}.npy"
        tgt.parent.mkdir(parents=True, exist_ok=True)
        np.save(tgt, r.target_image.astype(np.float32))
        row.update(target=str(tgt.relative_to(out)), target_style=r.target["style"], work_size=r.target["work_size"],
                   vetted=r.target.get("vetted"), steps_run=r.steps_run, achieved=r.achieved,
                   budget=cfg.budget.to_dict(), effort=cfg.effort.to_dict())
    elif method in SAME_TARGET:
        tgt = out / "targets" / f"{key}.sfumato-default.npy"
        if not tgt.exists():
            raise RuntimeError(f"{tgt} missing: protect sfumato-default first ({method} reuses its target)")
        target = np.load(tgt)
        r = same_target_baseline(method, rgb, target, seed=seed, glaze_steps=glaze_steps)
        img = r.image
        row.update(target=str(tgt.relative_to(out)), target_style="(sfumato-default's)",
                   work_size=r.params["resolution_used"], steps_run=r.steps_run, achieved=r.achieved,
                   calibration=r.params["calibration"])
    elif method == "noise-same-budget":
        tgt = out / "targets" / f"{key}.sfumato-default.npy"
        ref = next((r for r in read_rows(out / "protect.jsonl")
                    if r["key"] == key and r["method"] == "sfumato-default"), None)
        if ref is None or not tgt.exists():
            raise RuntimeError(f"{key}: protect sfumato-default first (the noise control is measured against "
                               "its target)")
        img, params = noise_same_budget(rgb, key, seed=seed, lpips_max=LPIPS_MAX)
        row.update(target=str(tgt.relative_to(out)), target_style="(sfumato-default's; noise has none)",
                   work_size=ref["work_size"], achieved=params.pop("achieved"), noise=params)
    else:
        raise ValueError(method)
    save_png(img, png)
    back = load_rgb(png)
    if not np.array_equal(np.round(back * 255), np.round(np.clip(img, 0, 1) * 255)):
        raise RuntimeError(f"{png}: PNG round trip changed pixels")
    row["seconds"] = round(time.perf_counter() - t, 2)
    if method != "clean":
        from sfumato.metrics.saved import protected_quality

        q = protected_quality(back, rgb, lpips_net="alex")
        row["saved_quality"] = {k: round(float(v), 5) for k, v in q.items()}
        row["within_budget"] = bool(q["lpips_alex"] <= LPIPS_MAX + 1e-6 and q["linf"] <= LINF_MAX + 1e-6)
    return row


def protect_all(images: list[tuple[str, Path]], out: Path, methods: list[str], *, seed: int,
                glaze_steps: int) -> None:
    rows_path = out / "protect.jsonl"
    for artist, path in images:
        key = f"{artist}/{path.stem}"
        rgb = load_rgb(path)
        for method in methods:
            # read again per method: a second process (``--reverse``) may have done it meanwhile
            if (key, method) in {(r["key"], r["method"]) for r in read_rows(rows_path)}:
                continue
            row = protect_one(method, rgb, key, out, seed=seed, glaze_steps=glaze_steps)
            row.update(artist=artist, source=str(path))
            append_row(rows_path, row)
            print(f"[protect] {key} {method}: {row['seconds']} s  "
                  f"lpips={row.get('saved_quality', {}).get('lpips_alex', 0):.4f}", flush=True)


def measure_all(images: list[tuple[str, Path]], out: Path, methods: list[str], args: argparse.Namespace) -> None:
    rows_path = out / "measure.jsonl"
    done = {(r["key"], r["method"]) for r in read_rows(rows_path)}
    prot = {(r["key"], r["method"]): r for r in read_rows(out / "protect.jsonl")}
    for artist, path in images:
        key = f"{artist}/{path.stem}"
        todo = [m for m in methods if (key, m) not in done and (key, m) in prot]
        if not todo:
            continue
        clean = load_rgb(path)
        for method in todo:
            if (key, method) in {(r["key"], r["method"]) for r in read_rows(rows_path)}:
                continue  # a second process (``--reverse``) measured it meanwhile
            p = prot[(key, method)]
            t = time.perf_counter()
            row = measure_image(clean, load_rgb(out / p["png"]), artist=artist, method=method,
                                target=np.load(out / p["target"]) if p.get("target") else None,
                                work_size=p.get("work_size"), corpus=SHARED / "corpus", seed=args.seed, cache=out)
            row.update(key=key, method=method, artist=artist, seconds=round(time.perf_counter() - t, 2))
            append_row(rows_path, row)
            print(f"[measure] {key} {method}: {row['seconds']} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-artist", type=int, default=1, help="hold-out images per artist (<= 8)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (smoke runs)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--phase", choices=("protect", "measure", "report", "all"), default="all")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "meter")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--glaze-steps", type=int, default=500)
    ap.add_argument("--reverse", action="store_true",
                    help="protect and measure the images last to first (a second process on the same --out "
                         "meets the first one in the middle; each skips what the other has written, but both "
                         "may protect the image they meet on at once: same seed, same file, and the report "
                         "keeps one row per image and method)")
    ap.add_argument("--ace", type=int, default=0, help="also N large ace_* hold-out paintings (crop judge)")
    ap.add_argument("--ace-methods", nargs="+", default=list(ACE_METHODS), choices=ALL_ACE_METHODS,
                    help="methods on the large paintings (glaze-same-target needs sfumato-default first)")
    ap.add_argument("--ace-attacks", action="store_true",
                    help="also measure the large paintings after JPEG q85 4:2:0 and a x0.75 resize (meter_ace.ATTACKS)")
    ap.add_argument("-o", "--output", default=None, help="also write the markdown report here")
    args = ap.parse_args(argv)
    if not 1 <= args.per_artist <= JUDGE_HOLDOUT:
        ap.error(f"--per-artist must be in 1..{JUDGE_HOLDOUT}")
    images = holdout_images(SHARED / "corpus", args.per_artist)[: args.limit]
    methods = [m for m in METHODS if m in args.methods]
    order = images[::-1] if args.reverse else images
    if args.phase in ("protect", "all"):  # the methods keep their order: baselines reuse sfumato-default's target
        protect_all(order, args.out, methods, seed=args.seed, glaze_steps=args.glaze_steps)
    if args.phase in ("measure", "all"):  # reversed, the methods too: two processes that meet on one image
        measure_all(order, args.out, methods[::-1] if args.reverse else methods, args)  # start at its two ends
    if args.ace:
        from meter_ace import run_ace

        run_ace(SHARED / "corpus", args.out, args.ace, seed=args.seed, methods=tuple(args.ace_methods),
                attacks=args.ace_attacks,
                glaze_steps=args.glaze_steps)
    text = report(args.out, [f"{a}/{p.stem}" for a, p in images], methods, ace=args.ace > 0)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
