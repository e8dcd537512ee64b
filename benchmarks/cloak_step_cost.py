"""Where the default cloak's time goes at 1024², and what the step-cost levers cost in protection,
side by side in one run (issue 23's speed clause: a 1024×1024 artwork in ≤ 120 s on 2 cores).

    SFUMATO_MODELS_DIR=../shared/models OMP_NUM_THREADS=2 python benchmarks/cloak_step_cost.py \\
        [--size 1024] [--variants stride8 tiles tiles64 lpips-tiles] [--rounds 1] [--measure]

Variants of ``CloakConfig.preset()`` (same target, budget and seed; only the optimisation's effort or
budget bookkeeping changes):

* ``stride8``: trainer-view crops anywhere on the 8 px latent grid (``Effort.view_stride=8``): a step is
  one 256² encoder pass with its gradient plus two gradient-free ones (the crop's clean and target latents);
* ``tiles``: 256 px tiles per view size, visited in shuffled cycles (``view_stride=256``); a tile's
  gradient-free latents are encoded once and reused (:mod:`sfumato.optimise.view_sampling`);
* ``tiles64``: the same with 64 steps instead of 80;
* ``lpips-tiles``: ``tiles`` with the in-loop LPIPS penalty measured on round-robin regions of at most
  300 000 px instead of the whole 1024² file (:func:`sfumato.optimise.lpips_views.lpips_regions`), each step
  one region: the LPIPS forward and backward passes shrink fourfold;
* ``tiles-worst``: ``tiles`` with half the steps on the view size that has moved least
  (``Effort.view_weighting="worst"``, :mod:`sfumato.optimise.view_sampling`);
* ``lpips-every2``: ``tiles`` with the in-loop LPIPS penalty on every other step, at twice its weight
  (``LpipsBudget.every=2``): half the whole-file LPIPS passes.

Variants run in turn, in rotated order each round, after every model and cache is warmed on a 128 px
image. Per run: seconds (target, optimise, calibrate), the relative latent reduction at the work view
(the manifest's figure), the saved file's LPIPS-alex and L∞, and with ``--measure`` the meter's latent
``toward`` at every trainer view and the worst (:func:`sfumato.verification.views.measure_views`).
Image: the held-out Van Gogh of ``benchmarks/speed_vs_glaze.py``, centre square, Lanczos to ``--size``².
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, host_probe  # noqa: E402
from speed_vs_glaze import DEFAULT_IMAGE, SHARED, square  # noqa: E402

VARIANTS = {"stride8": ({"view_stride": 8}, None), "tiles": ({"view_stride": 256}, None),
            "tiles64": ({"view_stride": 256, "steps": 64}, None),
            "lpips-tiles": ({"view_stride": 256}, 300_000),
            "tiles-worst": ({"view_stride": 256, "view_weighting": "worst"}, None),
            "lpips-every2": ({"view_stride": 256}, None)}
LPIPS_EVERY = {"lpips-every2": 2}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--image", default=None)
    ap.add_argument("--variants", nargs="+", default=["stride8", "tiles"], choices=list(VARIANTS))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--measure", action="store_true", help="also the latent toward at every trainer view")
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))

    import torch

    import sfumato.optimise.perturb as perturb
    from sfumato.config import CloakConfig
    from sfumato.encoders import load_encoder
    from sfumato.metrics.lpips import load_lpips
    from sfumato.optimise.budgets import LpipsBudget
    from sfumato.optimise.lpips_views import lpips_regions
    from sfumato.protections.cloak import cloak_array

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    src = Path(args.image) if args.image else SHARED / "corpus/art/vincent_van_gogh" / DEFAULT_IMAGE
    rgb = square(src, args.size)
    cloak_array(square(src, 128), CloakConfig.preset(quality="fast"))  # warm models and caches: not timed
    probe = host_probe()

    rows = []
    for r in range(args.rounds):
        order = args.variants[r % len(args.variants):] + args.variants[: r % len(args.variants)]
        for name in order:
            effort, region_px = VARIANTS[name]
            # the in-loop LPIPS regions (the product's default when region_px is None)
            perturb.lpips_regions = (functools.partial(lpips_regions, max_pixels=region_px) if region_px
                                     else lpips_regions)
            perturb.LpipsBudget = functools.partial(LpipsBudget, every=LPIPS_EVERY.get(name, 1))
            base = CloakConfig.preset()
            cfg = replace(base, effort=replace(base.effort, **effort))
            t = time.perf_counter()
            res = cloak_array(rgb, cfg, keep_target_image=args.measure)
            secs = time.perf_counter() - t
            perturb.lpips_regions = lpips_regions
            perturb.LpipsBudget = LpipsBudget
            row = {"variant": name, "round": r, "seconds": secs, "timing": res.timing_s, "steps": res.steps_run,
                   "reduction": res.latent[0]["relative_reduction"], "lpips": res.achieved["lpips_alex"],
                   "linf": res.achieved["linf"]}
            if args.measure:
                from sfumato.attacks.trainer_views import trainer_views
                from sfumato.verification.views import measure_views, worst_views

                views = trainer_views(*rgb.shape[:2], work_size=tuple(res.target["work_size"]), seed=0)
                lat = measure_views(rgb, res.image, res.target_image, load_encoder("taef2"),
                                    {"lpips": cfg.budget.lpips, "linf": cfg.budget.linf}, views,
                                    lpips=load_lpips("alex"), ceiling=False)
                row["views"] = {v["name"]: v["toward"] for v in lat}
                row["worst"] = worst_views(lat)["view"]
            rows.append(row)
            print(f"{name} (round {r}): {secs:.1f} s", file=sys.stderr, flush=True)

    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (CPU, fp32), threads "
             f"{torch.get_num_threads()}. Command: `python benchmarks/cloak_step_cost.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "", probe + "; again after the runs: "
             + host_probe().split(" = ")[1], "",
             f"Image: `{src.name}`, centre square, {args.size}×{args.size}; `CloakConfig.preset()` (default), "
             "budget LPIPS-alex ≤ 0.05, L∞ ≤ 24/255 on the saved 8-bit file.", "",
             "| variant | round | steps | seconds | target / optimise / calibrate (s) | s per step | "
             "work-view reduction | LPIPS-alex | L∞ ×255 |" + (" toward per view | worst view |" if args.measure else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if args.measure else "")]
    for row in rows:
        tm = row["timing"]
        line = (f"| {row['variant']} | {row['round']} | {row['steps']} | {row['seconds']:.1f} | {tm['target']:.1f} / "
                f"{tm['optimise']:.1f} / {tm['calibrate']:.1f} | {tm['optimise'] / row['steps']:.2f} | "
                f"{row['reduction']:.1%} | {row['lpips']:.4f} | {row['linf'] * 255:.1f} |")
        if args.measure:
            line += (" " + " · ".join(f"{k} {v:.3f}" for k, v in row["views"].items())
                     + f" | {row['worst']['name']} ({row['worst']['toward']:.3f}) |")
        lines.append(line)
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
