"""Sub-commands of the ``sfumato`` CLI (see :mod:`sfumato.cli`)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Callable

USER_ERRORS = (FileExistsError, FileNotFoundError, PermissionError, NotADirectoryError, ValueError)

#: Optional packages and the extra of ``pyproject.toml`` that installs each (top-level import names).
EXTRAS = {
    "ai_edge_litert": "judges", "sklearn": "judges", "scipy": "judges",
    "diffusers": "diffusers", "transformers": "diffusers", "huggingface_hub": "diffusers",
    "fastapi": "web", "uvicorn": "web", "multipart": "web", "python_multipart": "web",
    "c2pa": "c2pa", "cryptography": "c2pa",
    "ray": "cluster",
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def missing_extra_message(module: str, what: str = "this") -> str:
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"{what} needs the Python package {top!r}, which is not installed"
    return (f"{what} needs the optional package {top!r}: install sfumato[{extra}] "
            f"(pip install 'sfumato[{extra}]')")


def require_module(module: str, what: str) -> None:
    """Raise :class:`MissingExtra` when ``module`` cannot be imported (checked without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtra(missing_extra_message(module, what))


def one_line_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command's body so that user errors (bad options, paths, folders, a missing optional
    package) print one ``error:`` line and exit with status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except MissingExtra as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except ModuleNotFoundError as e:
            if not e.name:
                raise
            print(f"error: {missing_extra_message(e.name)}", file=sys.stderr)
            return 2
        except USER_ERRORS as e:
            print(f"error: {str(e).splitlines()[0] if str(e).strip() else type(e).__name__}", file=sys.stderr)
            return 2

    return run


def number(kind: type = float, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, unit: str = "") -> Callable[[str], float | int]:
    """An argparse ``type=`` that parses an int or a finite float and checks its range; a bad value gives
    argparse's one-line error naming the option and the range (e.g. ``must be 95..100, got 101``)."""
    def g(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    if lo is not None and hi is not None:
        if kind is int and not lo_open and not hi_open:
            rng = f"{g(lo)}..{g(hi)}"
        else:
            rng = f"in {'(' if lo_open else '['}{g(lo)}, {g(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
        rng = f"{'>' if lo_open else '>='} {g(lo)}"
    elif hi is not None:
        rng = f"{'<' if hi_open else '<='} {g(hi)}"
    else:
        rng = "a number"
    noun = "an integer" if kind is int else "a number"

    def conv(text: str) -> float | int:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun} {rng}{unit}, got {text!r}") from None
        bad = not math.isfinite(v)
        bad = bad or (lo is not None and (v <= lo if lo_open else v < lo))
        bad = bad or (hi is not None and (v >= hi if hi_open else v > hi))
        if bad:
            raise argparse.ArgumentTypeError(f"must be {rng}{unit}, got {text}")
        return v

    conv.__name__ = kind.__name__  # argparse names the type in its messages
    return conv
