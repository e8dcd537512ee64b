"""The decoded image (:class:`ArtImage`: pixels plus everything needed to write them back faithfully) and
the one error for files that cannot be used as images (:class:`ImageError`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GREY_MODES = frozenset({"1", "L", "LA", "I;16"})
"""Source modes that are greyscale and therefore saved back as greyscale."""


class ImageError(ValueError):
    """A file could not be used as an image; ``str()`` is one line naming the file and what to do."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, advice: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = " ".join(str(problem).split())
        self.advice = " ".join(str(advice).split())
        super().__init__(
            f"{self.path if self.path is not None else '<image>'}: {self.problem}; {self.advice}"
        )


@dataclass
class ArtImage:
    """A decoded image with everything needed to write it back faithfully.

    ``rgb`` is float32 ``HxWx3`` in ``[0, 1]``, upright (EXIF orientation applied) and in the file's RGB
    space (CMYK converted to sRGB). ``alpha`` is the original alpha channel (``uint8`` or ``uint16``,
    ``HxW``) or ``None``. ``bit_depth`` is the source's bits per channel (8 or 16); ``mode`` the source's
    colour mode (Pillow's name; 16-bit grey+alpha PNG, which Pillow calls ``RGBA``, is ``"LA"``);
    ``format`` the detected file format. ``exif`` (with its ``Exif\\0\\0`` header) and ``xmp`` say
    orientation 1. ``dpi`` is the print resolution when the file records one. ``png_text`` holds a PNG's
    text chunks (``Author``, ``Copyright``, ``Description``...; written back to PNG outputs only).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    xmp: bytes | None
    path: Path | None
    dpi: tuple[float, float] | None = None
    png_text: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, like Pillow."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @property
    def is_grey(self) -> bool:
        """True when the source is greyscale and is therefore saved back as greyscale."""
        return self.mode in GREY_MODES
