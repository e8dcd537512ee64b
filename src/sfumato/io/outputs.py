"""Output planning: format choice, the output codec's quantiser, allowed JPEG qualities and manifest paths."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.io.formats import MIN_LOSSY_QUALITY, output_suffix
from sfumato.io.read import load_image
from sfumato.io.write import save_image, stored_rgb

LOSSY_FORMATS = frozenset({"JPEG", "AVIF"})


#: Lossy sources are written losslessly by default: re-encoding a JPEG moves pixels by up to ~20/255 by
#: itself (even at quality 100), which would break the L∞ guarantee on the saved file and erase part of
#: the perturbation. ``--format JPEG`` still writes JPEG (quality 95-100, 4:4:4) with the codec's error
#: pushed back toward the cap and the achieved L∞ reported honestly.
LOSSLESS_DEFAULTS = {"JPEG": "PNG", "AVIF": "PNG", "MPO": "PNG"}


def make_quantiser(image: Any, fmt: str, *, jpeg_quality: int = 98, linf: float | None = None,
                   webp_lossless: bool = True, max_fix: int = 4) -> Callable[[np.ndarray], np.ndarray]:
    """A function returning exactly the pixels the saved file will hold for an RGB array.

    Lossless formats: rounding to the output bit depth (and grey projection for greyscale sources), as
    :func:`sfumato.io.stored_rgb` does. Lossy formats: a real encode/decode through
    :func:`sfumato.io.save_image` in a temporary folder. With ``linf`` set, a lossy codec's own error is
    pushed back inside the L∞ cap by re-encoding with the excess subtracted (a few projection rounds).
    """
    if fmt not in LOSSY_FORMATS and not (fmt == "WEBP" and not webp_lossless):
        return lambda rgb: stored_rgb(image, rgb, format=fmt)

    ref = image.rgb

    def codec(rgb: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="sfumato-q-") as d:
            p = save_image(image, rgb, Path(d) / f"q{output_suffix(fmt)}", format=fmt,
                           jpeg_quality=jpeg_quality, exif=b"", xmp=b"")
            return load_image(p).rgb

    def q(rgb: np.ndarray) -> np.ndarray:
        inp = rgb
        out = codec(inp)
        if linf is None:
            return out
        for _ in range(max_fix):
            e = out - ref
            excess = e - np.clip(e, -linf, linf)
            if not np.any(excess):
                break
            inp = np.clip(inp - excess, 0, 1)
            out = codec(inp)
        return out

    return q


def manifest_path_for(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}.sfumato.json"


def check_jpeg_quality(q: int) -> None:
    if not MIN_LOSSY_QUALITY <= q <= 100:
        raise ValueError(f"JPEG quality {q} is not allowed: below 95 (and with 4:2:0 chroma) the codec erases "
                         "most of the perturbation; use 95-100")


Quantiser = Callable[[np.ndarray], np.ndarray]
