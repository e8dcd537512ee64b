"""How far must a poison move TAEF2's latent before its AI view shows the target concept, and how far can it?

Issue #3 asks that MobileNetV2 put the AI view (TAEF2 encode→decode) of a poisoned dog photo in a cat class
(top-5). This script measures what that needs, without any optimisation first:

* **latent line**: per photo, the product's anchor choice (the cat photo with the nearest latent, as
  :func:`sfumato.targets.anchors.choose_anchor` picks it), then the latents ``(1 − t)·z_dog + t·z_cat`` decoded and
  judged. A point at ``t`` on that line has relative latent reduction exactly ``t``, so the first ``t`` whose
  AI view is a cat is the reduction a poison must reach *in the right direction*.
* **pixel blend**: ``(1 − t)·dog + t·cat`` judged directly: what a visible, natural change needs.

Then, with ``--optimise N``, the product's poison (:func:`sfumato.protections.poison.poison_array`, default effort) is
run on the first N photos at each LPIPS cap of ``--lpips-caps`` (L∞ 24/255 always): the latent reduction it
reaches and whether its AI view is a cat. A cap of 0.99 lifts the perceptual budget altogether, so the row
is an upper bound for this optimiser at that L∞ cap.

    python benchmarks/poison_ceiling.py
    python benchmarks/poison_ceiling.py --optimise 2 --lpips-caps 0.07 0.99
    python benchmarks/poison_ceiling.py --decoded 1 --decoded-ts 1.0 0.7

``--decoded N``: an objective tried and not adopted, on the first N photos. Instead of the latent, the
*decoded* AI view D(E(x + δ)) is pulled toward the decoded latent-line point ``D(z_t)`` (``--decoded-ts``;
through TAEF2's decoder, a generative-model component; LPIPS ≤ 0.07, L∞ 24/255, ``--decoded-steps`` Adam
steps at ``--decoded-resolution``), beside the plain latent objective at the same settings.

Judge: MobileNetV2 ImageNet int8 TFLite (:class:`sfumato.judges.ConceptJudge`); it never enters a loss.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _common import emit, image_paths
from _common import load_downscaled as load

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))


class DecodedViewObjective:
    """‖D(E(x)) − D(z_t)‖² / ‖D(E(x0)) − D(z_t)‖² with ``z_t = (1 − t)·E(x0) + t·E(anchor)`` (one encoder
    with a decoder): the AI view itself pulled toward the decoded latent-line point."""

    def __init__(self, x0, anchor, enc, t: float) -> None:  # noqa: ANN001
        import torch

        self.size = tuple(x0.shape[-2:])
        self.enc = enc
        with torch.no_grad():
            z0, z1 = enc.encode(x0), enc.encode(anchor)
            self.view_t = enc.decode(z0 + t * (z1 - z0))[..., : self.size[0], : self.size[1]]
            self.d0 = max(float((enc.decode(z0)[..., : self.size[0], : self.size[1]] - self.view_t).norm()), 1e-8)

    def __call__(self, x):  # noqa: ANN001, ANN204
        import torch

        from sfumato.io.tensors import resize

        v = resize(x, self.size).contiguous(memory_format=torch.channels_last)
        d = (self.enc.decode(self.enc.encode(v))[..., : self.size[0], : self.size[1]] - self.view_t).flatten().norm()
        return (d / self.d0) ** 2, 1 - float(d.detach()) / self.d0

    def distances(self, x) -> list[dict[str, float]]:  # noqa: ANN001
        return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(SHARED / "corpus/photos/dog"))
    ap.add_argument("--anchors", default=str(SHARED / "corpus/photos/cat"))
    ap.add_argument("--concept", default="dog")
    ap.add_argument("--target", default="cat")
    ap.add_argument("--side", type=int, default=512, help="long side of the published photo (downscale)")
    ap.add_argument("--ts", type=float, nargs="+", default=[0.2, 0.35, 0.5, 0.65, 0.8, 1.0])
    ap.add_argument("--optimise", type=int, default=0, help="run the poison on the first N photos")
    ap.add_argument("--lpips-caps", type=float, nargs="+", default=[0.07, 0.99])
    ap.add_argument("--decoded", type=int, default=0, help="try the decoded-view objective on the first N photos")
    ap.add_argument("--decoded-ts", type=float, nargs="+", default=[1.0, 0.7])
    ap.add_argument("--decoded-steps", type=int, default=60)
    ap.add_argument("--decoded-resolution", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("SFUMATO_MODELS_DIR", str(SHARED / "models"))
    import torch

    from sfumato.config import Budget, PoisonConfig
    from sfumato.encoders import load_encoder
    from sfumato.encoders.views import ai_view
    from sfumato.io.tensors import resize, to_hwc, to_nchw, work_size
    from sfumato.judges import ConceptJudge
    from sfumato.optimise.perturb import work_view
    from sfumato.protections.poison import aim_at_anchor, poison_array

    photos = image_paths(Path(args.photos))
    anchor_paths = image_paths(Path(args.anchors))
    anchors = [load(p, args.side) for p in anchor_paths]
    judge = ConceptJudge()
    tae = load_encoder("taef2")
    pcfg = PoisonConfig.preset(concept=args.concept, target=args.target)
    res_px = pcfg.effort.resolution  # the poison's work size
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
             f"{torch.get_num_threads()}. Command: `python benchmarks/poison_ceiling.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"Photos: `{args.photos}` ({len(photos)}), anchors: `{args.anchors}` ({len(anchors)}), ≤ {args.side} px; "
             f"encoder TAEF2; judge: MobileNetV2 top-5 in a {args.target} class.", "",
             "| photo | anchor | AI view of t = 0 | latent line t = " + ", ".join(f"{t:g}" for t in args.ts)
             + " | pixel blend t = " + ", ".join(f"{t:g}" for t in args.ts) + " |", "|---|---|---|---|---|"]
    line_hits = np.zeros(len(args.ts), int)
    blend_hits = np.zeros(len(args.ts), int)
    first_t = []
    for p in photos:
        rgb = load(p, args.side)
        x0 = resize(to_nchw(rgb), work_size(*rgb.shape[:2], res_px))
        a, aimed = aim_at_anchor(x0, anchors, [(tae, 1.0)], pcfg, None)
        idx = aimed["index"]
        with torch.no_grad():
            z0, z1 = tae.encode(x0), tae.encode(a)
            h, w = x0.shape[-2:]
            views = [to_hwc(tae.decode(z0)[..., :h, :w].clamp(0, 1))]
            views += [to_hwc(tae.decode((1 - t) * z0 + t * z1)[..., :h, :w].clamp(0, 1)) for t in args.ts]
            blends = [to_hwc(((1 - t) * x0 + t * a).clamp(0, 1)) for t in args.ts]
        hv = judge.top_k_hits(views, args.target)
        hb = judge.top_k_hits(blends, args.target)
        line_hits += hv[1:]
        blend_hits += hb
        first_t.append(next((t for t, v in zip(args.ts, hv[1:], strict=True) if v), float("nan")))
        lines.append(f"| {p.name} | {anchor_paths[idx].name} | {'cat' if hv[0] else '–'} | "
                     + " ".join("✓" if v else "·" for v in hv[1:]) + " | " + " ".join("✓" if v else "·" for v in hb)
                     + " |")
        print(lines[-1], flush=True)
    n = len(photos)
    lines += ["", "| t (= latent reduction along the line) | " + " | ".join(f"{t:g}" for t in args.ts) + " |",
              "|---" * (len(args.ts) + 1) + "|",
              f"| AI view of the latent-line point is a {args.target} (top-5) | "
              + " | ".join(f"{k}/{n}" for k in line_hits) + " |",
              f"| pixel blend is a {args.target} (top-5) | " + " | ".join(f"{k}/{n}" for k in blend_hits) + " |", "",
              f"Median first t on the latent line whose AI view is a {args.target}: {np.nanmedian(first_t):g}."]

    if args.optimise:
        lines += ["", f"Poison (default effort) on the first {args.optimise} photos, L∞ 24/255:", "",
                  "| photo | LPIPS cap | LPIPS-alex (saved file) | latent reduction | AI view "
                  f"{args.target} (top-5) | P({args.target}) on AI view | pixels still {args.concept} (top-5) | s |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in photos[: args.optimise]:
            rgb = load(p, args.side)
            for cap in args.lpips_caps:
                cfg = PoisonConfig(concept=args.concept, target=args.target, seed=args.seed,
                                   budget=Budget(lpips=cap, linf=pcfg.budget.linf))
                t = time.perf_counter()
                r = poison_array(rgb, cfg, anchors, anchor_names=[q.name for q in anchor_paths])
                secs = time.perf_counter() - t
                v = ai_view(r.image, tae)
                lines.append(f"| {p.name} | {cap:g} | {r.achieved['lpips_alex']:.4f} | "
                             f"{r.latent[0]['relative_reduction'] * 100:.1f} % | "
                             f"{'yes' if judge.top_k_hits([v], args.target)[0] else 'no'} | "
                             f"{float(judge.score([v], args.target)[0]):.3f} | "
                             f"{'yes' if judge.top_k_hits([r.image], args.concept)[0] else 'no'} | {secs:.0f} |")
                print(lines[-1], flush=True)
    if args.decoded:
        lines += ["", f"Decoded-view objective vs the latent objective (first {args.decoded} photos, "
                  f"{args.decoded_resolution} px, {args.decoded_steps} Adam steps at lr 0.008, LPIPS ≤ 0.07, L∞ 24/255):", "",
                  "| photo | objective | LPIPS-alex | latent reduction toward the anchor | AI view "
                  f"{args.target} (top-5) | P({args.target}) | s |", "|---|---|---|---|---|---|---|"]
        from sfumato.config import Effort
        from sfumato.optimise.objectives import LatentTargetObjective
        from sfumato.optimise.perturb import perturb_toward

        eff = Effort(steps=args.decoded_steps, resolution=args.decoded_resolution, lr=0.008)
        for p in photos[: args.decoded]:
            rgb = load(p, args.side)
            x0 = work_view(rgb, args.decoded_resolution)
            a, _ = aim_at_anchor(x0, anchors, [(tae, 1.0)], pcfg, None)
            latent_obj = LatentTargetObjective(x0, a, [(tae, 1.0)])
            objs = [("latent (the product's)", latent_obj)]
            objs += [(f"decoded view → D(z_t), t = {t:g}", DecodedViewObjective(x0, a, tae, t)) for t in args.decoded_ts]
            for name, obj in objs:
                t0 = time.perf_counter()
                r = perturb_toward(rgb, x0, obj, budget=Budget(lpips=0.07, linf=24 / 255), effort=eff, alpha=30.0,
                                   seed=args.seed, radial_lpips=True)
                red = latent_obj.distances(resize(to_nchw(r.image), tuple(x0.shape[-2:])))[0]["relative_reduction"]
                v = ai_view(r.image, tae)
                lines.append(f"| {p.name} | {name} | {r.achieved['lpips_alex']:.4f} | {red * 100:.1f} % | "
                             f"{'yes' if judge.top_k_hits([v], args.target)[0] else 'no'} | "
                             f"{float(judge.score([v], args.target)[0]):.3f} | {time.perf_counter() - t0:.0f} |")
                print(lines[-1], flush=True)
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
