"""The web app's Preview: the fast path of ``sfumato cloak FILE --preview`` behind ``POST /v1/preview``.

A small, quick cloak of one uploaded image (its long side at the preview size, a few optimisation steps:
:data:`sfumato.config.PREVIEW_SIDE` and :data:`~sfumato.config.PREVIEW_STEPS`) made by the call the
command makes, :func:`sfumato.api.preview`; the answer
is the verdict and the AI view before and after, as PNG data URLs. Nothing protected is written: the
upload is checked in a temporary folder of the data folder and removed with it before the answer.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from sfumato.server.errors import JobError
from sfumato.server.modes import JobOptions
from sfumato.server.settings import ServerSettings

log = logging.getLogger("sfumato.server")

PREVIEW_DIR = "previews"
"""The data folder's sub-folder where a preview's upload waits while it is checked (removed after)."""

_BUSY = threading.BoundedSemaphore(1)  # one preview at a time: it should take seconds, not share them


def preview_config(opts: JobOptions, settings: ServerSettings) -> Any:
    """The cloak configuration of the job options ``opts`` at the preview's size and steps
    (:func:`sfumato.api.preview_config`; the server's ``effort_override``, in tests, stands in for the
    preset's effort)."""
    from sfumato.api import preview_config as api_preview_config
    from sfumato.config import PREVIEW_SIDE, CloakConfig

    cfg = CloakConfig.preset(intensity=opts.intensity, quality=opts.quality, target_style=opts.target_style,
                             seed=opts.seed)
    effort = settings.effort_override or cfg.effort
    side = min(PREVIEW_SIDE, effort.resolution) if settings.effort_override else PREVIEW_SIDE
    return api_preview_config(dataclasses.replace(cfg, effort=effort), side=side)


def compute(rgb: np.ndarray, config: Any, *, models_dir: Path | None) -> dict[str, Any]:
    """The preview of an image (``HxWx3`` float32 in [0, 1]) by :func:`sfumato.api.preview`, the call
    ``sfumato cloak --preview`` makes: ``before``/``after`` (the AI views, arrays), ``verdict``, ``target``,
    ``latent`` and ``timing_s``."""
    from sfumato.api import preview

    pv = preview(rgb, config, models_dir=models_dir)
    return {"before": pv.before, "after": pv.after, "verdict": pv.verdict, "target": pv.target,
            "latent": pv.latent, "timing_s": pv.timing_s}


def png_data_url(rgb: np.ndarray) -> str:
    """An ``HxWx3`` float image in [0, 1] as a ``data:image/png;base64,...`` URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(np.asarray(rgb, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)).save(
        buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_preview(upload: Any, display_name: str | None, opts: JobOptions, settings: ServerSettings,
                store_upload: Any) -> dict[str, Any]:
    """Check the upload (``store_upload(folder, file, name)``: the job uploads' checks and limits) in a
    temporary folder, preview it and remove the folder; the client's answer (see :func:`compute`)."""
    import sfumato.io as sio
    from sfumato.server.results import target_name, verdict_view

    if opts.mode != "cloak":
        raise JobError(422, f"the preview shows the style cloak; mode {opts.mode!r} has no preview yet (choose "
                            "'cloak', or protect the image to see its verdict)")
    if not _BUSY.acquire(blocking=False):
        raise JobError(429, "a preview is already running on this server; try again in a few seconds",
                       headers={"Retry-After": "5"})
    folder = settings.data_dir / PREVIEW_DIR / uuid.uuid4().hex
    try:
        (folder / "in").mkdir(parents=True)
        row = store_upload(folder, upload, display_name)
        t0 = time.perf_counter()
        cfg = preview_config(opts, settings)
        rgb = sio.load_image(folder / "in" / row["input_file"]).rgb
        try:
            out = compute(rgb, cfg, models_dir=settings.models_dir)
        except (JobError, MemoryError):
            raise
        except Exception as e:  # the models are missing, a bug: one line for the page, the rest in the log
            log.exception("preview of %s failed", row["display_name"])
            why = " ".join(str(e).split()) or type(e).__name__
            raise JobError(503 if isinstance(e, (OSError, LookupError)) else 500,
                           f"the preview could not be made: {why}") from e
        seconds = round(time.perf_counter() - t0, 2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _BUSY.release()
    first = next(iter(out["latent"].values()), {})
    side, steps = int(cfg.effort.resolution), int(cfg.effort.steps)
    return {
        "name": row["display_name"], "width": row["width"], "height": row["height"],
        "side": side, "steps": steps, "seconds": seconds,
        "verdict": verdict_view(out["verdict"]), "target": target_name(out["target"]),
        "latent_reduction": first.get("relative_reduction") if isinstance(first, dict) else None,
        "ai_view": {"before": png_data_url(out["before"]), "after": png_data_url(out["after"])},
        "note": f"A quick look at {side} px with {steps} optimisation steps; nothing was saved. The full run "
                "searches longer at full size, so its verdict can differ.",
    }


def clear_previews(data_dir: Path) -> None:
    """Remove what a preview interrupted by a crash left behind."""
    shutil.rmtree(data_dir / PREVIEW_DIR, ignore_errors=True)
