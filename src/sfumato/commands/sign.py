"""``sfumato sign``: embed "do not train" rights XMP and sign C2PA Content Credentials."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sfumato.commands import one_line_errors

HELP = ("Embed IPTC 'no AI training' rights metadata and sign C2PA Content Credentials "
        "(training-mining: notAllowed) into copies of image files.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.optout.rights_options import DATA_MINING_VALUES

    p.add_argument("files", nargs="+", metavar="FILE", help="JPEG, PNG, WebP or TIFF files")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--out", metavar="DIR", help="write signed copies into DIR (same file names)")
    where.add_argument("--in-place-copy", action="store_true",
                       help="write NAME.signed.EXT beside each input (the input is never modified)")
    p.add_argument("--keys", metavar="DIR", default=None,
                   help="signing keys folder (default ~/.config/sfumato/keys; create with `sfumato keys init`)")
    p.add_argument("--creator", default=None, help="creator name for dc:creator")
    p.add_argument("--copyright", dest="copyright_notice", default=None, help="copyright notice for dc:rights")
    p.add_argument("--web-statement", default=None, metavar="URL", help="URL of your usage terms")
    p.add_argument("--data-mining", default=None, choices=DATA_MINING_VALUES,
                   help="IPTC PLUS data-mining value (default DMI-PROHIBITED-AIMLTRAINING)")
    p.add_argument("--rights", metavar="FILE", default=None,
                   help="rights config (TOML/JSON; default ~/.config/sfumato/rights.toml when present)")
    p.add_argument("--action", choices=["edited", "created"], default="edited",
                   help="C2PA action: 'edited' (default; the input becomes the parent ingredient) or 'created'")
    p.add_argument("--digital-source-type", default="digitalCreation",
                   help="IPTC digital source type for --action created (default digitalCreation)")
    p.add_argument("--xmp-only", action="store_true", help="embed the rights XMP only, no C2PA signature")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _destination(src: Path, args: argparse.Namespace) -> Path:
    if args.in_place_copy:
        return src.with_name(f"{src.stem}.signed{src.suffix}")
    return Path(args.out) / src.name


def _run(args: argparse.Namespace) -> int:
    from sfumato.optout.rights_options import RightsOptions, load_rights_config
    from sfumato.optout.xmp import mark_file

    rights = load_rights_config(args.rights)
    overrides = {k: getattr(args, k) for k in ("creator", "copyright_notice", "web_statement", "data_mining")
                 if getattr(args, k) is not None}
    if overrides:
        rights = RightsOptions(**{**rights.to_dict(), **overrides})

    jobs = []
    for f in args.files:
        src = Path(f)
        if not src.is_file():
            print(f"error: {src} is not a file", file=sys.stderr)
            return 2
        dst = _destination(src, args)
        if dst.resolve() == src.resolve():
            print(f"error: output {dst} would replace its input; choose another --out folder", file=sys.stderr)
            return 2
        if dst.exists() and not args.overwrite:
            print(f"error: {dst} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
        jobs.append((src, dst))

    if args.xmp_only:
        for src, dst in jobs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            mark_file(src, dst, rights)
            print(f"{dst}: rights XMP embedded (plus:DataMining={rights.data_mining})")
        return 0

    from sfumato.optout.c2pa_sign import sign_file
    from sfumato.optout.keys import load_keys

    keys = load_keys(Path(args.keys) if args.keys else None)
    for src, dst in jobs:
        sign_file(src, dst, keys_dir=keys.dir, rights=rights, action=f"c2pa.{args.action}",
                  digital_source_type=args.digital_source_type)
        print(f"{dst}: rights XMP + C2PA manifest signed by {keys.leaf_cert}")
    print(f"Others can check the signer with: sfumato verify FILE --trust-anchor {keys.root_cert}")
    return 0


run = one_line_errors(_run)
