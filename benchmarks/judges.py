"""Held-out accuracy of the de-confounded judges on their fixed splits, per artist, and where they disagree.

    python benchmarks/judges.py --corpus ../shared/corpus --models-dir ../shared/models [--json out.json]

Trains, each on its fixed training split (:mod:`sfumato.judges.splits`, SHA-256 of the file name):

* the whole-image art128 style judge (MobileNetV2 linear probe; ``--tiles`` also reports the 6-view
  variant) and the AlexNet Gram judge, both on ``art128`` (14 painters, 8 hold-out images each);
* the crop-level judge on the ``ace_*`` files (5 painters, 3 hold-out paintings each), reported per
  view size (long side 512, 768, 1024) and averaged over the three views;

then prints per-artist tables and the share of art128 hold-out images on which the two art128 judges'
top-1 differ. Optionally also the old ``corpus/art`` judge, which is confounded by source
(``--confounded``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sfumato.judges.crop import CropStyleJudge
from sfumato.judges.gram import GramStyleJudge
from sfumato.judges.heldout import top1_disagreement
from sfumato.judges.reference import evaluate_holdout
from sfumato.judges.splits import ace_split, art128_split
from sfumato.judges.style import StyleJudge, evaluate_split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--models-dir", type=Path, default=Path("../shared/models"))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--tiles", action="store_true", help="also report the art128 judge with 5 tiles")
    ap.add_argument("--confounded", action="store_true", help="also report the old corpus/art judge")
    ap.add_argument("--skip-ace", action="store_true")
    args = ap.parse_args(argv)
    out: dict = {"command": "python benchmarks/judges.py " + " ".join(sys.argv[1:] if argv is None else argv)}

    tr, ho = art128_split(args.corpus)
    out["art128_split"] = {"train": {a: len(v) for a, v in tr.items()}, "holdout": {a: len(v) for a, v in ho.items()}}
    t = time.time()
    style = StyleJudge.train(tr, models_dir=args.models_dir, tiles=False)
    rep_s, p_s = evaluate_holdout(style, ho, name="art128 whole-image MobileNetV2 judge")
    print(rep_s.table() + f"\n  ({time.time() - t:.0f} s)\n", flush=True)
    out["art128_style"] = rep_s.to_dict()
    if args.tiles:
        t = time.time()
        tiled = StyleJudge.train(tr, models_dir=args.models_dir, tiles=True)
        rep_t, _ = evaluate_holdout(tiled, ho, name="art128 MobileNetV2 judge, whole image + 5 tiles")
        print(rep_t.table() + f"\n  ({time.time() - t:.0f} s)\n", flush=True)
        out["art128_style_tiles"] = rep_t.to_dict()

    t = time.time()
    gram = GramStyleJudge.train(tr, models_dir=args.models_dir)
    rep_g, p_g = evaluate_holdout(gram, ho, name="art128 AlexNet Gram judge")
    print(rep_g.table() + f"\n  ({time.time() - t:.0f} s)\n", flush=True)
    out["art128_gram"] = rep_g.to_dict()
    assert style.artists == gram.artists
    dis = top1_disagreement(p_s, p_g)
    both = float(np.mean((p_s.argmax(1) == p_g.argmax(1)) & (np.array(style.artists)[p_s.argmax(1)]
                                                                == np.array([a for a in ho for _ in ho[a]]))))
    print(f"art128 hold-out: the two judges' top-1 differ on {dis:.3f} of {len(p_s)} images; "
          f"both right on {both:.3f}\n", flush=True)
    out["art128_disagreement"] = {"top1_differ": dis, "both_right": both, "n": len(p_s)}

    if not args.skip_ace:
        t = time.time()
        atr, aho = ace_split(args.corpus)
        out["ace_split"] = {"train": {a: len(v) for a, v in atr.items()},
                            "holdout": {a: [p.name for p in v] for a, v in aho.items()}}
        crop = CropStyleJudge.train(atr, models_dir=args.models_dir)
        paths = [p for a in aho for p in aho[a]]
        views = crop.predict_proba_views(paths)
        out["ace_crop"] = {}
        for side, proba in [*views.items(), ("all", np.mean(list(views.values()), axis=0))]:
            rep, _ = evaluate_holdout(crop, aho, name=f"ace crop judge, view long side {side}", proba=proba)
            print(rep.table(), flush=True)
            out["ace_crop"][str(side)] = rep.to_dict()
        print(f"  ({time.time() - t:.0f} s; {crop.training['n_crops']} training crops)\n", flush=True)

    if args.confounded:
        rep = evaluate_split(args.corpus / "art", models_dir=args.models_dir)
        print("old corpus/art judge (CONFOUNDED BY SOURCE):\n" + rep.format(), flush=True)
        out["confounded_art"] = rep.to_dict()

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
