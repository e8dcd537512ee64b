"""An on-disk cache for the built-in target styles: their rendered exemplars and their Gram signatures.

Both are deterministic (the procedural painters in :mod:`sfumato.targets.styles` are seeded; the Gram
signature is a fixed, SHA-checked network's statistics), but a fresh process spent about 1.5 s painting the
ten families and 1.3 s computing their signatures before its first target (2 cores). Entries are keyed
by a digest of the code that makes them (the styles module's source, the exemplar bytes), so a changed
painter or network tap writes a new entry instead of reading a stale one. The cache is a convenience:
when it cannot be read or written, the values are computed as before.

Folder: ``$SFUMATO_STYLE_CACHE_DIR``, else ``~/.cache/sfumato/styles``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["ENV_STYLE_CACHE_DIR", "style_cache_dir", "cached_arrays", "code_digest", "digest"]

ENV_STYLE_CACHE_DIR = "SFUMATO_STYLE_CACHE_DIR"


def style_cache_dir() -> Path:
    base = os.environ.get(ENV_STYLE_CACHE_DIR)
    return Path(base).expanduser() if base else Path.home() / ".cache" / "sfumato" / "styles"


def digest(*parts: bytes | str) -> str:
    """A short SHA-256 of ``parts`` (for cache keys)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:20]


def code_digest(*modules: str) -> str:
    """A digest of the source files of ``modules`` (dotted names) with the numpy and torch versions: the
    code a cached value depends on."""
    import importlib.util

    import torch

    parts: list[bytes | str] = [np.__version__, torch.__version__]
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        parts.append(Path(origin).read_bytes() if origin else name)
    return digest(*parts)


def cached_arrays(key: str, compute: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
    """The arrays stored under ``key`` (a file name stem), else ``compute()``, stored for next time.
    The values are bit-identical either way (``.npz``, no compression loss)."""
    path = style_cache_dir() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return [z[f"a{i}"] for i in range(len(z.files))]
    except Exception:  # noqa: BLE001  (missing, empty, truncated or foreign file: compute and overwrite)
        pass
    arrays = compute()
    try:
        from sfumato.io.atomic import write_bytes_atomic

        buf = io.BytesIO()
        np.savez(buf, **{f"a{i}": np.ascontiguousarray(a) for i, a in enumerate(arrays)})
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buf.getvalue())
    except OSError:
        pass
    return arrays
