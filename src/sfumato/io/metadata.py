"""Metadata that travels with an image: EXIF, XMP, the ICC profile, the print resolution and PNG text.

Reading keeps what a file carries; writing hands every output the same packets. Every EXIF or XMP
packet handed out or written says ``Orientation = 1`` (the pixels are stored upright): the EXIF bytes
are patched in place, so maker notes and their offsets stay valid, and only a block that cannot be
patched is re-serialised (by Pillow, with non-ASCII strings kept as their bytes). Not carried:
IPTC/Photoshop resource blocks and other private data.

References: Exif 2.32 (CIPA DC-008); TIFF Revision 6.0 (Adobe, 1992); XMP Specification Part 3 (Adobe,
2020).
"""

from __future__ import annotations

import math
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, TiffImagePlugin, TiffTags

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION = 0x0112
"""The EXIF/TIFF Orientation tag."""

# TIFF tags describing the pixel layout: they belong to the file, never to the kept EXIF.
_TIFF_STRUCTURAL = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 288, 289, 290, 291,
    292, 293, 317, 320, 322, 323, 324, 325, 330, 332, 338, 339, 340, 341, 347, 513, 514, 530, 531, 532,
    700, 34675, 37724, 33723, 34377, 50341,
})

# PNG text keys that carry metadata handled elsewhere (XMP, EXIF, ICC written by other tools).
_PNG_TEXT_SKIP = frozenset({
    "XML:com.adobe.xmp",
    "Raw profile type exif",
    "Raw profile type APP1",
    "Raw profile type xmp",
    "Raw profile type icc",
    "Raw profile type icm",
})


@dataclass(frozen=True)
class Meta:
    """The metadata an encoder writes: ICC profile, EXIF (with header, orientation 1), XMP, dpi, PNG text."""

    icc: bytes | None
    exif: bytes | None
    xmp: bytes | None
    dpi: tuple[float, float] | None
    text: dict[str, str]


def read_png_text(im: Image.Image) -> dict[str, str]:
    """A PNG's text chunks (``Author``, ``Copyright``...), less those that carry XMP/EXIF/ICC."""
    text = getattr(im, "text", None) or {}
    return {str(k): str(v) for k, v in text.items() if k not in _PNG_TEXT_SKIP}


def readable_exif(im: Image.Image, p: Path) -> Image.Exif | None:
    """Pillow's parsed EXIF, or None (with a warning) when the block is unreadable: such a block is
    dropped, because nothing can say whether it asks viewers to rotate the picture."""
    try:
        exif = im.getexif()
        for ifd_tag in (0x8769, 0x8825, 0xA005):
            exif.get_ifd(ifd_tag)  # parse (and cache) the sub-directories now
        return exif
    except (SyntaxError, ValueError, struct.error, OSError) as e:
        warnings.warn(f"{p}: dropping unreadable EXIF metadata ({type(e).__name__}: {e})", stacklevel=4)
        return None


def dpi_from_info(info: dict[str, Any]) -> tuple[float, float] | None:
    """The print resolution Pillow read (``info["dpi"]``) when it is a usable positive pair, else None."""
    dpi = info.get("dpi")
    if not dpi or len(dpi) != 2:
        return None
    x, y = (float(v) for v in dpi)
    if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
        return None
    return x, y


def exif_bytes(info: dict[str, Any], exif_obj: Image.Exif, fmt: str) -> bytes | None:
    """The EXIF block to keep (with its ``Exif\\0\\0`` header, orientation 1), or None."""
    raw = info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        raw = bytes(raw)
        if not raw.startswith(EXIF_HEADER):
            if raw[:4] not in (b"II*\x00", b"MM\x00*"):
                warnings.warn(
                    f"dropping unreadable EXIF block ({len(raw)} bytes, no TIFF header)", stacklevel=4
                )
                return None
            raw = EXIF_HEADER + raw
        return reset_exif_orientation(raw)
    if fmt != "TIFF" and not len(exif_obj):
        return None
    # TIFF (or legacy PNG text) EXIF: rebuild from the descriptive tags, leaving out the pixel layout.
    if not exif_tags(exif_obj):
        return None
    return exif_serialise(exif_obj)


def _raw_string(tag: int, value: Any, group: int | None) -> Any:
    """A non-ASCII value of a known ASCII tag as the bytes it was read from.

    Pillow decodes ASCII tags as latin-1 but re-encodes ``str`` as ASCII with ``?`` for anything else,
    which would turn e.g. a UTF-8 "(c)" sign in a Copyright tag into "??"; handing it bytes keeps them.
    """
    if isinstance(value, str) and not value.isascii() and TiffTags.lookup(tag, group).type == TiffTags.ASCII:
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value.encode("utf-8")
    return value


def exif_tags(exif: Image.Exif) -> dict[int, Any]:
    """Descriptive IFD0 tags (pixel-layout tags left out) and the EXIF/GPS sub-directories (dicts, the
    Interop directory nested in the EXIF one), ready for an ``ImageFileDirectory_v2``."""
    tags = {
        tag: _raw_string(tag, value, None)
        for tag, value in exif.items()
        if tag not in _TIFF_STRUCTURAL and tag not in (0x8769, 0x8825, 0xA005)
    }
    for ifd_tag in (0x8769, 0x8825):
        sub = {k: _raw_string(k, v, ifd_tag) for k, v in exif.get_ifd(ifd_tag).items()}
        if ifd_tag == 0x8769:
            interop = {k: _raw_string(k, v, 0xA005) for k, v in exif.get_ifd(0xA005).items()}
            sub.pop(0xA005, None)
            if interop:
                sub[0xA005] = interop
        if sub:
            tags[ifd_tag] = sub
    return tags


def exif_serialise(exif: Image.Exif, *, drop_orientation: bool = False) -> bytes:
    """Serialise ``exif`` (IFD0 descriptive tags + EXIF/GPS directories) with Pillow, strings intact,
    orientation set to 1 (or left out)."""
    tags = exif_tags(exif)
    if drop_orientation:
        tags.pop(ORIENTATION, None)
    elif ORIENTATION in tags:
        tags[ORIENTATION] = 1
    head = b"II*\x00\x08\x00\x00\x00"
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head)
    for tag, value in tags.items():
        ifd[tag] = value
    return EXIF_HEADER + head + ifd.tobytes(8)


def _with_exif_header(raw: bytes) -> bytes:
    if raw.startswith(EXIF_HEADER):
        return raw
    if raw[:4] in (b"II*\x00", b"MM\x00*"):
        return EXIF_HEADER + raw
    raise ValueError(
        "EXIF data must start with b'Exif\\x00\\x00' or a TIFF header (b'II*\\x00' / b'MM\\x00*')"
    )


def reset_exif_orientation(exif: bytes) -> bytes:
    """Set IFD0's Orientation to 1, patching the bytes in place (offsets and maker notes stay valid).

    ``exif`` starts with ``Exif\\0\\0``. A directory too damaged to walk is returned unchanged (no reader
    can find an orientation in it either); a readable one whose orientation could not be patched in
    place (e.g. an unusual tag type) is re-serialised by Pillow with orientation 1.
    """
    tiff = exif[len(EXIF_HEADER) :]
    e = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if e is None:
        return exif
    try:
        (ifd0,) = struct.unpack_from(e + "I", tiff, 4)
        (count,) = struct.unpack_from(e + "H", tiff, ifd0)
        for i in range(count):
            entry = ifd0 + 2 + 12 * i
            tag, typ, n = struct.unpack_from(e + "HHI", tiff, entry)
            if tag == ORIENTATION:
                if n == 1 and typ in (3, 4):
                    patched = bytearray(tiff)
                    struct.pack_into(e + ("H" if typ == 3 else "I"), patched, entry + 8, 1)
                    return EXIF_HEADER + bytes(patched)
                ex = Image.Exif()
                ex.load(exif)
                return exif_serialise(ex)
    except struct.error:
        return exif
    return exif


_XMP_ATTR = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])\s*\d+\s*([\"'])")
_XMP_ELEM = re.compile(rb"(<tiff:Orientation>)\s*\d+\s*(</tiff:Orientation>)")


def reset_xmp_orientation(xmp: bytes) -> bytes:
    """``xmp`` with every ``tiff:Orientation`` (attribute or element) set to 1."""
    return _XMP_ELEM.sub(rb"\g<1>1\g<2>", _XMP_ATTR.sub(rb"\g<1>1\g<2>", xmp))


def output_meta(
    *,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
    text: dict[str, str],
) -> Meta:
    """The metadata to write: the EXIF block checked (``ValueError`` if unreadable) and given its header,
    EXIF and XMP both saying orientation 1 (``None`` or ``b""``: write none)."""
    exif_out = bytes(exif) if exif else None
    if exif_out:
        exif_out = _with_exif_header(exif_out)
        try:
            Image.Exif().load(exif_out)
        except (SyntaxError, ValueError, struct.error) as e:
            raise ValueError(f"exif is not a readable EXIF block ({e}); pass exif=b'' to write none") from e
        exif_out = reset_exif_orientation(exif_out)
    xmp_out = reset_xmp_orientation(bytes(xmp)) if xmp else None
    return Meta(icc=icc, exif=exif_out, xmp=xmp_out, dpi=dpi, text=dict(text))
