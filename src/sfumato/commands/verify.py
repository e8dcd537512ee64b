"""``sfumato verify``: check a file's C2PA Content Credentials and rights metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sfumato.commands import one_line_errors

HELP = "Verify a file's C2PA Content Credentials (offline) and show its AI-training opt-out signals."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="image file to verify")
    p.add_argument("--trust-anchor", metavar="CA.pem", default=None,
                   help="PEM root certificate(s) to trust, e.g. the signer's root-ca.pem")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _run(args: argparse.Namespace) -> int:
    """Exit 0 when the manifest is valid, 1 when invalid or untrusted, 3 when there is none."""
    from sfumato.optout.c2pa_sign import verify_file

    res = verify_file(Path(args.file), trust_anchors=Path(args.trust_anchor) if args.trust_anchor else None)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
    else:
        if res.state == "valid":
            trust = "signer TRUSTED" if res.trusted else "signer NOT trusted (no trust anchor given or matched)"
            print(f"{args.file}: valid Content Credentials; {trust}; signed by {res.signer}")
        elif res.state == "untrusted":
            print(f"{args.file}: intact, but the signer ({res.signer}) does not chain to the given trust anchor")
        elif res.state == "invalid":
            print(f"{args.file}: INVALID Content Credentials (file changed after signing or bad signature)")
        else:
            print(f"{args.file}: no C2PA manifest")
        for e in res.errors:
            print(f"  error: {e}")
        for n in res.notes:
            print(f"  note: {n}")
        if res.actions:
            print(f"  actions: {', '.join(res.actions)}")
        if res.training_mining:
            print("  training-mining: " + ", ".join(f"{k}={v}" for k, v in sorted(res.training_mining.items())))
        print(f"  XMP plus:DataMining: {res.xmp_data_mining or 'absent'}")
    return {"valid": 0, "none": 3}.get(res.state, 1)


run = one_line_errors(_run)
