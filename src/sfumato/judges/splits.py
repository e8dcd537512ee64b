"""Fixed, machine-independent train / hold-out splits of the shared judge corpora.

A judge's held-out accuracy means something only if the hold-out is fixed: the same files on every
machine, in every run, whatever the folder listing order or a random generator's state. Each file is
ranked inside its artist folder by ``SHA-256("sfumato.judge-split/1:" + file name)`` (the name only, not
the path, so the split does not depend on where the corpus lives); the first ``holdout_per_artist``
names of that ranking are held out, the rest train. The split is disjoint, covers every artist and
changes only if the salt below changes (which would be a new split version).

* :func:`art128_split` — ``corpus/art128/<artist>/*.jpg``: 14 painters, 639 images, every one a 128x128
  JPEG from one pipeline (so a judge cannot learn the source instead of the style); 8 held out per
  artist by default (112 hold-out images, 527 training images).
* :func:`ace_split` — the ``ace_*`` files of ``corpus/art/<artist>/``: one WikiArt source at full
  resolution (about 600-2300 px), 5 painters (Canaletto, Monet, Signac, Van Gogh, Matisse); split by
  *painting* (a file is one painting; its crops never straddle the split), 3 held out per artist.

Judges trained on the training half measure protections; cloak targets and exemplars must never be
drawn from a judge's training images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from sfumato.judges.mobilenet import IMAGE_SUFFIXES

__all__ = ["ACE_PREFIX", "SPLIT_SALT", "ace_split", "art128_split", "hash_split", "split_rank"]

SPLIT_SALT = "sfumato.judge-split/1:"
ACE_PREFIX = "ace_"

Split = tuple[dict[str, list[Path]], dict[str, list[Path]]]


def split_rank(name: str) -> str:
    """The stable sort key of a file name (hex SHA-256 of the salted name)."""
    return hashlib.sha256((SPLIT_SALT + name).encode("utf-8")).hexdigest()


def hash_split(files: Mapping[str, Sequence[str | os.PathLike[str]]], *, holdout_per_artist: int) -> Split:
    """``(train, holdout)`` of ``{artist: [paths]}``: per artist, the ``holdout_per_artist`` files whose
    :func:`split_rank` is smallest are held out. Both halves list files sorted by name."""
    if holdout_per_artist < 1:
        raise ValueError(f"holdout_per_artist must be >= 1, got {holdout_per_artist}")
    train: dict[str, list[Path]] = {}
    hold: dict[str, list[Path]] = {}
    for artist in sorted(files):
        paths = [Path(p) for p in files[artist]]
        if len(paths) <= holdout_per_artist:
            raise ValueError(f"artist {artist!r} has {len(paths)} files; holding out {holdout_per_artist} "
                             "would leave none to train on")
        ranked = sorted(paths, key=lambda p: (split_rank(p.name), p.name))
        held = set(ranked[:holdout_per_artist])
        hold[artist] = sorted(held, key=lambda p: p.name)
        train[artist] = sorted((p for p in paths if p not in held), key=lambda p: p.name)
    return train, hold


def _folder(corpus_dir: str | os.PathLike[str], sub: str) -> Path:
    root = Path(corpus_dir).expanduser()
    if root.name != sub and (root / sub).is_dir():
        root = root / sub
    if not root.is_dir() or root.name != sub:
        raise FileNotFoundError(f"{root}: expected the shared corpus folder (containing {sub}/<artist>/) "
                                f"or {sub}/ itself")
    return root


def _images(folder: Path, prefix: str = "") -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name.startswith(prefix))


def art128_split(corpus_dir: str | os.PathLike[str], *, holdout_per_artist: int = 8) -> Split:
    """``(train, holdout)`` of ``corpus/art128`` by artist folder (see module doc).

    ``corpus_dir`` is the shared corpus folder (holding ``art128/``) or ``art128/`` itself.
    """
    root = _folder(corpus_dir, "art128")
    files = {d.name: _images(d) for d in sorted(root.iterdir()) if d.is_dir()}
    files = {a: v for a, v in files.items() if v}
    if len(files) < 2:
        raise FileNotFoundError(f"{root}: fewer than 2 artist folders with images")
    return hash_split(files, holdout_per_artist=holdout_per_artist)


def ace_split(corpus_dir: str | os.PathLike[str], *, holdout_per_artist: int = 3) -> Split:
    """``(train, holdout)`` of the ``ace_*`` files of ``corpus/art/<artist>/``, by painting (see module doc).

    ``corpus_dir`` is the shared corpus folder (holding ``art/``) or ``art/`` itself. Artists without
    ``ace_*`` files are left out.
    """
    root = _folder(corpus_dir, "art")
    files = {d.name: _images(d, ACE_PREFIX) for d in sorted(root.iterdir()) if d.is_dir()}
    files = {a: v for a, v in files.items() if v}
    if len(files) < 2:
        raise FileNotFoundError(f"{root}: fewer than 2 artist folders with {ACE_PREFIX}* files")
    return hash_split(files, holdout_per_artist=holdout_per_artist)
