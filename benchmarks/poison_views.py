"""Does the poison reach its target at the views a trainer encodes? Old settings against aligned anchors
optimised over trainer views, at the same budget (issue 18, parts 1–2).

For K dog photos — the pets hold-out (the last dogs of ``corpus/pets/dog`` in
:func:`sfumato.lab.concept.poison_order`, the files the lab keeps out of training) and
``corpus/photos/dog`` (in the same hashed order), half each — with the training cats of ``corpus/pets/cat``
as anchors (the first ``--pool`` in that order, the last 60 held out as the lab does), the poison runs with:

* ``old``: the nearest centre-cropped anchor (``anchor_choice="cheapest"``), the single work view
  (``views="work"``), 80 Adam steps at lr 0.008 — the poison's settings before this change;
* ``new``: the aligned anchor (``anchor_choice="aligned"``, :mod:`sfumato.targets.anchor_alignment`) and
  trainer views (``views="trainer"``, 256 px crops), with ``--new-steps``/``--new-lr`` (default the same 80
  steps at lr 0.008: only the anchor and the views differ);
* ``aligned-work`` (with ``--settings``): the aligned anchor at the single work view (the ablation);
* ``default``: the poison's ``default`` preset of :data:`sfumato.config.PRESETS` as shipped (80 signed steps,
  cosine-decayed, single work view, the anchor choice of :class:`~sfumato.config.ConceptFields`);
* ``default-cheapest`` / ``default-aligned``: that preset with the nearest centre-cropped / the aligned
  anchor;
* ``default-trainer``: that preset with the aligned anchor, optimised over trainer views (256 px crops);
* ``default-trainer-2x``: ``default-trainer`` with twice the signed step (each pixel is in only some of
  the crops, so it gets fewer steps than at the one work view);
* ``slow-trainer``: the ``slow`` preset (500 signed steps, 768 px) with the aligned anchor over trainer views;
* ``default-trainer-masked``: ``default-trainer`` with the texture-scaled L∞ cap
  (:attr:`sfumato.config.PoisonConfig.masking`).

The budget is LPIPS-alex ≤ 0.07 and L∞ ≤ 24/255, measured here again on the saved 8-bit PNG. Per image:
the anchor's latent distance (how far it leaves the poison to travel), the latent ``toward`` at every
trainer view (:func:`sfumato.verification.views.measure_views` over
:func:`sfumato.attacks.trainer_views.trainer_views`, target = the anchor image the poison aimed at), the
worst view, and the ImageNet concept judge (MobileNetV2, :mod:`sfumato.judges.concept`; it only reads,
never enters a loss or the anchor choice) on the AI view (TAEF2 encode → decode) at the worst view and on
the pixels, plus the seconds per image.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/poison_views.py --k 6 -o /tmp/poison_views.md
    python benchmarks/poison_views.py --k 2 --settings old new aligned-work --new-steps 150

Photos are downscaled to ``--side`` px on the long side (the "published" file; default 512).
"""

from __future__ import annotations

import argparse
import math
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
HOLDOUT = 60  # the lab's hold-out (benchmarks/lab.py --holdout)


def photos(k: int) -> list[Path]:
    """Half from the pets hold-out (the last dogs in poison order, from the end), half from photos/dog."""
    from sfumato.lab.concept import poison_order

    held = poison_order(image_paths(SHARED / "corpus/pets/dog"))[-HOLDOUT:][::-1]
    big = poison_order(image_paths(SHARED / "corpus/photos/dog"))
    n_pets = math.ceil(k / 2)
    return held[:n_pets] + big[: k - n_pets]


def anchor_image(anchors: list[np.ndarray], entry: dict, size: tuple[int, int]):  # noqa: ANN201
    """The anchor image the poison aimed at, rebuilt from its manifest entry."""
    from sfumato.io.tensors import fit_to, resize, to_nchw

    a = anchors[entry["index"]]
    al = entry.get("alignment")
    if al is None:
        return fit_to(a, size)
    img = to_nchw(a)
    if al["flip"]:
        img = img.flip(-1)
    t, left, ch, cw = al["box"]
    return resize(img[..., t:t + ch, left:left + cw], size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=6, help="dog photos (half pets hold-out, half photos/dog)")
    ap.add_argument("--side", type=int, default=512, help="long side of the published photo (downscale)")
    ap.add_argument("--pool", type=int, default=64, help="training cats used as anchors")
    ap.add_argument("--settings", nargs="+", default=["default-cheapest", "default-trainer"],
                    choices=["old", "new", "aligned-work", "default", "default-cheapest", "default-aligned",
                             "default-trainer", "default-trainer-2x", "slow-trainer",
                             "default-trainer-masked"])
    ap.add_argument("--new-steps", type=int, default=80)
    ap.add_argument("--new-lr", type=float, default=0.008)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clean-only", action="store_true",
                    help="only judge the clean photos' pixels (is each one a dog before poisoning?)")
    ap.add_argument("--part", default="0/1", metavar="K/N",
                    help="run only every N-th photo from the K-th (0-based), for N processes side by side")
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args(argv)
    part, parts = (int(v) for v in args.part.split("/"))
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
    import dataclasses

    import torch
    from PIL import Image

    from sfumato.attacks.trainer_views import apply_view, trainer_views
    from sfumato.config import Budget, Effort, PoisonConfig, preset_effort
    from sfumato.encoders import load_encoder
    from sfumato.io.tensors import to_hwc, to_nchw, work_size
    from sfumato.judges import ConceptJudge
    from sfumato.lab.concept import poison_order
    from sfumato.metrics.lpips import load_lpips
    from sfumato.protections.poison import poison_array
    from sfumato.verification.views import measure_views, worst_views

    if args.clean_only:
        judge = ConceptJudge()
        lines = [f"Clean pixels of the {args.k} photos (≤ {args.side} px), MobileNetV2 concept judge (top-5 hit, "
                 "p = summed class probability):", "", "| photo | dog? | p(dog) |", "|---|---|---|"]
        for f in photos(args.k):
            x = load(f, args.side)
            lines.append(f"| {f.parent.parent.name}/{f.name} | {'dog' if judge.top_k_hits([x], 'dog')[0] else '–'} | "
                         f"{float(judge.score([x], 'dog')[0]):.3f} |")
        return emit(lines, args.out)
    cats = poison_order(image_paths(SHARED / "corpus/pets/cat"))[:-HOLDOUT][: args.pool]
    anchors = [load(p, args.side) for p in cats]
    names = [p.name for p in cats]
    judge = ConceptJudge()
    tae = load_encoder("taef2")
    lp = load_lpips("alex")
    budget = Budget(lpips=0.07, linf=24 / 255)
    old_effort = Effort(steps=80, resolution=512, lr=0.008)
    settings = {"old": ("cheapest", old_effort),
                "new": ("aligned", Effort(steps=args.new_steps, resolution=512, lr=args.new_lr, views="trainer")),
                "aligned-work": ("aligned", old_effort)}
    shipped = preset_effort("poison")
    slow = preset_effort("poison", "slow")
    settings |= {"default": (PoisonConfig(concept="dog", target="cat").anchor_choice, shipped),
                 "default-cheapest": ("cheapest", shipped), "default-aligned": ("aligned", shipped),
                 "default-trainer": ("aligned", dataclasses.replace(shipped, views="trainer")),
                 "default-trainer-2x": ("aligned", dataclasses.replace(shipped, views="trainer", lr=2 * shipped.lr)),
                 "slow-trainer": ("aligned", dataclasses.replace(slow, views="trainer"))}
    settings["default-trainer-masked"] = settings["default-trainer"]  # the same, with masking=True below
    files = photos(args.k)[part::parts]
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
             f"{torch.get_num_threads()}. Command: `python benchmarks/poison_views.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"{len(files)} dog photos (≤ {args.side} px), anchors: {len(anchors)} training cats of pets/cat; "
             "budget LPIPS-alex ≤ 0.07, L∞ ≤ 24/255 on the saved PNG; encoder TAEF2; judge MobileNetV2 "
             "(top-5 concept hit, p = summed class probability).", "",
             "| photo | setting | anchor (dist., unaligned) | LPIPS / L∞ | toward: work → per trainer view | "
             "worst view | AI view at worst: cat? p(cat) | pixels: dog? p(dog) | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    summary: dict[str, list] = {s: [] for s in args.settings}
    tmp = Path(tempfile.mkdtemp(prefix="poison_views_"))
    for f in files:
        rgb = load(f, args.side)
        h, w = rgb.shape[:2]
        for s in args.settings:
            choice, effort = settings[s]
            cfg = PoisonConfig(concept="dog", target="cat", budget=budget, effort=effort, anchor_choice=choice,
                               seed=args.seed, masking=s.endswith("-masked"))
            t0 = time.perf_counter()
            r = poison_array(rgb, cfg, anchors, anchor_names=names)
            secs = time.perf_counter() - t0
            out = tmp / f"{f.stem}-{s}.png"
            Image.fromarray(np.round(np.clip(r.image, 0, 1) * 255).astype(np.uint8)).save(out)
            saved = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32) / 255
            with torch.no_grad():
                lpips = float(lp(to_nchw(saved), to_nchw(rgb))[0])
            linf = float(np.abs(saved - rgb).max()) * 255
            wsz = work_size(h, w, effort.resolution)
            target = anchor_image(anchors, r.anchor, wsz)
            views = trainer_views(h, w, work_size=wsz, seed=args.seed)
            rows = measure_views(rgb, saved, target, tae, None, views, ceiling=False)
            worst = worst_views(rows)["view"]
            v = next(x for x in views if x.name == worst["name"])
            with torch.no_grad():
                xv = apply_view(to_nchw(saved), v)
                av = to_hwc(tae.decode(tae.encode(xv))[..., : xv.shape[-2], : xv.shape[-1]].clamp(0, 1))
            cat_hit = bool(judge.top_k_hits([av], "cat")[0])
            p_cat = float(judge.score([av], "cat")[0])
            dog_hit = bool(judge.top_k_hits([saved], "dog")[0])
            p_dog = float(judge.score([saved], "dog")[0])
            al = r.anchor.get("alignment")
            if al is not None:
                anc = (f"{r.anchor['name']}{' flip' if al['flip'] else ''} s{al['scale']:g} "
                       f"({al['distance']:.3f}, {al['unaligned_distance']:.3f})")
            else:
                anc = f"{r.anchor['name']} ({r.anchor['distances'][r.anchor['name']]:.3f})"
            per = ", ".join(f"{x['name'].replace('bucket-', 'b')} {x['toward']:.2f}" for x in rows
                            if x["name"] != "work")
            work = next((x["toward"] for x in rows if x["name"] == "work"), float("nan"))
            lines.append(f"| {f.parent.parent.name}/{f.name} | {s} | {anc} | {lpips:.4f} / {linf:.0f} | "
                         f"{work:.2f} → {per} | {worst['name']} {worst['toward']:.2f} | "
                         f"{'cat' if cat_hit else '–'} {p_cat:.3f} | {'dog' if dog_hit else '–'} {p_dog:.3f} | "
                         f"{secs:.0f} |")
            print(lines[-1], flush=True)
            summary[s].append((worst["toward"], cat_hit, dog_hit, lpips <= 0.07 + 1e-9 and linf <= 24.5, secs))
    lines += ["", "| setting | mean worst-view toward | AI view cat at worst view | pixels dog | within budget | "
              "mean s |", "|---|---|---|---|---|---|"]
    for s, rs in summary.items():
        n = len(rs)
        lines.append(f"| {s} | {np.mean([x[0] for x in rs]):.3f} | {sum(x[1] for x in rs)}/{n} | "
                     f"{sum(x[2] for x in rs)}/{n} | {sum(x[3] for x in rs)}/{n} | {np.mean([x[4] for x in rs]):.0f} |")
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
