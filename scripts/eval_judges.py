"""Evaluate Sfumato's independent judges on the shared corpus and print what they get right.

* Style judge: logistic regression on MobileNetV2 embeddings, trained and tested on a stratified split
  of ``<corpus>/art/<artist>/`` (default 30 % held out, seed 0), plus the spread over further seeds.
* Concept judge: MobileNetV2 ImageNet classes grouped into concepts, on ``<corpus>/photos/<label>/``.

Usage: ``python scripts/eval_judges.py [--shared ../shared] [--seed 0] [--test-size 0.3] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# photo folder -> concept expected for it
PHOTO_CONCEPTS = {"dog": "dog", "cat": "cat", "teapot": "teapot", "toy_car": "car", "vase": "vase"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path,
                    default=Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared")),
                    help="folder with models/ and corpus/ (default ../shared or $SFUMATO_SHARED_DIR)")
    ap.add_argument("--variant", default="quant", help="MobileNetV2 variant: quant (default) or tf2_ptq")
    ap.add_argument("--test-size", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0, help="split seed of the headline result")
    ap.add_argument("--extra-seeds", type=int, default=4, help="further split seeds for the spread")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the style judge")
    ap.add_argument("--no-tiles", action="store_true", help="style judge on the whole image only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from sfumato.judges import ConceptJudge, evaluate_splits, load_mobilenet
    from sfumato.judges.mobilenet import CENTRAL_FRACTION, list_images

    models_dir, corpus = args.shared / "models", args.shared / "corpus"
    model = load_mobilenet(models_dir=models_dir, variant=args.variant)
    print(f"embedding/classifier model: {model.model_path.name} (variant {model.variant!r}, "
          f"SHA-256 {model.weights_sha256[:16]}...), LiteRT int8, {model.num_threads} threads")
    out: dict = {"model": model.model_path.name, "sha256": model.weights_sha256}

    # ---- style judge ------------------------------------------------------------------------------
    art = corpus / "art"
    counts = {p.name: len(list_images(p)) for p in sorted(art.iterdir()) if p.is_dir()}
    print(f"\n== style judge: data {art} ({sum(counts.values())} paintings: "
          + ", ".join(f"{a} {n}" for a, n in counts.items()) + ")")
    t0 = time.perf_counter()
    seeds = [args.seed] + [args.seed + i for i in range(1, args.extra_seeds + 1)]
    reports = evaluate_splits(art, test_size=args.test_size, seeds=seeds, C=args.C,
                              tiles=not args.no_tiles, variant=args.variant, models_dir=models_dir)
    rep = reports[0]
    print(rep.format())
    for name, t, p in rep.misclassified:
        print(f"  wrong: {Path(name).name}: {t} -> {p}")
    accs = [r.accuracy for r in reports]
    print(f"accuracy over split seeds {seeds}: " + ", ".join(f"{a:.3f}" for a in accs)
          + f"; mean {np.mean(accs):.3f}, min {np.min(accs):.3f}  ({time.perf_counter() - t0:.1f} s)")
    out["style"] = {"headline": rep.to_dict(), "seeds": seeds, "accuracies": accs}

    # ---- concept judge ----------------------------------------------------------------------------
    judge = ConceptJudge(models_dir=models_dir, model=model)
    print(f"\n== concept judge: {len(judge.concepts)} concepts from sfumato/data/concepts.json; "
          f"data {corpus / 'photos'}; centre crop {CENTRAL_FRACTION} of the shorter side -> 224 px")
    out["concept"] = {}
    for folder, concept in PHOTO_CONCEPTS.items():
        files = list_images(corpus / "photos" / folder)
        probs = judge.probabilities(files)
        scores = judge.scores(files, probs=probs)
        col = judge.concepts.index(concept)
        top3 = np.argsort(-probs, axis=1)[:, :3]
        hits = judge.top_k_hits(files, concept, k=5, probs=probs)
        labels = judge.classify(files, probs=probs)
        correct = [lab == concept for lab in labels]
        print(f"-- photos/{folder} (expected concept {concept!r}): classify {sum(correct)}/{len(files)}, "
              f"top-5 hit {int(hits.sum())}/{len(files)}")
        for i, f in enumerate(files):
            top = ", ".join(f"{judge.model.labels[j].split(',')[0]} {probs[i, j]:.2f}" for j in top3[i])
            print(f"   {f.name:16s} {concept}={scores[i, col]:.2f} -> {labels[i]:12s} "
                  f"{'ok ' if correct[i] else 'XX '} top-3: {top}")
        out["concept"][folder] = {"concept": concept, "classify_correct": int(sum(correct)),
                                  "top5_hits": int(hits.sum()), "n": len(files)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
