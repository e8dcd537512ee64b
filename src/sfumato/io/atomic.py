"""The one atomic writer: a temp file in the destination folder, fsync, then an atomic rename; never a partial file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def sha256_bytes_of(path: Path) -> str:
    from sfumato.models import sha256_file

    return sha256_file(path)


def publish(tmp: str, path: Path) -> None:
    """Give a temp file (created 0600 by mkstemp) the usual permissions (0666 & ~umask), then rename it
    into place atomically."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict[str, Any], *, overwrite: bool = True) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(tmp, format="PNG")
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
