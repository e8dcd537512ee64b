"""Python API over files: cloak an image file, save it safely, measure the *saved* file, write its manifest."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .config import CloakConfig

LOSSY_FORMATS = frozenset({"JPEG", "AVIF"})


def make_quantiser(image: Any, fmt: str, *, jpeg_quality: int = 98, linf: float | None = None,
                   webp_lossless: bool = True, max_fix: int = 4) -> Callable[[np.ndarray], np.ndarray]:
    """A function returning exactly the pixels the saved file will hold for an RGB array.

    Lossless formats: rounding to the output bit depth (and grey projection for greyscale sources), as
    :func:`sfumato.io.stored_rgb` does. Lossy formats: a real encode/decode through
    :func:`sfumato.io.save_image` in a temporary folder. With ``linf`` set, a lossy codec's own error is
    pushed back inside the L∞ cap by re-encoding with the excess subtracted (a few projection rounds).
    """
    from . import io as sio

    if fmt not in LOSSY_FORMATS and not (fmt == "WEBP" and not webp_lossless):
        return lambda rgb: sio.stored_rgb(image, rgb, format=fmt)

    ref = image.rgb

    def codec(rgb: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="sfumato-q-") as d:
            p = sio.save_image(image, rgb, Path(d) / f"q{sio.output_suffix(fmt)}", format=fmt,
                               jpeg_quality=jpeg_quality, exif=b"", xmp=b"")
            return sio.load_image(p).rgb

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


def sha256_bytes_of(path: Path) -> str:
    from .models import sha256_file

    return sha256_file(path)


def write_json_atomic(path: Path, data: dict[str, Any], *, overwrite: bool = True) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class FileResult:
    source: Path
    output: Path
    manifest_path: Path
    manifest: dict[str, Any]
    extra_outputs: list[Path] = field(default_factory=list)


def manifest_path_for(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}.sfumato.json"


def cloak(image: Any, config: CloakConfig | None = None, *, models_dir=None, **kw: Any):  # noqa: ANN001, ANN201
    """Cloak an image given as an HxWx3 float array in [0, 1], an :class:`sfumato.io.ArtImage` or a path.
    Returns a :class:`sfumato.cloak.CloakResult` (nothing is written)."""
    from . import io as sio
    from .style_cloak import cloak_array

    if isinstance(image, (str, os.PathLike)):
        image = sio.load_image(image)
    rgb = image.rgb if hasattr(image, "rgb") else np.asarray(image, dtype=np.float32)
    return cloak_array(rgb, config, models_dir=models_dir, **kw)


def cloak_file(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: CloakConfig | None = None, *,
               output_format: str | None = None, jpeg_quality: int = 98, overwrite: bool = False,
               ai_view: bool = False, models_dir=None, xmp: bytes | None = None,  # noqa: ANN001
               rel_stem: str | None = None, progress: Callable[[int, int], None] | None = None) -> FileResult:
    """Cloak one image file into ``out_dir``: the protected file (same format by default, atomic write,
    metadata/alpha/bit depth kept) and ``<stem>.sfumato.json``. Budget figures are measured on the file
    as saved (re-read from disk)."""
    from . import io as sio
    from .style_cloak import ai_view as render_ai_view
    from .style_cloak import cloak_array, protected_quality

    config = config or CloakConfig()
    if jpeg_quality < 95:
        raise ValueError(f"JPEG quality {jpeg_quality} is too low: below 95 (and with 4:2:0 chroma) the codec "
                         "erases most of the perturbation; use 95-100")
    t0 = time.perf_counter()
    src = Path(src)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    img = sio.load_image(src)
    fmt = (output_format or sio.default_output_format(img.format)).upper()
    stem = rel_stem or src.stem
    out_path = out_dir / f"{stem}{sio.output_suffix(fmt)}"
    man_path = manifest_path_for(out_dir, stem)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        for p in (out_path, man_path):
            if p.exists():
                raise FileExistsError(f"{p} already exists; use --overwrite to replace it or --resume to skip done images")
    bits = sio.output_bit_depth(img, fmt)
    quantise = make_quantiser(img, fmt, jpeg_quality=jpeg_quality, linf=config.budget.linf)
    res = cloak_array(img.rgb, config, quantise=quantise, models_dir=models_dir, progress=progress)
    final = sio.save_image(img, res.image, out_path, format=fmt, jpeg_quality=jpeg_quality, overwrite=overwrite,
                           xmp=xmp)
    # The truth is the file on disk: re-read and measure it.
    saved = sio.load_image(final)
    achieved = protected_quality(saved.rgb, img.rgb, lpips_net=config.budget.lpips_net, models_dir=models_dir)
    extra: list[Path] = []
    from .style_cloak import LatentTargetObjective  # noqa: F401  (documentation of where latents come from)

    latent = res.latent
    if ai_view:
        enc = next((e for e in _encoders_with_decoder(config, models_dir)), None)
        if enc is not None:
            for tag, arr in (("before", img.rgb), ("after", saved.rgb)):
                p = out_dir / f"{stem}.ai_view.{tag}.png"
                write_png_atomic(p, render_ai_view(arr, enc, resolution=config.effort.resolution))
                extra.append(p)
    manifest = {
        "sfumato_version": __version__,
        "mode": "cloak",
        "source": {"file": src.name, "sha256": sha256_bytes_of(src), "format": img.format,
                   "size": list(img.size), "bit_depth": img.bit_depth, "mode": img.mode},
        "output": {"file": final.name, "format": fmt, "bit_depth": bits,
                   "jpeg_quality": jpeg_quality if fmt == "JPEG" else None, "sha256": sha256_bytes_of(final)},
        "encoders": [_encoder_entry(spec, w, models_dir) for spec, w in config.encoders],
        "target": res.target,
        "seed": config.seed,
        "budget": {"lpips": config.budget.lpips, "lpips_net": config.budget.lpips_net,
                   "linf": config.budget.linf},
        "achieved": achieved,
        "within_budget": bool(achieved[f"lpips_{config.budget.lpips_net}"] <= config.budget.lpips + 1e-6
                              and achieved["linf"] <= config.budget.linf + 1e-6),
        "latent": {d["encoder"]: {k: v for k, v in d.items() if k != "encoder"} for d in latent},
        "optimisation": {"steps_run": res.steps_run, "scale": res.scale},
        "timing_s": {**res.timing_s, "file_total": round(time.perf_counter() - t0, 3)},
        "config": config.to_dict(),
    }
    write_json_atomic(man_path, manifest, overwrite=True)
    return FileResult(src, final, man_path, manifest, extra)


def _encoders_with_decoder(config: CloakConfig, models_dir):  # noqa: ANN001, ANN202
    from .style_cloak import load_encoders

    return [e for e, _ in load_encoders(config, models_dir=models_dir) if e.has_decoder]


def _encoder_entry(spec: str, weight: float, models_dir) -> dict[str, Any]:  # noqa: ANN001
    from .style_cloak import _cached_encoder

    e = _cached_encoder(spec, models_dir)
    return {"id": e.id, "weight": weight, "weights_sha256": dict(e.weights_sha256)}
