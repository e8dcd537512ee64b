"""The lab's training data: labelled image files brought to the trainer's square view and encoded once.

A trainer of a ``size`` px model sees each file centre-cropped to a square and resized (Lanczos) to
``size`` px; ``corpus/art128`` files are already 128x128, so at ``size=128`` they pass unchanged (and a
128 px protected PNG is exactly what the trainer sees). ``flip`` adds the encoded mirror image of every
file, the usual augmentation. Latents are memoised per (file bytes, size, flip) in a :class:`LatentCache`
so the clean run and a protected run share every unchanged image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "LabData", "LatentCache", "class_folders", "encode_dataset", "images_in", "square_view"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")


def square_view(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """``path`` as a trainer sees it: RGB, centre square crop, Lanczos resize to ``size``; float32 HWC in
    [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
        if s != size:
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255.0


def images_in(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files under ``folder`` (recursive), sorted."""
    return sorted(p for p in Path(folder).expanduser().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(root: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
                  classes: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """``{class: sorted image files}``: the sub-folders of ``root`` (or only ``classes``), or, when
    ``root`` is a ``{class: folder}`` mapping, those folders (each searched recursively)."""
    if isinstance(root, Mapping):
        folders = {str(c): Path(d).expanduser() for c, d in root.items()}
    else:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"{root} is not a folder: give a folder with one sub-folder of images per class")
        names = list(classes) if classes else sorted(d.name for d in root.iterdir() if d.is_dir())
        folders = {n: root / n for n in names}
    out = {}
    for name, d in folders.items():
        files = images_in(d) if d.is_dir() else []
        if not files:
            raise ValueError(f"{d}: no images (expected a folder of .jpg/.png files for class {name!r})")
        out[name] = files
    return out


@dataclass
class LatentCache:
    """Latents of square views, memoised by the file's bytes (so a replaced file is re-encoded)."""

    encoder: Any
    size: int
    cache_dir: Path | None = None
    memo: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = self.file
        if f is not None and f.exists():
            self.memo.update(torch.load(f, map_location="cpu", weights_only=True))

    @property
    def file(self) -> Path | None:
        """Where the memo persists (``None`` without ``cache_dir``): one file per encoder and size."""
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / f"latents-{getattr(self.encoder, 'id', 'encoder')}-{self.size}.pt"

    def latents(self, paths: Sequence[Path], *, flip: bool, batch: int = 32) -> torch.Tensor:
        keys = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        p0 = next(self.encoder.parameters(), None) if hasattr(self.encoder, "parameters") else None
        dev = p0.device if p0 is not None else torch.device("cpu")
        for s in range(0, len(todo), batch):
            chunk = todo[s:s + batch]
            x = torch.from_numpy(np.stack([square_view(paths[i], self.size) for i in chunk])).permute(0, 3, 1, 2)
            x = x.to(dev)
            with torch.no_grad():
                z = self.encoder.encode(x).float().cpu()
                zf = self.encoder.encode(x.flip(-1)).float().cpu()
            for j, i in enumerate(chunk):
                self.memo[keys[i]] = torch.stack([z[j], zf[j]])
        if todo and self.file is not None:
            from sfumato.io.atomic import atomic_write

            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.file, lambda tmp: torch.save(self.memo, tmp), overwrite=True)
        return torch.cat([self.memo[k] if flip else self.memo[k][:1] for k in keys])


@dataclass
class LabData:
    """Encoded training set: ``latents[i]`` has class ``classes[labels[i]]``; ``sources[i]`` names the
    file (``replaced`` marks the files swapped for a protected version)."""

    latents: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    sources: list[str]
    replaced: int = 0

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def encode_dataset(files: Mapping[str, Sequence[Path]], cache: LatentCache, *, flip: bool,
                   replace: Mapping[Path, Path] | None = None) -> LabData:
    """Encode ``files`` (``{class: paths}``), with each path in ``replace`` swapped for its replacement."""
    replace = {Path(k): Path(v) for k, v in (replace or {}).items()}
    classes = list(files)
    lat, lab, src = [], [], []
    n_rep = 0
    for ci, c in enumerate(classes):
        paths = [replace.get(Path(p), Path(p)) for p in files[c]]
        n_rep += sum(Path(p) in replace for p in files[c])
        z = cache.latents(paths, flip=flip)
        lat.append(z)
        lab += [ci] * z.shape[0]
        src += [str(p) for p in paths for _ in range(2 if flip else 1)]
    return LabData(latents=torch.cat(lat), labels=torch.tensor(lab), classes=classes, sources=src, replaced=n_rep)
