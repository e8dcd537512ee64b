"""What a finished job gives back: the client's view of a job (status, progress, ETA, files, manifest
summaries), its stored files by name, the zip of its results, and the optional verification report
(``sfumato check``) written next to each protected image."""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sfumato.io.atomic import write_text_atomic
from sfumato.server import eta
from sfumato.server.errors import JobError, one_line
from sfumato.server.modes import first_missing
from sfumato.server.store import DEFAULT_IMAGE_SECONDS

EXTRA_KINDS = {".ai_view.before.png": "ai_view_before", ".ai_view.after.png": "ai_view_after", ".txt": "caption"}
"""Extra outputs of a protection (by suffix after the image id) and the file kind the job records."""

log = logging.getLogger("sfumato.server")

_FILE_RE = re.compile(r"^[0-9a-f]{32}(\.[a-z0-9_]+)+$")


def check_available() -> bool:
    """Whether this sfumato has the verification report (``sfumato.verification.check.check`` and
    ``sfumato.verification.report.write_html``)."""
    return first_missing(("sfumato.verification.check:check", "sfumato.verification.report:write_html")) is None


def verification_report(original: Path, protected: Path, manifest: dict[str, Any], out_dir: Path, stem: str, *,
                        attacks: str, models_dir: Path | None) -> list[Path]:
    """Run ``sfumato check`` on a finished image (:func:`sfumato.verification.check.check` with the original
    and the manifest) and write ``<stem>.report.html`` (:func:`sfumato.verification.report.write_html`) and
    ``<stem>.check.json`` in ``out_dir``."""
    from sfumato.verification.check import check
    from sfumato.verification.report import write_html

    rep = check(protected, original=original, manifest=manifest, attacks=attacks, models_dir=models_dir)
    html = write_html(rep, out_dir / f"{stem}.report.html")
    js = out_dir / f"{stem}.check.json"
    write_text_atomic(js, rep.to_json() + "\n")
    return [html, js]


def add_report(files: dict[str, str], original: Path, res: Any, out_dir: Path, stem: str, *, attacks: str,
               models_dir: Path | None) -> str | None:
    """Write the verification report of a finished image (``res``: its :class:`sfumato.api.FileResult`)
    and add its files to ``files``; returns why there is none (the protected image stands either way)."""
    if not check_available():
        return "the verification report is not available in this version of sfumato"
    try:
        html, js = verification_report(original, res.output, res.manifest, out_dir, stem, attacks=attacks,
                                       models_dir=models_dir)
    except Exception as e:
        log.exception("verification report failed for %s", stem)
        return one_line(e)
    files["report"], files["check"] = html.name, js.name
    return None


def failed_in_memory(job: dict[str, Any], reason: str, ttl_s: float) -> dict[str, Any]:
    """``job`` as the client should see it when it failed with ``reason`` but the store could not record
    that yet: failed, its unfinished images failed with the same reason."""
    now = time.time()
    images = [im if im["status"] in ("done", "failed") else {**im, "status": "failed", "error": reason,
                                                                "finished": now}
              for im in job["images"]]
    return {**job, "status": "failed", "error": reason, "finished": job.get("finished") or now,
            "expires": job.get("expires") or now + ttl_s, "queue_position": None, "images_ahead": 0,
            "images": images}


def remove_outputs(out_dir: Path, stem: str) -> None:
    """Delete what an attempt at image ``stem`` wrote in ``out_dir`` (its results and temporary files)."""
    for p in [*out_dir.glob(f"{stem}.*"), *out_dir.glob(f".{stem}.*")]:
        p.unlink(missing_ok=True)


def file_path(jobs_dir: Path, job: dict[str, Any], name: str) -> Path | None:
    """The stored file called ``name`` in ``job`` (only names the job recorded; never a client path)."""
    if not _FILE_RE.match(name):
        return None
    d = jobs_dir / job["id"]
    for im in job["images"]:
        for kind, fname in json.loads(im["files"]).items():
            if fname == name:
                p = d / ("in" if kind == "input" else "out") / fname
                return p if p.is_file() else None
    return None


def job_view(job: dict[str, Any], *, live: dict[tuple[str, int], Any], avg: float | None, n_workers: int,
             base_url: str = "", costs: eta.Costs | None = None, board: eta.EtaBoard | None = None) -> dict[str, Any]:
    """The client's view of a stored job (the ``JobView`` of the API): per-image status, stage, progress,
    ETA with its error, file URLs with download names, manifest and summary. ``live``: the running images'
    :class:`~sfumato.server.eta.ImageClock`; ``avg``: recent seconds per image (``None`` before any
    finished), for the wait behind other jobs; ``costs``: the expected stage costs of this job's images
    (:class:`~sfumato.server.eta.Costs`, else a prior from ``avg``); ``board``: keeps the shown estimates
    monotone between calls (:func:`sfumato.server.eta.monotone`)."""
    now = time.time()
    job_url = f"{base_url}/v1/jobs/{job['id']}"
    opts = json.loads(job["options"])
    report = bool(opts.get("check"))
    if costs is None:
        per_image = avg or DEFAULT_IMAGE_SECONDS
        costs = eta.prior_costs(per_image, per_image / 3, 1)
    board = board or eta.EtaBoard()
    images = []
    stems: dict[str, int] = {}
    lo_sum = hi_sum = 0.0
    total_progress = 0.0
    job_stage = None
    for im in job["images"]:
        stem, ext = os.path.splitext(im["display_name"])
        stem = stem or "image"
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}-{stems[stem]}"
        files = json.loads(im["files"])
        key = (job["id"], im["idx"])
        clock = live.get(key)
        status = im["status"]
        stage = None
        step = steps = None
        shown: eta.Shown | None
        if status in ("done", "failed"):
            frac, shown = 1.0, eta.Shown(0.0, 0.0, now)
        elif status == "running" and clock is not None:
            snap = clock.snapshot()
            lo, hi = eta.remaining(snap, costs)
            shown = board.show(key, (lo, hi), now)
            stage = clock.view()
            step, steps = stage["step"], stage["steps"]
            frac = min(0.99, snap.elapsed / max(snap.elapsed + shown.seconds, 1e-9))
            lo_sum, hi_sum = lo_sum + lo, hi_sum + hi
            job_stage = job_stage or stage
        else:  # queued (or running, its clock not started yet)
            lo, hi = eta.queued(costs, report=report)
            lo_sum, hi_sum = lo_sum + lo, hi_sum + hi
            shown = eta.Shown((lo + hi) / 2, (hi - lo) / 2, now)
            frac = 0.0
        total_progress += frac
        manifest = json.loads(im["manifest"]) if im["manifest"] else None
        images.append({
            "index": im["idx"], "id": im["id"], "name": im["display_name"], "status": status,
            "progress": round(frac, 4), "step": step, "steps": steps, "stage": stage,
            "eta_s": round(shown.seconds, 1), "eta_error_s": round(shown.error, 1),
            "finishing": eta.finishing(shown, status == "running"),
            "error": im["error"], "report_error": im["report_error"], "seconds": im["seconds"],
            "width": im["width"], "height": im["height"], "format": im["format"], "bytes": im["bytes"],
            "files": {kind: {"name": name, "url": f"{job_url}/files/{name}",
                             "download_name": _download_name(kind, stem, ext, name)}
                      for kind, name in files.items()},
            "summary": _summary(manifest),
            "manifest": manifest,
        })
    n = len(images)
    if job["status"] == "queued":
        ahead = job["images_ahead"] * (avg or costs.total(report=report)) / n_workers
        lo_sum, hi_sum = lo_sum + ahead * (1 - costs.rel), hi_sum + ahead * (1 + costs.rel)
    counts = {s: sum(1 for i in images if i["status"] == s) for s in ("queued", "running", "done", "failed")}
    final = job["status"] in ("done", "failed")
    shown_job = eta.Shown(0.0, 0.0, now) if final else board.show((job["id"], "job"), (lo_sum, hi_sum), now)
    return {
        "id": job["id"], "status": job["status"], "mode": job["mode"], "options": opts,
        "error": job["error"], "created": job["created"], "started": job["started"],
        "finished": job["finished"], "expires": job["expires"],
        "queue_position": job["queue_position"],
        "progress": round(total_progress / n, 4) if n else 1.0,
        "eta_s": round(shown_job.seconds, 1), "eta_error_s": round(shown_job.error, 1),
        "finishing": eta.finishing(shown_job, job["status"] == "running"),
        "stage": job_stage,
        "counts": {"total": n, **counts},
        "images": images,
        "url": job_url, "zip_url": f"{job_url}/zip",
    }


def _download_name(kind: str, stem: str, ext: str, stored: str) -> str:
    suffix = stored[32:]  # stored names are <uuid hex><suffixes>
    if kind == "input":
        return f"{stem}{suffix.replace('.original', '', 1)}"
    if kind == "output":
        return f"{stem}.protected{suffix}"
    return f"{stem}{suffix}"


def _summary(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    if not manifest:
        return None
    budget = manifest.get("budget") or {}
    achieved = manifest.get("achieved") or {}
    net = budget.get("lpips_net", "alex")
    latent = manifest.get("latent") or {}
    first = next(iter(latent.values()), {}) if isinstance(latent, dict) else {}
    return {
        "lpips": achieved.get(f"lpips_{net}"), "lpips_net": net, "linf": achieved.get("linf"),
        "psnr": achieved.get("psnr"), "ssim": achieved.get("ssim"),
        "budget_lpips": budget.get("lpips"), "budget_linf": budget.get("linf"),
        "within_budget": manifest.get("within_budget"),
        "target": target_name(manifest.get("target")),
        "latent_reduction": first.get("relative_reduction") if isinstance(first, dict) else None,
        "verdict": verdict_view(manifest.get("verdict")),
    }


def verdict_view(v: Any) -> dict[str, Any] | None:
    """The manifest's plain verdict (:func:`sfumato.verification.plain.file_verdict`) as the page shows it:
    ``protected`` (true, false or null: cannot tell) and its sentence."""
    if not isinstance(v, dict) or not isinstance(v.get("sentence"), str):
        return None
    p = v.get("protected")
    return {"protected": p if isinstance(p, bool) else None, "sentence": v["sentence"],
            "parts": v.get("parts") if isinstance(v.get("parts"), dict) else None}


_WORDS = {
    "intensity": {
        "low": ("Subtle", "the hardest to see, the easiest for a model to look past"),
        "default": ("Balanced", "hard to see at normal viewing size on most artwork"),
        "high": ("Strong", "the most protection; may show on flat colour at 100 % zoom"),
    },
    "quality": {
        "fast": ("Quick", "fewer search steps: a first try, weaker protection"),
        "default": ("Standard", "the recommended search"),
        "slow": ("Thorough", "the most steps at a larger working size: strongest, much slower"),
    },
}

_FIXED_S = 60.0
"""Rough fixed cost of an image on a CPU (models, target): the first image of a run pays the most."""
_DEFAULT_CPU_S = 300.0
"""Rough search time of the default quality on a 2-core CPU (about 6 min per image in all, issue 20)."""
_GPU_SPEEDUP = 20.0


def preset_words(kind: str, name: str) -> dict[str, str]:
    """A preset in words for the page: ``label`` and ``hint`` (``kind``: ``intensity`` or ``quality``)."""
    label, hint = _WORDS[kind].get(name, (name.capitalize(), ""))
    return {"label": label, "hint": hint}


def expected_seconds(effort: Any, default: Any, *, gpu: bool | None = None) -> float:
    """A rough expected time per image for a search ``effort`` (steps at a working resolution), scaled
    from the default preset's time on a 2-core CPU (or a GPU, about 20 times faster)."""
    if gpu is None:
        gpu = _has_gpu()

    def step_px(e: Any) -> int:  # what one step encodes: a view crop, or the whole work size
        return int(e.view_crop) ** 2 if getattr(e, "views", "work") == "trainer" else int(e.resolution) ** 2

    ratio = (effort.steps * step_px(effort)) / (default.steps * step_px(default))
    s = _FIXED_S + _DEFAULT_CPU_S * ratio
    return round(s / _GPU_SPEEDUP if gpu else s, 1)


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


@functools.lru_cache(maxsize=64)
def expected_costs(mode: str, quality: str, *, effort_override: Any = None, gpu: bool | None = None) -> eta.Costs:
    """The expected stage costs of one image of a job (:func:`sfumato.server.eta.prior_costs` of
    :func:`expected_seconds`): what the ETA assumes before this server has timed such an image (an
    unknown mode or quality: the default cloak's)."""
    from sfumato.config import preset_effort

    if gpu is None:
        gpu = _has_gpu()
    try:
        effort = effort_override or preset_effort(mode, quality)
    except (KeyError, ValueError):
        effort = preset_effort("cloak", "default")
    total = expected_seconds(effort, preset_effort("cloak", "default"), gpu=gpu)
    fixed = _FIXED_S / _GPU_SPEEDUP if gpu else _FIXED_S
    return eta.prior_costs(total, fixed, int(effort.steps))


def job_list(store: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The jobs of ``store`` (a :class:`sfumato.server.store.JobStore`), newest first: id, status, mode,
    times, the number of images and their names."""
    with store.read() as c:
        rows = c.execute(
            "SELECT j.id, j.status, j.mode, j.created, j.finished, j.expires, COUNT(i.idx) AS n, "
            "GROUP_CONCAT(i.display_name, char(31)) AS names FROM jobs j LEFT JOIN images i ON i.job_id = j.id "
            "GROUP BY j.id ORDER BY j.created DESC LIMIT ?", (int(limit),)).fetchall()
    return [{"id": r["id"], "status": r["status"], "mode": r["mode"], "created": r["created"],
             "finished": r["finished"], "expires": r["expires"], "images": int(r["n"]),
             "names": (r["names"] or "").split("\x1f")[:20] if r["names"] else []} for r in rows]


def report_html(path: Path, stem: str) -> str:
    """A stored verification report with the image's real file name (``stem``) in place of the stored
    id its file names carry (title, headings, file names)."""
    text = path.read_text(encoding="utf-8")
    image_id = path.name[:32]
    return text.replace(image_id, html.escape(stem, quote=True)) if re.fullmatch(r"[0-9a-f]{32}", image_id) else text


def target_name(t: Any) -> str | None:
    """The target's name: a style (cloak), a concept (poison) or both (protect)."""
    if isinstance(t, dict):
        style = t.get("style")
        if isinstance(style, dict):
            style = style.get("style")
        return " + ".join(str(x) for x in (style, t.get("concept")) if x) or None
    return str(t) if t else None


def write_zip(jobs_dir: Path, job: dict[str, Any], view: dict[str, Any], dest: IO[bytes]) -> int:
    """Write every result of a finished image of ``job`` (protected file, manifest, AI views, report) into
    a zip with the display names of its ``view``; returns how many files went in."""
    n = 0
    with zipfile.ZipFile(dest, "w") as z:
        for im in view["images"]:
            if im["status"] != "done":
                continue
            for kind, f in im["files"].items():
                if kind == "input":
                    continue
                p = file_path(jobs_dir, job, f["name"])
                if p is None:
                    continue
                comp = zipfile.ZIP_DEFLATED if p.suffix in (".json", ".html", ".txt", ".tif") else zipfile.ZIP_STORED
                z.write(p, arcname=f["download_name"], compress_type=comp)
                n += 1
    if n == 0:
        raise JobError(409, f"job {job['id']} has no finished image yet; wait until one is done")
    return n


def spooled_zip(write: Callable[[IO[bytes]], int]) -> IO[bytes]:
    """A zip written by ``write(file)`` in a temporary file (in memory up to 8 MiB), rewound."""
    f = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    try:
        write(f)
    except BaseException:
        f.close()
        raise
    f.seek(0)
    return f
