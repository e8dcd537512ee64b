"""``sfumato check``: measure a protected image's protection and what survives real attacks."""

from __future__ import annotations

import argparse
import sys

from sfumato.commands import number, one_line_errors

HELP = ("Check a protected image: latent protection, AI view, independent judges, and what survives "
        "JPEG, resizing, noise, blur, TAE round trips and IMPRESS purification.")


EPILOG = """examples:
  sfumato check out/painting.png --original painting.jpg                 # verdict first, then the figures
  sfumato check out/painting.png --original painting.jpg --report report.html --json report.json
  sfumato check out/painting.png --original painting.jpg --no-views --attacks jpeg-q85-420,resize-x0.5-lanczos

The style judge runs whenever reference paintings are found: --corpus-dir, $SFUMATO_CORPUS_DIR,
'sfumato config set corpus_dir FOLDER', or a corpus/ folder (art128/ or art/<artist>/) beside the models folder.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("protected", nargs="?", metavar="PROTECTED", help="the protected image file")
    p.add_argument("--original", default=None, metavar="ORIG",
                   help="the original image (needed to measure latent protection and quality)")
    p.add_argument("--manifest", default=None, metavar="FILE.json",
                   help="the cloak manifest (default: <stem>.sfumato.json beside PROTECTED, if present)")
    p.add_argument("--attacks", default="default", metavar="SUITE|NAMES",
                   help="'default' (fast representative subset), 'all', or comma-separated attack names")
    p.add_argument("--encoder", action="append", default=None, metavar="SPEC",
                   help="encoder to measure (repeatable): taef2, taesana, diffusers:<id>; default taef2")
    p.add_argument("--report", default=None, metavar="FILE.html", help="write a self-contained HTML report")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="write the report as JSON")
    p.add_argument("--models-dir", default=None, help="folder with model weights (else $SFUMATO_MODELS_DIR)")
    p.add_argument("--corpus-dir", default=None,
                   help="folder with reference paintings for the style judge (art128/ or art/<artist>/; else "
                        "$SFUMATO_CORPUS_DIR, the config's corpus_dir, or a corpus/ folder beside the models folder)")
    p.add_argument("--seed", type=number(int, lo=0, hi=2**32 - 1), default=0,
                   help="seed of the random attacks, 0..2^32-1 (recorded in the report)")
    p.add_argument("--no-judges", action="store_true", help="skip the independent judges")
    p.add_argument("--no-crop-judge", action="store_true",
                   help="skip the crop-level style judge (5 painters, trainer-scale views of images > 256 px)")
    p.add_argument("--views", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the latent protection (and the judges) at every trainer view: buckets of "
                        "512/768/1024 px long side, native size, random crops, the work size; the worst view is "
                        "what a trainer gets by choosing the size (default on; --no-views is faster)")
    p.add_argument("--list-attacks", action="store_true", help="list the available attacks and exit")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.0%}" if pct else f"{v:.1f}"


def _print_views(v: dict) -> None:
    target = v.get("measure") == "target"
    head = f"{'trainer view':18s} {'size':>9s} " + (f"{'toward':>7s} {'cosine':>6s} {'ceiling':>7s}" if target
                                                     else f"{'shift':>7s}")
    print(head)
    for r in v["rows"]:
        size = f"{r['size'][0]}x{r['size'][1]}"
        name = r["name"] + (" (up)" if r.get("upscaled") else "")
        if target:
            line = (f"{name:18s} {size:>9s} {_fmt(r['toward'], True):>7s} "
                    f"{'-' if r['cosine'] is None else format(r['cosine'], '.2f'):>6s} "
                    f"{_fmt(r['ceiling_toward'], True):>7s}")
        else:
            line = f"{name:18s} {size:>9s} {_fmt(r['shift_relative'], True):>7s}"
        for n, j in (r.get("judges") or {}).items():
            line += f"  {n} p({j['artist']}) {j['p_original']:.0%}->{j['p_protected']:.0%}"
        print(line)


def _run(args: argparse.Namespace) -> int:
    if args.list_attacks:
        from sfumato.attacks import ATTACKS, SUITES

        for name, spec in ATTACKS.items():
            tags = [s for s, names in SUITES.items() if name in names]
            print(f"{name:22s} {spec.description}" + (f"  [{', '.join(tags)}]" if tags else ""))
        return 0

    if not args.protected:
        print("sfumato check: give the PROTECTED image file (or --list-attacks)", file=sys.stderr)
        return 2

    from pathlib import Path

    from sfumato.verification.check import check
    from sfumato.verification.report import write_html

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"  {msg} ...", file=sys.stderr)

    report = check(args.protected, original=args.original, manifest=args.manifest, attacks=args.attacks,
                   encoders=tuple(args.encoder or ("taef2",)), models_dir=args.models_dir,
                   corpus_dir=args.corpus_dir, seed=args.seed, judges=not args.no_judges, progress=progress,
                   views=bool(args.views), crop_judge=False if args.no_crop_judge else None)
    if report.verdict:
        v = report.verdict
        mark = {True: "PROTECTED", False: "NOT PROTECTED"}.get(v.get("protected"), "CANNOT TELL")
        print(f"verdict: {mark}: {v['sentence']}")
    lat = next(iter(report.latent.values()), {})
    if report.protection_measure == "target":
        print(f"latent protection: {_fmt(lat.get('relative_reduction'), True)} of the way to target "
              f"'{report.target['style'] if report.target else '?'}'")
    elif report.protection_measure == "shift":
        print(f"latent protection: shift away {_fmt(lat.get('shift_away_relative'), True)} of the clean latent norm")
    if report.quality:
        q = report.quality
        print(f"quality vs original: LPIPS {q['lpips_alex']:.4f}  PSNR {q['psnr']:.2f} dB  SSIM {q['ssim']:.4f}  "
              f"L∞ {q['linf'] * 255:.1f}/255")
    print(f"{'attack':22s} {'usable':>6s} {'PSNR':>6s} {'retained':>8s}  verdict")
    for a in report.attacks:
        print(f"{a.name:22s} {'yes' if a.usable else 'no':>6s} {_fmt(a.quality.get('psnr_vs_protected')):>6s} "
              f"{_fmt(a.retained, True):>8s}  {a.verdict}")
    if report.views:
        _print_views(report.views)
    print(report.summary)
    for n in report.notes:
        print(f"note: {n}", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(report.to_json() + "\n", encoding="utf-8")
        print(f"JSON report: {args.json_out}", file=sys.stderr)
    if args.report:
        write_html(report, args.report)
        print(f"HTML report: {args.report}", file=sys.stderr)
    return 0


run = one_line_errors(_run)
