"""Does the poison's optimiser converge? Adam against signed-gradient PGD at the poison's default budget
(issue 18, part 1), and the aligned anchor against the nearest one.

For ``--k`` dog photos of the pets hold-out (the last dogs of ``corpus/pets/dog`` in
:func:`sfumato.lab.concept.poison_order`, the files the lab keeps out of training — the same split as
``benchmarks/poison_views.py``), with the lab's training cats of ``corpus/pets/cat`` as anchors (the first
``--pool`` in that order; the last 60 are held out), the poison runs at LPIPS-alex ≤ 0.07, L∞ ≤ 24/255 and
the single work view with:

* ``adam80``: 80 Adam steps at a constant lr 0.008 (the poison's ``default`` preset before this change);
* ``sign30``: 30 signed-gradient steps (the ``fast`` preset's count; only with ``--settings``);
* ``sign80``: 80 signed-gradient steps, step 0.0094 (= 24/255 / 10) decayed by a cosine to 0.00094;
* ``sign200``: the same with 200 steps;
* ``sign500``: the same with 500 steps (Nightshade's step count; only with ``--settings``);
* ``<name>-aligned``: any of these with the aligned anchor (:mod:`sfumato.targets.anchor_alignment`)
  instead of the nearest centre-cropped one (``anchor_choice="cheapest"``).

Per run it records the latent progress the manifest reports — the relative reduction of the TAEF2 distance
to the anchor, measured on the calibrated, quantised image — the uncalibrated progress of the loop's last
step, the calibration's scale, LPIPS and L∞ re-measured on the saved 8-bit PNG, the loop's whole loss
history (the step of the lowest loss against the last step, and the objective at fixed steps), and the
seconds. Each (photo, setting) run is one JSON line in ``runs/poison_converge/runs.jsonl`` (resumable: a
run already there is not repeated); ``--report`` only rebuilds the markdown report from it. No judge enters a
loss or the anchor choice; none is run here (``benchmarks/poison_views.py`` judges the AI views).
``--speed STEPS`` instead times the ``default`` preset on a 1280 px ``corpus/photos/dog`` photo (the run cut to
STEPS steps, the optimisation scaled to the preset's step count); the report lists those lines too.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/poison_converge.py --k 3 \\
        --settings adam80 sign80 sign200 sign80-aligned -o runs/poison_converge/report.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, image_paths
from _common import load_downscaled as load

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
OUT = ROOT / "runs" / "poison_converge"
HOLDOUT = 60  # the lab's hold-out (benchmarks/lab.py --holdout)
STEP = 0.0094  # 24/255 / 10: the signed step, in [0, 1] pixel units
CHECKPOINTS = (20, 40, 80, 200, 500)
BASE = {"adam80": dict(steps=80, lr=0.008, update="adam", lr_schedule="constant"),
        "sign30": dict(steps=30, lr=STEP, update="sign", lr_schedule="cosine"),
        "sign80": dict(steps=80, lr=STEP, update="sign", lr_schedule="cosine"),
        "sign200": dict(steps=200, lr=STEP, update="sign", lr_schedule="cosine"),
        "sign500": dict(steps=500, lr=STEP, update="sign", lr_schedule="cosine")}
SETTINGS = [*BASE, *(f"{n}-aligned" for n in BASE)]


def holdout_dogs(k: int) -> list[Path]:
    """The first ``k`` of the pets hold-out dogs (the last in poison order, from the end)."""
    from sfumato.lab.concept import poison_order

    return poison_order(image_paths(SHARED / "corpus/pets/dog"))[-HOLDOUT:][::-1][:k]


def setting(name: str) -> tuple[str, dict]:
    """(anchor choice, Effort fields) of a setting name."""
    base, _, aligned = name.partition("-")
    return ("aligned" if aligned else "cheapest"), BASE[base]


def done_runs(path: Path) -> dict[tuple[str, str], dict]:
    runs: dict[tuple[str, str], dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                runs[(r["photo"], r["setting"])] = r
    return runs


def run_one(photo: Path, name: str, anchors: list[np.ndarray], names: list[str], side: int, seed: int) -> dict:
    import torch
    from PIL import Image

    from sfumato.config import Budget, Effort, PoisonConfig
    from sfumato.io.tensors import to_nchw
    from sfumato.metrics.lpips import load_lpips
    from sfumato.protections.poison import poison_array

    choice, fields = setting(name)
    rgb = load(photo, side)
    cfg = PoisonConfig(concept="dog", target="cat", budget=Budget(lpips=0.07, linf=24 / 255),
                       effort=Effort(resolution=512, **fields), anchor_choice=choice, seed=seed)
    t0 = time.perf_counter()
    r = poison_array(rgb, cfg, anchors, anchor_names=names)
    secs = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "poisoned.png"
        Image.fromarray(np.round(np.clip(r.image, 0, 1) * 255).astype(np.uint8)).save(out)
        saved = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32) / 255
    with torch.no_grad():
        lpips = float(load_lpips("alex")(to_nchw(saved), to_nchw(rgb))[0])
    hist = r.history
    losses = [h["loss"] for h in hist]
    best = int(np.argmin(losses)) + 1
    lat = r.latent[0]
    return {"photo": photo.name, "setting": name, "size": list(rgb.shape[:2]), "anchor_choice": choice,
            "effort": cfg.effort.to_dict(), "anchor": r.anchor["name"],
            "anchor_distance": lat["clean_to_target"], "encoder": lat["encoder"],
            "alignment": r.anchor.get("alignment"),
            "toward": lat["relative_reduction"], "uncalibrated_last": hist[-1]["progress"],
            "scale": r.scale, "lpips_saved": lpips, "linf_saved_255": float(np.abs(saved - rgb).max()) * 255,
            "best_step": best, "steps": len(hist), "seconds": secs, "timing_s": r.timing_s,
            "history": [{"step": h["step"], "loss": round(h["loss"], 5), "objective": round(h["objective"], 5),
                         "progress": None if h["progress"] is None else round(h["progress"], 5)} for h in hist]}


def left(r: dict) -> float:
    """The latent distance still between the poison and its anchor."""
    return (1 - r["toward"]) * r["anchor_distance"]


def report(runs: list[dict], command: str, header: str) -> list[str]:
    order = {n: i for i, n in enumerate(SETTINGS)}
    photos = list(dict.fromkeys(r["photo"] for r in runs))
    lines = [header, "", f"Command: `{command}`", "",
             "| photo (px) | setting | anchor (latent distance) | toward, saved file | left to travel | uncalibrated "
             "last step | scale | LPIPS / L∞ (saved) | lowest loss at step / of | objective at steps 20/40/80/200/500 "
             "| s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (photos.index(r["photo"]), order[r["setting"]])):
        objs = {h["step"]: h["objective"] for h in r["history"]}
        at = "/".join(f"{objs[c]:.3f}" for c in CHECKPOINTS if c in objs)
        h, w = r["size"]
        lines.append(f"| {r['photo']} ({w}×{h}) | {r['setting']} | {r['anchor']} ({r['anchor_distance']:.3f}) | "
                     f"{r['toward']:.3f} | {left(r):.1f} | {r['uncalibrated_last']:.3f} | {r['scale']:.2f} | "
                     f"{r['lpips_saved']:.4f} / {r['linf_saved_255']:.0f} | {r['best_step']} / {r['steps']} | "
                     f"{at} | {r['seconds']:.0f} |")
    lines += ["", "`left to travel` = (1 − toward) × anchor distance: the latent distance from the poison to its "
              "anchor, comparable between anchors (the aligned anchor starts nearer, so its relative figure has a "
              "smaller denominator).", "",
              "| setting | photos | mean toward (saved file) | mean anchor distance | mean left to travel | lowest "
              "loss at the last step | mean objective at steps 20/40/80/200/500 | within budget (LPIPS ≤ 0.07, "
              "L∞ ≤ 24) | mean s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted({r["setting"] for r in runs}, key=order.__getitem__):
        rs = [r for r in runs if r["setting"] == name]
        n = len(rs)
        last = sum(r["best_step"] == r["steps"] for r in rs)
        ok = sum(r["lpips_saved"] <= 0.07 + 1e-9 and r["linf_saved_255"] <= 24.5 for r in rs)
        objs = [{h["step"]: h["objective"] for h in r["history"]} for r in rs]
        at = "/".join(f"{np.mean([o[c] for o in objs]):.3f}" for c in CHECKPOINTS if all(c in o for o in objs))
        lines.append(f"| {name} | {n} | {np.mean([r['toward'] for r in rs]):.3f} | "
                     f"{np.mean([r['anchor_distance'] for r in rs]):.3f} | {np.mean([left(r) for r in rs]):.1f} | "
                     f"{last}/{n} | {at} | {ok}/{n} | "
                     f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    return lines


def speed(side: int, steps: int, pool: int, seed: int, anchor_choice: str | None = None,
          views: str | None = None) -> dict:
    """Seconds of the ``default`` poison preset on the first ``corpus/photos/dog`` photo (poison order) of at
    least ``side`` px, downscaled to ``side``: the run is cut to ``steps`` steps and the optimisation time
    scaled to the preset's count. ``anchor_choice``/``views`` override the preset's (None: as shipped)."""
    import dataclasses

    from PIL import Image

    from sfumato.config import PoisonConfig, preset_effort
    from sfumato.lab.concept import poison_order
    from sfumato.protections.poison import poison_array

    def long_side(p: Path) -> int:
        with Image.open(p) as im:
            return max(im.size)

    photo = next(p for p in poison_order(image_paths(SHARED / "corpus/photos/dog")) if long_side(p) >= side)
    cats = poison_order(image_paths(SHARED / "corpus/pets/cat"))[:-HOLDOUT][:pool]
    anchors = [load(p, 512) for p in cats]
    rgb = load(photo, side)
    full = preset_effort("poison")
    if views is not None:
        full = dataclasses.replace(full, views=views)
    extra = {} if anchor_choice is None else {"anchor_choice": anchor_choice}
    cfg = PoisonConfig(concept="dog", target="cat", seed=seed,  # the default budget of the preset table
                       effort=dataclasses.replace(full, steps=min(steps, full.steps)), **extra)
    r = poison_array(rgb, cfg, anchors, anchor_names=[p.name for p in cats])
    t = r.timing_s
    per_step = t["optimise"] / r.steps_run
    return {"photo": photo.name, "size": list(rgb.shape[:2]), "effort": full.to_dict(), "steps_run": r.steps_run,
            "anchor_choice": cfg.anchor_choice,
            "timing_s": t, "seconds_per_step": per_step,
            "projected_total_s": t["target"] + t["calibrate"] + per_step * full.steps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=3, help="pets hold-out dog photos")
    ap.add_argument("--side", type=int, default=512, help="long side of the published photo (downscale)")
    ap.add_argument("--pool", type=int, default=64, help="training cats used as anchors")
    ap.add_argument("--settings", nargs="+", default=["adam80", "sign80", "sign200", "sign80-aligned"],
                    choices=SETTINGS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=str(OUT / "runs.jsonl"), help="resumable JSONL of the runs")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from --runs")
    ap.add_argument("--reverse", action="store_true",
                    help="photos in reverse order (a second process can then share the work from the other end)")
    ap.add_argument("--speed", type=int, default=0, metavar="STEPS",
                    help="instead: time the default preset on a 1280 px photos/dog photo, cut to STEPS steps and "
                         "projected to the preset's count (one JSON line in runs/poison_converge/speed.jsonl)")
    ap.add_argument("--speed-side", type=int, default=1280,
                    help="with --speed: the photo's long side (the first photos/dog photo at least this large, "
                         "downscaled to it)")
    ap.add_argument("--speed-anchor", choices=["aligned", "cheapest"], default=None,
                    help="with --speed: this anchor choice instead of the shipped default")
    ap.add_argument("--speed-views", choices=["work", "trainer"], default=None,
                    help="with --speed: these views instead of the preset's")
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
    import torch

    from sfumato.lab.concept import poison_order

    path = Path(args.runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.speed:
        row = speed(args.speed_side, args.speed, args.pool, args.seed, args.speed_anchor, args.speed_views)
        row["threads"] = torch.get_num_threads()
        with (path.parent / "speed.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row))
        return 0
    files = holdout_dogs(args.k)
    command = "python benchmarks/poison_converge.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, torch "
              f"{torch.__version__}, threads {torch.get_num_threads()} (OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', 'unset')}). Photos: {', '.join(p.name for p in files)} "
              f"(pets hold-out dogs, ≤ {args.side} px); anchors: the first {args.pool} training cats of pets/cat "
              "(poison order, hold-out excluded); encoder TAEF2 (the poison's default); budget LPIPS-alex ≤ 0.07, "
              "L∞ ≤ 24/255 on the saved PNG; work size 512 px, single work view; seed "
              f"{args.seed}. `toward` = relative reduction of the latent distance to the anchor on the "
              "calibrated, quantised image (the manifest's figure).")
    if not args.report:
        cats = poison_order(image_paths(SHARED / "corpus/pets/cat"))[:-HOLDOUT][: args.pool]
        anchors = [load(p, args.side) for p in cats]
        names = [p.name for p in cats]
        for name in args.settings:  # setting by setting, so a cut-short run still compares whole settings
            for f in files[::-1] if args.reverse else files:
                if (f.name, name) in done_runs(path):
                    continue
                row = run_one(f, name, anchors, names, args.side, args.seed)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:  # one append per line: two processes can share the file
                    os.write(fd, (json.dumps(row) + "\n").encode())
                finally:
                    os.close(fd)
                print(f"{f.name} {name}: toward {row['toward']:.3f}, lowest loss at {row['best_step']}/"
                      f"{row['steps']}, {row['seconds']:.0f} s", flush=True)
    runs = [r for r in done_runs(path).values() if r["photo"] in {f.name for f in files}]
    lines = report(runs, command, header)
    speed_file = path.parent / "speed.jsonl"
    if speed_file.exists():
        lines += ["", "Speed of the `default` preset on a photos/dog photo (`--speed STEPS`: the run cut to STEPS steps, "
                  "the optimisation scaled to the preset's count; same shared machine):", "",
                  "| photo (px) | preset | anchor | views | threads | steps run | s per step | target s | "
                  "calibrate s | projected total s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for line in speed_file.read_text().splitlines():
            r = json.loads(line)
            e = r["effort"]
            lines.append(f"| {r['photo']} ({r['size'][1]}×{r['size'][0]}) | {e['steps']} {e['update']} steps, "
                         f"{e['resolution']} px | {r.get('anchor_choice', 'cheapest')} | {e.get('views', 'work')} | "
                         f"{r['threads']} | {r['steps_run']} | {r['seconds_per_step']:.2f} | "
                         f"{r['timing_s']['target']:.0f} | {r['timing_s']['calibrate']:.0f} | "
                         f"{r['projected_total_s']:.0f} |")
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
