"""``sfumato`` command line: a thin shell over the Python API.

Each sub-command lives in ``sfumato.commands.<name>`` and exposes ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; modules keep heavy imports inside ``run`` so ``sfumato --help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module
from typing import NoReturn

from sfumato._version import __version__

COMMANDS = {
    "cloak": "cloak",
    "poison": "poison",
    "protect": "protect",
    "check": "check",
    "serve": "serve",
    "sign": "sign",
    "verify": "verify",
    "keys": "keys",
    "optout-site": "optout_site",
    "lab": "lab",
    "config": "config",
}

EPILOG = """examples:
  sfumato config set models_dir ~/sfumato/models   # once: where the model weights are
  sfumato cloak painting.jpg --preview             # in seconds: what a model sees, and the verdict
  sfumato cloak painting.jpg -o protected/         # the protected file, its manifest and verdict
  sfumato check protected/painting.png --original painting.jpg --report report.html
  sfumato serve                                    # the web app on http://127.0.0.1:8000

'sfumato COMMAND --help' shows each command's options and examples.
"""


class UsageError(SystemExit):
    """A command-line usage error, already printed; :func:`main` returns its status (2)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``PROG: error: ...``, exit status 2) that points
    to ``--help`` instead of printing the whole usage; sub-command parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise UsageError(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="sfumato",
        description="Protect artworks from generative-AI mimicry and verify what survives.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sfumato {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod_name in COMMANDS.items():
        try:
            mod = import_module(f"sfumato.commands.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"sfumato.commands.{mod_name}":
                continue  # command not built yet in this checkout
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Torch's OpenMP threads spin while waiting by default: on a shared 2-core machine that made every call
    # 40-100x slower (benchmarks/first_image.py). Set before torch is imported; the user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:  # bad options: one line printed, status 2 (--help and --version still exit)
        return int(e.code or 2)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
