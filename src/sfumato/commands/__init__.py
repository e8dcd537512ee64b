"""Sub-commands of the ``sfumato`` CLI (see :mod:`sfumato.cli`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

USER_ERRORS = (FileExistsError, FileNotFoundError, PermissionError, NotADirectoryError, ValueError)


def one_line_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command's body so that user errors print one ``error:`` line and exit with status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run
