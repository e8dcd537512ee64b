"""The one atomic writer: a temp file in the destination folder, fsync, then an atomic move into place;
never a partial file, never an existing file replaced without ``overwrite``, never the source replaced.

:func:`atomic_write` serves every output: images (:func:`sfumato.io.save_image`), manifests
(:func:`write_json_atomic`), previews (:func:`write_png_atomic`) and reports (:func:`write_text_atomic`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def sha256_bytes_of(path: Path) -> str:
    from sfumato.models import sha256_file

    return sha256_file(path)


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (by inode where the file system says, else by path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_destination(dest: Path, *, overwrite: bool, source: Path | None = None) -> None:
    """Refuse a destination that is the ``source`` file (``ValueError``) or that exists when ``overwrite``
    is false (``FileExistsError``)."""
    if source is not None and dest.exists() and same_file(dest, source):
        raise ValueError(f"{dest}: is the original file; Sfumato never modifies originals, pick another name")
    if dest.exists() and not overwrite:
        raise _exists(dest)


def _exists(dest: Path) -> FileExistsError:
    return FileExistsError(f"{dest}: already exists; choose another name or pass overwrite=True to replace it")


#: Temp names: ``.NAME.PID.XXXXXXXXXXXX.tmp`` (the writer's process id, 12 random hex digits); the former
#: ``.NAME.XXXXXXXXXXXX.tmp`` (no process id) is still recognised by :func:`clean_stale_temps`.
TEMP_RE = re.compile(r"^\..+?\.(?:(\d+)\.)?[0-9a-f]{12}\.tmp$")
#: A temp file whose writer cannot be identified as dead is stale once it is this old (seconds).
STALE_TEMP_AGE_S = 3600.0


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process, or a pid we cannot ask about: assume alive
    return True


def clean_stale_temps(folder: str | os.PathLike[str], *, recursive: bool = True,
                      max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove the temp files :func:`atomic_write` left in ``folder`` (and its sub-folders) when its process
    was killed mid-write; return them. A temp file is stale when the process that wrote it is gone (same
    machine), or, for names without a process id or a writer still alive, when it is older than
    ``max_age_s``; fresh temps of a running writer are left alone. Nothing else is touched."""
    removed: list[Path] = []
    now = time.time()
    root = Path(folder)
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root) if root.is_dir() else [])]
    for dirpath, dirnames, filenames in walker:
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            m = TEMP_RE.match(name)
            if m is None:
                continue
            p = Path(dirpath) / name
            try:
                st = os.lstat(p)
                dead = m.group(1) is not None and not _pid_alive(int(m.group(1)))
                if dead or now - st.st_mtime > max_age_s:
                    p.unlink()
                    removed.append(p)
            except OSError:
                continue
    return removed


def _temp_beside(dest: Path, mode: int | None) -> tuple[int, Path]:
    """A new, empty, exclusively created ``.NAME.PID.XXXXXXXXXXXX.tmp`` beside ``dest``, with the usual
    permissions (``0666 & ~umask``, not ``mkstemp``'s private 0600), or exactly ``mode`` (set before any
    byte is written, so a private key is never readable by others, not even while it is written)."""
    while True:
        tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o600 if mode is not None else 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            os.fchmod(fd, mode)
        return fd, tmp


def atomic_write(
    dest: str | os.PathLike[str],
    write_fn: Callable[[IO[bytes]], Any],
    *,
    overwrite: bool,
    source: Path | None = None,
    mode: int | None = None,
) -> Path:
    """Write ``dest`` through ``write_fn(fp)`` (a binary file) atomically and return it.

    The bytes go to a temp file in ``dest``'s folder, are fsynced, and the file is then moved into place:
    with ``overwrite`` by an atomic rename, otherwise by a hard link, which never replaces a file that
    appeared meanwhile (``FileExistsError``). ``source`` (the file the output was made from) is never
    replaced (``ValueError``). ``mode``: exact permission bits (default ``0666 & ~umask``). The temp file
    is removed whatever happens.
    """
    dest = Path(dest)
    check_destination(dest, overwrite=overwrite, source=source)
    fd, tmp = _temp_beside(dest, mode)
    try:
        with os.fdopen(fd, "wb") as fp:
            write_fn(fp)
            fp.flush()
            os.fsync(fp.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)  # atomic and never replaces a file that appeared meanwhile
            except FileExistsError:
                raise _exists(dest) from None
            except OSError:  # file systems without hard links
                if dest.exists():
                    raise _exists(dest) from None
                os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def write_json_atomic(path: Path, data: dict[str, Any], *, overwrite: bool = True) -> None:
    """Write ``data`` as indented JSON (non-JSON values through ``str``) plus a newline, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda fp: fp.write(text.encode("utf-8")), overwrite=overwrite)


def write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    """Write an ``HxWx3`` float array in ``[0, 1]`` as an 8-bit PNG (rounded half up), replacing ``path``."""
    from PIL import Image

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    atomic_write(path, lambda fp: img.save(fp, format="PNG"), overwrite=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically, replacing ``path``."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` atomically, replacing ``path``; ``mode``: exact permission bits (e.g. 0o600 for a key)."""
    atomic_write(path, lambda fp: fp.write(data), overwrite=True, mode=mode)
