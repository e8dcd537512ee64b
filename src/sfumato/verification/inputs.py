"""The inputs of ``sfumato check``: the protected image, the original, the cloak manifest, and the working
size every measure is taken at (a cloak manifest's ``target.work_size``, else long side
``config.effort.resolution`` from the manifest, else 512 px — the size the protection was optimised for
and a trainer resizes to)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_RESOLUTION", "CheckInputs", "ImageInput", "find_manifest", "load_rgb", "read_inputs"]

DEFAULT_RESOLUTION = 512
"""Long side of the working size when the manifest does not give one."""

ImageInput = str | os.PathLike[str] | np.ndarray


def load_rgb(x: ImageInput, what: str) -> tuple[np.ndarray, Path | None]:
    """A file path or a float32 ``HxWx3`` array in [0, 1] → the array and its path (``None`` for arrays)."""
    if isinstance(x, (str, os.PathLike)):
        from sfumato.io import load_image

        p = Path(x)
        return load_image(p).rgb, p
    a = np.asarray(x)
    if a.ndim != 3 or a.shape[2] != 3 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: give a file path or a float32 HxWx3 array in [0, 1], got {a.dtype} {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{what}: array values must lie in [0, 1]; divide 8-bit data by 255")
    return np.ascontiguousarray(a, dtype=np.float32), None


def find_manifest(protected: str | os.PathLike[str]) -> Path | None:
    """The ``<stem>.sfumato.json`` written beside a protected file by ``sfumato cloak``, if present."""
    p = Path(protected)
    m = p.with_name(f"{p.stem}.sfumato.json")
    return m if m.is_file() else None


@dataclass
class CheckInputs:
    """What :func:`read_inputs` read: the images, the manifest, and where to measure."""

    x_p: np.ndarray
    p_path: Path | None
    x_o: np.ndarray | None
    o_path: Path | None
    manifest: dict[str, Any] | None
    man_path: Path | None
    mode: str | None
    cfg: Any
    style_name: str | None
    resolution: int
    size: tuple[int, int]


def _read_manifest(manifest: dict[str, Any] | str | os.PathLike[str] | None,
                   p_path: Path | None) -> tuple[dict[str, Any] | None, Path | None]:
    man_path: Path | None = None
    if manifest is None and p_path is not None:
        man_path = find_manifest(p_path)
    elif isinstance(manifest, (str, os.PathLike)):
        man_path = Path(manifest)
    if man_path is not None:
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
    if manifest is not None and not isinstance(manifest, dict):
        raise ValueError(f"manifest must be a dict or the path of a .sfumato.json file, got {type(manifest).__name__}")
    return manifest, man_path


def _work_size(h: int, w: int, resolution: int, mode: str | None, target_entry: Any,
               notes: list[str]) -> tuple[int, int]:
    from sfumato.io.tensors import work_size

    size = work_size(h, w, resolution)
    recorded = target_entry.get("work_size") if isinstance(target_entry, dict) else None
    if mode == "cloak" and isinstance(recorded, list | tuple) and len(recorded) == 2:
        # the cloak's own working size (its anti-fingerprint jitter moves it off `resolution`); the target is
        # re-rendered and every latent measured there, or the measure aims at a differently drawn target
        rh, rw = int(recorded[0]), int(recorded[1])
        if rh >= 8 and rw >= 8 and abs(rh / rw - h / w) <= 0.02 * (h / w) and max(rh, rw) <= max(h, w):
            size = (rh, rw)
        else:
            notes.append(f"The manifest's working size {rw}x{rh} does not fit this {w}x{h} image; measuring at "
                         f"{size[1]}x{size[0]} instead, where the re-rendered target may differ from the cloak's.")
    return size


def read_inputs(protected: ImageInput, original: ImageInput | None,
                manifest: dict[str, Any] | str | os.PathLike[str] | None, notes: list[str]) -> CheckInputs:
    """Load the images, read the manifest (by default ``<stem>.sfumato.json`` beside a protected file) and
    settle the working size; what a reader should know goes to ``notes``."""
    x_p, p_path = load_rgb(protected, "protected")
    x_o, o_path = (None, None) if original is None else load_rgb(original, "original")
    if x_o is not None and x_o.shape != x_p.shape:
        raise ValueError(f"original is {x_o.shape[1]}x{x_o.shape[0]} but protected is {x_p.shape[1]}x{x_p.shape[0]}; "
                         "give the exact original the protected file was made from")
    manifest, man_path = _read_manifest(manifest, p_path)
    mode = manifest.get("mode", "cloak") if manifest is not None else None
    conf = manifest.get("config") if manifest is not None and isinstance(manifest.get("config"), dict) else None
    resolution = int(((conf or {}).get("effort") or {}).get("resolution", DEFAULT_RESOLUTION))
    cfg = None
    if mode == "cloak" and conf is not None:
        from sfumato.config import CloakConfig

        cfg = CloakConfig.from_dict(conf)
    target_entry = manifest.get("target") if manifest is not None else None
    style_name = target_entry.get("style") if isinstance(target_entry, dict) else None
    if manifest is not None and mode != "cloak":
        notes.append(f"Manifest mode {mode!r}: only a style cloak's target is re-rendered here; the protection is "
                     "measured as the shift away from the original's latent.")
    h, w = x_p.shape[:2]
    size = _work_size(h, w, resolution, mode, target_entry, notes)
    return CheckInputs(x_p=x_p, p_path=p_path, x_o=x_o, o_path=o_path, manifest=manifest, man_path=man_path,
                       mode=mode, cfg=cfg, style_name=style_name, resolution=resolution, size=size)
