"""Poison a folder of photos of concept C toward A with the real file API and report the acceptance
figures: share of saved images whose pixels MobileNetV2 still puts in C (top-5), share whose AI view
(TAEF2 decode of the latent) it puts in A (top-5), and LPIPS-alex of every saved file.

    python benchmarks/poison_corpus.py ../shared/corpus/photos/dog --concept dog --target cat \
        --anchors ../shared/corpus/photos/cat -o out/poison-dog [--limit N]

Judge: MobileNetV2 ImageNet int8 TFLite (never in the loss). Encoder: TAEF2. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--concept", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--anchors", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    import sfumato.io as sio
    from sfumato.api import poison_file
    from sfumato.config import PoisonConfig
    from sfumato.io.outputs import manifest_path_for
    from sfumato.judges.scorers import make_scorer
    from sfumato.targets.anchors import load_anchor_folder

    cfg = PoisonConfig.preset(concept=args.concept, target=args.target, seed=args.seed)
    anchors = load_anchor_folder(args.anchors, concept=args.target)
    scorer = make_scorer("mobilenet")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for f in sio.iter_image_paths([args.folder])[: args.limit]:
        man = manifest_path_for(out, f.stem)
        if args.resume and man.exists():
            m = json.loads(man.read_text())
        else:
            m = poison_file(f, out, cfg, anchors, scorer=scorer, force=True, overwrite=True).manifest
        j = m["judged"]
        lat = next(iter(m["latent"].values()))
        rows.append((f.name, m["anchor"]["name"], m["candidate"]["shows_concept"], j["pixels_show_concept"]["after"],
                     j["ai_view_shows_target"]["before"], j["ai_view_shows_target"]["after"], j["ai_view_class_after"],
                     m["achieved"]["lpips_alex"], m["achieved"]["linf"] * 255, lat["relative_reduction"],
                     m["timing_s"]["file_total"]))
        print(f"{f.name}: pixels {args.concept}={rows[-1][3]} ai_view {args.target}={rows[-1][5]} "
              f"lpips={rows[-1][7]:.4f} ({rows[-1][10]:.0f}s)", file=sys.stderr, flush=True)
    n = len(rows)
    print(f"## Poison {args.concept} → {args.target} on `{args.folder}` (anchors `{args.anchors}`), default settings\n")
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; encoder TAEF2; budget LPIPS "
          f"{cfg.budget.lpips}, L∞ {cfg.budget.linf * 255:.0f}/255; {n} images; {time.perf_counter() - t0:.0f} s\n")
    print(f"| image | anchor | candidate | pixels still {args.concept} (top-5) | AI view {args.target} before | "
          f"AI view {args.target} after | AI view class | LPIPS-alex | L∞ | latent reduction | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]:.4f} | {r[8]:.1f} | "
              f"{r[9]:.1%} | {r[10]:.0f} |")
    print(f"\n(a) pixels still {args.concept} (top-5): **{sum(r[3] for r in rows)}/{n} = {sum(r[3] for r in rows) / n:.0%}**")
    print(f"(b) AI view {args.target} (top-5): **{sum(r[5] for r in rows)}/{n} = {sum(r[5] for r in rows) / n:.0%}** "
          f"(before poisoning: {sum(r[4] for r in rows)}/{n})")
    print(f"(c) max LPIPS-alex {max(r[7] for r in rows):.4f} (budget {cfg.budget.lpips})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
