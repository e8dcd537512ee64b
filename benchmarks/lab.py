"""Mimicry lab benchmark (issue 17): train a small latent generator on protected images and judge what
it learned. Every figure of the lab section of docs/benchmarks.md and README comes from this script.

    # style: clean vs one artist's images protected (made by benchmarks/lab_protect.py)
    OMP_NUM_THREADS=2 python benchmarks/lab.py style --artist vincent_van_gogh \\
        --variants sfumato-default sfumato-slow glaze-same-target --seeds 0 1
    # concept: poison the first 100 dogs (128 px views) toward cat, then train with N = 25/50/100
    # (--setting default-work | default | nightshade, see POISON_SETTINGS; variants <setting>-<N>)
    OMP_NUM_THREADS=1 python benchmarks/lab.py make-poison --n 100 --setting default-work
    OMP_NUM_THREADS=1 python benchmarks/lab.py make-poison --n 25 --setting nightshade
    OMP_NUM_THREADS=1 python benchmarks/lab.py poison-views --settings default-work nightshade
    OMP_NUM_THREADS=2 python benchmarks/lab.py concept --n 25 50 100 --seeds 0 1     # clean + default-work-N
    OMP_NUM_THREADS=2 python benchmarks/lab.py concept --setting nightshade --no-clean --n 25 --seeds 0 1
    OMP_NUM_THREADS=2 python benchmarks/lab.py control --n 100 --seeds 0 1   # 100 real cats labelled dog
    # (concept/control: --holdout 60 keeps the last 60 cats and dogs out of training for the held-out
    #  probe; --concept-size 150 trains on 150 dogs, so N = 25/50/100 is 17/33/67 % of them)
    python benchmarks/lab.py report [--probe]            # markdown tables from the stored runs
    # concept/control --also-guidance 1: each trained model is also sampled without classifier-free
    # guidance (the preset's is 3), stored as runs/lab/<experiment>-g1.jsonl beside its own clean run

Data: ``corpus/art128`` (14 painters, one 128 px pipeline) for style; for concepts ``corpus/pets`` (the
first 240 cats and 150 dogs by hashed name; the last 60 of each held out for the probe) plus an "object"
class (13 teapot, toy-car and vase photos of ``corpus/photos``), all at their 128 px square view (centre
crop, Lanczos). Poison anchors: ``corpus/photos/cat`` (8 DreamBooth cat photos, not among the training
cats). Generator: :class:`sfumato.lab.config.LabConfig` preset ``cpu`` for style and ``cpu-wide`` (width
64, 2000 steps) for concepts (rectified-flow U-Net on 16x16x32 TAEF2 latents). Judges: art128 MobileNetV2 probe and AlexNet-Gram judge (trained
on the art128 training split only) for style; for concepts a MobileNetV2 linear probe on the AI views of
held-out cats and dogs the generator never sees (first reader) and the ImageNet MobileNetV2 concept judge.
No judge enters a loss, a target or an anchor choice.

Each (experiment, variant, seed) run is stored as one JSON line in ``runs/lab/<experiment>.jsonl`` (its
samples as ``.npz``) and skipped when present, so runs resume and can be spread over sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SFUMATO_SHARED_DIR", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
MODELS = Path(os.environ.get("SFUMATO_MODELS_DIR", SHARED / "models"))
OUT = ROOT / "runs" / "lab"
OBJECTS = ("teapot", "toy_car", "vase")  # the "other concepts" class: 13 object photos (corpus/photos)
CONCEPT_CLASSES = {"cat": CORPUS / "pets" / "cat", "dog": CORPUS / "pets" / "dog", "object": OUT / "objects"}


def link_objects() -> None:
    """``runs/lab/objects``: links to the object photos of ``corpus/photos`` (not its cat and dog photos)."""
    for o in OBJECTS:
        for f in sorted((CORPUS / "photos" / o).iterdir()):
            link = OUT / "objects" / f"{o}-{f.name}"
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f)


def log(s: str) -> None:
    print(s, flush=True)


def stored(name: str) -> list[dict]:
    f = OUT / f"{name}.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def store(name: str, run, readers: list[dict] | None = None) -> None:  # noqa: ANN001
    """Append ``run`` to ``runs/lab/<name>.jsonl``; a run sampled at another guidance than the preset's
    (``--also-guidance``) goes to ``<name>-g<guidance>.jsonl``, beside the clean run of the same guidance."""
    name += run.guidance_tag
    OUT.mkdir(parents=True, exist_ok=True)
    d = run.to_dict()
    if readers:
        d["readers"] = readers  # names and descriptions (the held-out probe's accuracy)
    if run.samples is not None:
        npz = OUT / "samples" / f"{name}.{run.variant}.seed{run.seed}.npz"
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(npz, samples=run.samples)
        d["samples"] = str(npz.relative_to(OUT))
    with (OUT / f"{name}.jsonl").open("a") as f:
        f.write(json.dumps(d) + "\n")


def lab_config(args: argparse.Namespace):  # noqa: ANN201
    """The ``--preset`` of :data:`sfumato.lab.config.LAB_PRESETS`, with ``--steps`` when given."""
    from sfumato.lab.config import LabConfig

    return LabConfig.preset(args.preset, **({"train_steps": args.steps} if args.steps else {}))


def concept_name(args: argparse.Namespace) -> str:
    """The run file of a concept design: preset, held-out files and concept size are part of its name."""
    k = f"-k{args.concept_size}" if args.concept_size else ""
    return f"concept-dog-cat-{args.preset}" + (f"-h{args.holdout}{k}" if args.holdout or k else "")


def style(args: argparse.Namespace) -> None:
    from sfumato.lab.style import style_lab

    cfg = lab_config(args)
    name = f"style-{args.artist}-{args.preset}"
    done = {(r["variant"], r["seed"]) for r in stored(name)}
    folder = OUT / "protect" / "images" / args.artist
    for seed in args.seeds:
        for variant in ["clean", *args.variants]:
            if (variant, seed) in done:
                continue
            res = style_lab(CORPUS / "art128", artist=args.artist, config=cfg, seeds=[seed], corpus_dir=CORPUS,
                            models_dir=MODELS, cache_dir=OUT / "cache", log=log,
                            protected={} if variant == "clean" else {variant: folder}, include_clean=variant == "clean")
            for run in res.runs:
                store(name, run)
            log(json.dumps(res.summary))


#: ``make-poison --setting``: how the lab's poisons are made (folder ``runs/lab/poison/dog-cat-<setting>``).
#: ``default-work``: today's ``default`` poison preset (aligned anchor, 80 signed steps) with its steps at the
#: 128 px view the lab trains on instead of sampled 512-1024 px trainer views (a 128 px file is all this
#: trainer ever sees, and a step there costs a tenth). ``default``: the preset exactly as shipped (trainer
#: views; about 100 s per 128 px dog on one core). ``nightshade``: the Nightshade baseline (500 signed
#: steps decaying linearly) aimed at the same aligned anchor, at the same view, calibrated to the same
#: budget (LPIPS 0.07, L-inf 24/255). The poisons of the first lab run (2026-12-04, folder ``dog-cat``,
#: variants ``poison-N``) were made by that day's preset: ``git checkout 538e430`` and ``make-poison``.
#: ``default-work-low``: the same at ``--intensity low`` (LPIPS 0.05); ``default-work-linf12`` / ``-linf8``: the
#: same at an L-inf cap of 12/255 or 8/255 (its signed step scaled with it): the stealth against effect curve.
POISON_SETTINGS = {"default-work": {"views": "work"}, "default": {},
                   "nightshade": {"views": "work", "method": "nightshade"},
                   "default-work-low": {"views": "work", "intensity": "low"},
                   "default-work-linf12": {"views": "work", "linf_255": 12},
                   "default-work-linf8": {"views": "work", "linf_255": 8},
                   "default-work-masked": {"views": "work", "masking": True},
                   "default-work-coarse": {"views": "work", "perturbation_scale": 0.5}}


def poison_folder(setting: str) -> Path:
    return OUT / "poison" / f"dog-cat-{setting}"


def make_poison(args: argparse.Namespace) -> None:
    from sfumato.lab.concept import poison_concept
    from sfumato.lab.data import images_in

    poison_concept(images_in(CONCEPT_CLASSES["dog"]), poison_folder(args.setting), concept="dog", target="cat",
                   anchors=CORPUS / "photos" / "cat", n=max(args.n), seed=0, models_dir=MODELS, log=log,
                   reverse=args.reverse,
                   **POISON_SETTINGS[args.setting])


def poison_views(args: argparse.Namespace) -> None:
    """What the poisons themselves look like at the lab's 128 px trainer view, before any training: their
    pixels (stealth: still judged dog by the ImageNet concept judge) and their AI views (TAEF2 round trip,
    read by the held-out probe and the ImageNet judge: judged cat?), next to the same dogs clean. Also
    the saved LPIPS-alex and L-inf from each poison's record. Readers only read; none chose an anchor."""
    from sfumato.encoders import load_encoder
    from sfumato.lab.concept import poison_order
    from sfumato.lab.config import LabConfig
    from sfumato.lab.data import images_in, square_view
    from sfumato.lab.readers import ai_views, concept_reader, heldout_probe_reader

    if args.holdout < 4:
        raise SystemExit("poison-views: --holdout must be at least 4 (the probe trains on held-out dogs and cats)")
    cfg = LabConfig.preset(args.preset)
    enc = load_encoder(cfg.encoder, models_dir=MODELS)
    order = {c: poison_order(images_in(CONCEPT_CLASSES[c])) for c in ("dog", "cat")}
    probe = heldout_probe_reader({c: o[-args.holdout:] for c, o in order.items()}, encoder=enc, size=cfg.size,
                                 models_dir=MODELS)
    judge = concept_reader(models_dir=MODELS)
    log(f"- `{probe.name}`: {probe.description}\n- `{judge.name}`: {judge.description}")
    dogs = order["dog"][: max(args.n)]
    rows = []
    for setting in args.settings:
        folder = poison_folder(setting)
        made = [p for p in dogs if (folder / f"{p.stem}.png").exists()]
        if not made:
            log(f"{setting}: no poisons in {folder} yet (make-poison --setting {setting}); skipped")
            continue
        if len(made) < len(dogs):
            log(f"{setting}: {len(made)} of {len(dogs)} poisons made; its clean row covers the same {len(made)} dogs")
        pngs = [folder / f"{p.stem}.png" for p in made]
        recs = [json.loads(q.with_suffix(".json").read_text())["saved_quality"] for q in pngs]
        rows.append((f"clean ({setting}'s dogs)", [square_view(p, cfg.size) for p in made],
                     ai_views(made, enc, cfg.size), None))
        rows.append((setting, [square_view(q, cfg.size) for q in pngs], ai_views(pngs, enc, cfg.size), recs))
    towards: dict[str, str] = {}
    if args.toward:
        towards = poison_toward(dogs, [s for s in args.settings if (poison_folder(s)).is_dir()], cfg.size)
    ci, di = probe.classes.index("cat"), judge.classes.index("dog")
    log(f"\n| dogs ({cfg.size} px views) | n | pixels judged dog (ImageNet) | mean p(dog), pixels | AI view judged cat "
        "(held-out probe) | mean p(cat), AI view (probe) | AI view judged cat (ImageNet) | AI view judged dog "
        "(ImageNet) | LPIPS-alex max | L-inf max |" + (" toward the anchor: mean [min-max] |" if towards else ""))
    log("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if towards else ""))
    for name, px, ai, recs in rows:
        pj, pa, pi = judge.proba(px), probe.proba(ai), judge.proba(ai)
        lab_px, lab_ai = judge.labels(pj), judge.labels(pi)
        n = len(px)
        q = (f"{max(r['lpips_alex'] for r in recs):.4f} | {255 * max(r['linf'] for r in recs):.0f}/255" if recs
             else "– | –")
        if name in towards:
            q += f" | {towards[name]}"
        elif towards:
            q += " | –"
        log(f"| {name} | {n} | {100 * sum(x == 'dog' for x in lab_px) / n:.0f} % | {pj[:, di].mean():.3f} | "
            f"{100 * float((pa.argmax(1) == ci).mean()):.0f} % | {pa[:, ci].mean():.3f} | "
            f"{100 * sum(x == 'cat' for x in lab_ai) / n:.0f} % | {100 * sum(x == 'dog' for x in lab_ai) / n:.0f} % | "
            f"{q} |")


def poison_toward(dogs: list[Path], settings: list[str], size: int) -> dict[str, str]:
    """``poison-views --toward``: for each dog with a poison of every setting, the anchor the poison preset
    aims at (searched again: deterministic, and checked against the record), then each poison's share of
    the way from the clean latent to that anchor's latent at the ``size`` px view, ``1 - |E(p) - E(a)| /
    |E(x) - E(a)|`` (TAEF2). Same dogs and same anchors for every setting: a same-target comparison."""
    import torch

    from sfumato.config import PoisonConfig
    from sfumato.encoders.cache import load_encoders
    from sfumato.lab.data import square_view
    from sfumato.protections.device import work_view_on
    from sfumato.protections.poison import aim_at_anchor
    from sfumato.targets.anchors import load_anchor_folder

    pcfg = PoisonConfig.preset(concept="dog", target="cat", seed=0)
    encs = load_encoders(pcfg, models_dir=MODELS)
    enc = encs[0][0]
    anchors = load_anchor_folder(CORPUS / "photos" / "cat", concept="cat")
    cpu = torch.device("cpu")
    both = [d for d in dogs if all((poison_folder(s) / f"{d.stem}.png").exists() for s in settings)]
    shares: dict[str, list[float]] = {s: [] for s in settings}
    for d in both:
        x0 = work_view_on(square_view(d, size), pcfg.effort.resolution, cpu)
        a_img, entry = aim_at_anchor(x0, anchors.images, encs, pcfg, anchors.names)
        with torch.no_grad():
            z0, za = enc.encode(x0), enc.encode(a_img)
            for s in settings:
                rec = json.loads((poison_folder(s) / f"{d.stem}.json").read_text())
                if rec.get("anchor", {}).get("name") != entry["name"]:
                    raise SystemExit(f"{s}/{d.stem}: the record's anchor {rec.get('anchor', {}).get('name')} is not "
                                     f"the one the preset picks now ({entry['name']})")
                zp = enc.encode(work_view_on(square_view(poison_folder(s) / f"{d.stem}.png", size),
                                             pcfg.effort.resolution, cpu))
                shares[s].append(1 - float((zp - za).norm() / (z0 - za).norm()))
    log(f"toward: {len(both)} dogs with a poison of every setting ({', '.join(settings)})")
    return {s: f"{np.mean(v):.3f} [{min(v):.2f}-{max(v):.2f}]" for s, v in shares.items() if v}


def concept(args: argparse.Namespace) -> None:
    from sfumato.lab.concept import concept_lab

    link_objects()
    cfg = lab_config(args)
    name = concept_name(args)
    label = args.setting
    done = {(r["variant"], r["seed"]) for r in stored(name)}
    for seed in args.seeds:
        for n in [0, *args.n] if args.clean else args.n:
            variant = "clean" if n == 0 else f"{label}-{n}"
            if (variant, seed) in done:
                continue
            res = concept_lab({k: str(v) for k, v in CONCEPT_CLASSES.items()}, concept="dog", target="cat",
                              poisoned=poison_folder(args.setting), n_poison=[n] if n else [], config=cfg,
                              seeds=[seed], models_dir=MODELS, cache_dir=OUT / "cache", log=log,
                              include_clean=n == 0, holdout=args.holdout, concept_size=args.concept_size,
                              label=label, guidances=args.also_guidance)
            for run in res.runs:
                store(name, run, res.readers)
            log(json.dumps(res.summary))


def concept_probe_tables(rows: list[dict], runs: list) -> None:  # noqa: ANN001
    """Add an ``own-probe`` table to each concept run: a MobileNetV2 linear probe trained on the lab's own
    *clean* training images of every class (cat, dog, painting), reading the stored samples. A second
    reader next to the ImageNet judge, whose cats are mostly called dogs at 128 px (see the clean row)."""
    from sfumato.lab.data import class_folders
    from sfumato.lab.experiment import class_table
    from sfumato.lab.readers import style_readers

    files = class_folders({k: str(v) for k, v in CONCEPT_CLASSES.items()})
    reader = style_readers(list(files), corpus_dir=None, models_dir=MODELS, cache_dir=None, files=files)[0]
    for d, run in zip(rows, runs, strict=True):
        if not d.get("samples"):
            continue
        s = np.load(OUT / d["samples"])["samples"]
        imgs = [a.astype(np.float32) / 255 for a in s.reshape(-1, *s.shape[2:])]
        labels = np.repeat(np.arange(s.shape[0]), s.shape[1])
        run.tables["own-probe"] = class_table(reader, imgs, labels, list(run.counts))


def control(args: argparse.Namespace) -> None:
    """Positive control: the first N dog files replaced by N real cat photos (labelled dog), the most a
    poison could achieve; tells whether the lab can see a successful dog -> cat poison at all."""
    from sfumato.lab.concept import concept_lab, poison_order
    from sfumato.lab.data import images_in

    folder = OUT / "control" / "dog-cat"
    folder.mkdir(parents=True, exist_ok=True)
    dogs, cats = poison_order(images_in(CONCEPT_CLASSES["dog"])), poison_order(images_in(CONCEPT_CLASSES["cat"]))
    for d, c in zip(dogs[: max(args.n)], cats[: max(args.n)], strict=True):
        link = folder / f"{d.stem}{c.suffix}"
        if not link.exists():
            link.symlink_to(c)
    link_objects()
    cfg = lab_config(args)
    name = concept_name(args)
    done = {(r["variant"], r["seed"]) for r in stored(name)}
    for seed in args.seeds:
        for n in args.n:
            if (f"control-{n}", seed) in done:
                continue
            res = concept_lab({k: str(v) for k, v in CONCEPT_CLASSES.items()}, concept="dog", target="cat",
                              poisoned=folder, n_poison=[n], config=cfg, seeds=[seed], models_dir=MODELS,
                              cache_dir=OUT / "cache", log=log, include_clean=False, label="control",
                              holdout=args.holdout, concept_size=args.concept_size, guidances=args.also_guidance)
            for run in res.runs:
                store(name, run, res.readers)
            log(json.dumps(res.summary))


def report(args: argparse.Namespace) -> None:
    from sfumato.lab.experiment import LabRun
    from sfumato.lab.result import concept_summary, style_summary
    from sfumato.lab.tables import concept_markdown, style_markdown

    for f in sorted(OUT.glob("*.jsonl")):
        rows = stored(f.stem)
        runs = [LabRun.from_dict(d) for d in rows]
        if f.stem.startswith("style-"):
            artist = f.stem.split("-")[1]
            readers = list(runs[0].tables)
            print(style_markdown(style_summary(runs, artist=artist, readers=readers), artist=artist, source=f.stem))
        elif f.stem.startswith("concept-"):
            described = {r["name"]: r["description"] for d in rows for r in d.get("readers", [])}
            for r, text in sorted(described.items()):
                print(f"- `{r}` ({f.stem}): {text}")
            if args.probe:
                concept_probe_tables(rows, runs)
            for reader in runs[0].tables:
                print(concept_markdown(concept_summary(runs, concept="dog", target="cat", reader=reader),
                                       concept="dog", target="cat", source=f"{f.stem} — judge `{reader}`"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("style")
    s.add_argument("--artist", default="vincent_van_gogh")
    s.add_argument("--variants", nargs="*", default=["sfumato-default"])
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    s.add_argument("--preset", default="cpu")
    s.add_argument("--steps", type=int, default=None)
    m = sub.add_parser("make-poison")
    m.add_argument("--n", nargs="+", type=int, default=[100])
    m.add_argument("--setting", choices=list(POISON_SETTINGS), default="default-work")
    m.add_argument("--reverse", action="store_true", help="work from the last of the first N files backwards")
    c = sub.add_parser("concept")
    c.add_argument("--n", nargs="*", type=int, default=[25, 50, 100])
    c.add_argument("--setting", choices=list(POISON_SETTINGS), default="default-work",
                   help="which poisons (make-poison --setting); variants are named <setting>-<N>")
    c.add_argument("--no-clean", dest="clean", action="store_false", help="skip the clean run")
    c.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    c.add_argument("--preset", default="cpu-wide")
    c.add_argument("--steps", type=int, default=None)
    c.add_argument("--holdout", type=int, default=60, help="cats and dogs held out for the probe reader")
    c.add_argument("--concept-size", type=int, default=150, help="dogs trained on (0: all)")
    c.add_argument("--also-guidance", nargs="*", type=float, default=[],
                   help="also sample each trained model at these classifier-free guidance scales (1 = none); "
                        "stored in runs/lab/<experiment>-g<scale>.jsonl")
    k = sub.add_parser("control")
    k.add_argument("--n", nargs="+", type=int, default=[100])
    k.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    k.add_argument("--preset", default="cpu-wide")
    k.add_argument("--steps", type=int, default=None)
    k.add_argument("--holdout", type=int, default=60, help="cats and dogs held out for the probe reader")
    k.add_argument("--concept-size", type=int, default=150, help="dogs trained on (0: all)")
    k.add_argument("--also-guidance", nargs="*", type=float, default=[],
                   help="also sample each trained model at these classifier-free guidance scales (1 = none)")
    v = sub.add_parser("poison-views")
    v.add_argument("--settings", nargs="+", choices=list(POISON_SETTINGS), default=["default-work", "nightshade"])
    v.add_argument("--n", nargs="+", type=int, default=[100])
    v.add_argument("--preset", default="cpu-wide")
    v.add_argument("--holdout", type=int, default=60)
    v.add_argument("--toward", action="store_true",
                   help="also each poison's share of the way to its anchor's TAEF2 latent (searches the anchor again)")
    r = sub.add_parser("report")
    r.add_argument("--probe", action="store_true",
                   help="concept runs: also read the stored samples with a probe trained on the clean classes")
    args = ap.parse_args(argv)
    if args.cmd in ("concept", "make-poison", "poison-views", "control") and any(n <= 0 for n in args.n):
        ap.error("--n takes positive counts of poisoned files (the clean run is on unless --no-clean)")
    if args.cmd == "concept" and not args.clean and not args.n:
        ap.error("concept --no-clean needs --n: nothing to train")
    if getattr(args, "concept_size", None) == 0:
        args.concept_size = None
    {"style": style, "make-poison": make_poison, "poison-views": poison_views, "concept": concept, "control": control,
     "report": report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
