"""``sfumato keys``: manage the local certificate chain used to sign Content Credentials."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfumato.commands import number, one_line_errors

HELP = "Create or show the local signing keys (root CA + ES256 signer) for `sfumato sign`."


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create a root CA and a C2PA signer certificate")
    init.add_argument("--dir", default=None, help="keys folder (default ~/.config/sfumato/keys)")
    init.add_argument("--name", default="Sfumato local signer", help="signer name shown in Content Credentials")
    init.add_argument("--org", default=None, help="organisation name in the certificates")
    init.add_argument("--email", default=None, help="e-mail address in the signer certificate")
    init.add_argument("--days", type=number(int, lo=1, hi=36500), default=3650, help="validity in days (default 3650)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing chain")
    show = sub.add_parser("show", help="print where the keys are and who they name")
    show.add_argument("--dir", default=None, help="keys folder (default ~/.config/sfumato/keys)")


def _print_block(title: str, rows: list[tuple[str, object]]) -> None:
    print(title)
    for label, value in rows:
        print(f"  {label}: {value}")


def _run(args: argparse.Namespace) -> int:
    from sfumato.optout.keys import init_keys, load_keys

    directory = Path(args.dir) if args.dir else None
    if args.keys_command == "init":
        paths = init_keys(directory, common_name=args.name, organization=args.org, email=args.email,
                          days=args.days, overwrite=args.overwrite)
        _print_block(f"created signing chain in {paths.dir}", [
            ("signer certificate", paths.leaf_cert),
            ("signer key (keep private, mode 0600)", paths.leaf_key),
            ("root CA to share with people who verify your files", paths.root_cert),
            ("root CA key (keep private, mode 0600)", paths.root_key),
        ])
        return 0
    from cryptography import x509

    paths = load_keys(directory)
    leaf = x509.load_pem_x509_certificate(paths.leaf_cert.read_bytes())
    _print_block(f"keys folder: {paths.dir}", [
        ("signer", leaf.subject.rfc4514_string()),
        ("issuer", leaf.issuer.rfc4514_string()),
        ("valid until", leaf.not_valid_after_utc.isoformat()),
        ("root CA", paths.root_cert),
    ])
    return 0


run = one_line_errors(_run)
