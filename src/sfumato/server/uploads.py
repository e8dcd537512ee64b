"""Uploads of the web server: each image is copied under a UUID name with a size limit, content-sniffed and
fully decoded with :func:`sfumato.io.load_image` (pixel limit) whatever its extension; the uploader's
file name is kept only as sanitised display metadata."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from pathlib import Path
from typing import IO, Any

from sfumato.server.errors import JobError

INPUT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}
"""Image formats the server accepts (as Pillow names them) and the suffix of the stored original."""

MIN_IMAGE_SIDE = 32
"""Smallest width and height the server takes: the perceptual metric every budget is measured with
(LPIPS-AlexNet) needs 31 px on each side, so smaller images cannot be protected within a budget."""

_UNSAFE = re.compile(r"[^\w.\-+,() ]")


def sanitise_display_name(name: str | None) -> str:
    """A harmless display version of an uploaded file name: last path component, printable, no leading
    dots, only word characters and ``.-+,() `` kept, at most 120 characters (``"image"`` if empty)."""
    base = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = re.sub(r"_+", "_", _UNSAFE.sub("_", base)).strip(" .")
    return base[:120].strip(" .") or "image"


def store_upload(job_dir: Path, src: IO[bytes], display_name: str | None, *, max_upload_bytes: int,
                 max_pixels: int, decode_gate: threading.BoundedSemaphore) -> dict[str, Any]:
    """Copy one upload into ``job_dir/in`` under a UUID name, enforcing the size limit, sniffing the
    content and decoding it fully with :func:`sfumato.io.load_image` (pixel limit; at most as many
    full decodes at once as ``decode_gate`` allows). Returns the image's row for the job store. Raises
    :class:`JobError` (413/415, 422 under :data:`MIN_IMAGE_SIDE`) with a one-line message naming the
    upload."""
    from PIL import Image, UnidentifiedImageError

    import sfumato.io as sio

    shown = sanitise_display_name(display_name)
    image_id = uuid.uuid4().hex
    tmp = job_dir / "in" / f"{image_id}.upload"
    size = 0
    with open(tmp, "wb") as f:
        while chunk := src.read(1 << 20):
            size += len(chunk)
            if size > max_upload_bytes:
                f.close()
                tmp.unlink()
                raise JobError(413, f"{shown}: larger than the {max_upload_bytes // (1024 * 1024)} MiB upload limit; "
                                    "export a smaller file or ask the admin to raise --max-upload-mb")
            f.write(chunk)
    if size == 0:
        tmp.unlink()
        raise JobError(415, f"{shown}: the upload is empty; choose an image file")
    try:
        with Image.open(tmp) as im:  # header only: what the bytes are, whatever the name says
            fmt, (w, h) = str(im.format), im.size
    except Image.DecompressionBombError as e:
        tmp.unlink()
        raise JobError(413, f"{shown}: far over this server's pixel limit ({e}); downscale it first") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        tmp.unlink()
        raise JobError(415, f"{shown}: not an image (its content was checked, not its name); upload a PNG, "
                            "JPEG, WebP or TIFF file") from e
    if fmt not in INPUT_SUFFIX or (fmt == "AVIF" and "AVIF" not in sio.supported_formats()):
        tmp.unlink()
        raise JobError(415, f"{shown}: a {fmt} image, which sfumato does not protect; convert it to PNG (lossless) "
                            "or upload a JPEG, WebP or TIFF file")
    if min(w, h) < MIN_IMAGE_SIDE:
        tmp.unlink()
        raise JobError(422, f"{shown}: {w}x{h} pixels is too small to protect; sfumato needs at least "
                            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (its perceptual budget cannot be measured below "
                            "that); upload the full-size image")
    if w * h > max_pixels:
        tmp.unlink()
        raise JobError(413, f"{shown}: {w}x{h} is {w * h / 1e6:.1f} megapixels, over this server's limit of "
                            f"{max_pixels / 1e6:.1f}; downscale it first")
    with decode_gate:
        try:
            img = sio.load_image(tmp, max_pixels=max_pixels)
        except sio.ImageError as e:
            tmp.unlink()
            raise JobError(415, f"{shown}: {e.problem}; {e.advice}") from e
    final = tmp.with_name(f"{image_id}.original{INPUT_SUFFIX.get(img.format, '.img')}")
    os.replace(tmp, final)
    return {"id": image_id, "display_name": shown, "input_file": final.name, "width": img.size[0],
            "height": img.size[1], "format": img.format, "bytes": size}


_JOB_DIR_RE = re.compile(r"^[0-9a-f]{32}$")


def remove_orphan_dirs(jobs_dir: Path, known: set[str], min_age_s: float) -> None:
    """Delete the job folders of ``jobs_dir`` that no job in ``known`` owns (abandoned uploads, a job
    deleted mid-write) and that are at least ``min_age_s`` old."""
    now = time.time()
    for d in jobs_dir.iterdir():
        if d.is_dir() and _JOB_DIR_RE.match(d.name) and d.name not in known and now - d.stat().st_mtime >= min_age_s:
            shutil.rmtree(d, ignore_errors=True)
