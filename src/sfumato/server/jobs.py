"""The web server's job queue: persistent in SQLite, processed by worker threads, losing nothing.

Guarantees:

* **Durable.** A job (its options and every uploaded image) is on disk and committed to SQLite (WAL
  journal, ``synchronous=FULL``) before ``POST /v1/jobs`` answers. Each image's state changes in its own
  transaction.
* **Resumable.** At start-up, jobs and images left ``running`` by a crash or ``kill -9`` go back to
  ``queued``: an interrupted image is redone from its original upload, finished images of the job are
  kept as they are. An image interrupted :data:`MAX_ATTEMPTS` times is marked failed (it would otherwise
  crash the server for ever).
* **Kept until the TTL.** A finished job's files stay until ``finished + ttl_hours``; a janitor thread
  deletes expired jobs (rows and files) and abandoned upload folders.
* **Bounded.** At most ``workers`` jobs run at once (threads: PyTorch releases the GIL, so the HTTP
  event loop stays responsive); at most ``max_queue`` jobs wait — beyond it :class:`QueueFull` carries a
  ``Retry-After`` estimate.
* **Safe names.** Stored names are UUIDs; the uploader's file name is kept only as sanitised display
  metadata. Uploads are content-sniffed and fully decoded with :func:`sfumato.io.load_image` whatever
  their extension.

Modes are a table (:data:`MODES`): ``mode -> (sfumato.api function, sfumato.config class)``, looked up
at run time, so a protection added to :mod:`sfumato.api` is served without changing this module; a mode
whose function does not exist yet fails its job with a one-line "not available in this version" error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any

from sfumato.config import require
from sfumato.server import ServerSettings

log = logging.getLogger("sfumato.server")

MAX_ATTEMPTS = 3
"""An image whose processing was interrupted (server crash, kill) this many times is marked failed."""

DEFAULT_IMAGE_SECONDS = 30.0
"""Time per image assumed for ETAs and ``Retry-After`` before any image has been processed."""

INTENSITIES = ("low", "default", "high")
QUALITIES = ("fast", "default", "slow")
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
JOB_STATES = ("queued", "running", "done", "failed")

_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_FILE_RE = re.compile(r"^[0-9a-f]{32}(\.[a-z0-9_]+)+$")


# --------------------------------------------------------------------------------------------------
# modes


@dataclass(frozen=True)
class ModeCall:
    """One image to protect: what a mode's runner receives."""

    src: Path
    out_dir: Path
    stem: str
    progress: Callable[[int, int], None]


@dataclass(frozen=True)
class Mode:
    """A protection the server can run.

    ``requires``: ``"module:attribute"`` names that must exist in the installed sfumato (checked at run
    time, so a newer sfumato adds modes without touching the server); ``prepare(opts, settings, cache)``
    builds the configuration once per job and returns the function that protects one image
    (:class:`ModeCall` → :class:`sfumato.api.FileResult`). ``prepare`` raises ``ValueError`` with a
    one-line message when the job cannot run (the job fails with it).
    """

    name: str
    title: str
    description: str
    requires: tuple[str, ...]
    prepare: Callable[[JobOptions, ServerSettings, dict[str, Any]], Callable[[ModeCall], Any]]

    def missing(self) -> str | None:
        """The first required name the installed sfumato lacks, or ``None`` when the mode can run."""
        for req in self.requires:
            mod, _, attr = req.partition(":")
            if find_spec(mod) is None or not hasattr(import_module(mod), attr):
                return f"{mod}.{attr}"
        return None

    def unavailable_message(self) -> str | None:
        from sfumato._version import __version__

        what = self.missing()
        if what is None:
            return None
        return (f"mode {self.name!r} is not available in this version of sfumato ({__version__}: {what} does "
                "not exist); use mode 'cloak' or upgrade sfumato")


def _with_effort(cfg: Any, effort: Any) -> Any:
    return cfg if effort is None else dataclasses.replace(cfg, effort=effort)


def _file_kwargs(opts: JobOptions, settings: ServerSettings) -> dict[str, Any]:
    return {"output_format": opts.output_format, "jpeg_quality": opts.jpeg_quality, "overwrite": True,
            "ai_view": opts.ai_view, "models_dir": settings.models_dir}


def _prepare_cloak(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Callable[[ModeCall], Any]:
    from sfumato.api import cloak_file
    from sfumato.config import CloakConfig

    cfg = _with_effort(CloakConfig.preset(intensity=opts.intensity, quality=opts.quality,
                                          target_style=opts.target_style, seed=opts.seed),
                       settings.effort_override)
    kw = _file_kwargs(opts, settings)
    return lambda c: cloak_file(c.src, c.out_dir, cfg, rel_stem=c.stem, progress=c.progress, **kw)


def _cli_args(command: str, opts: JobOptions) -> Any:
    """The command's own CLI defaults and presets for ``opts`` (the server builds configs exactly like the
    command line does)."""
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    import_module(f"sfumato.commands.{command}").add_arguments(p)
    argv = ["image", "-o", "out", "--intensity", opts.intensity, "--quality", opts.quality, "--seed", str(opts.seed),
            "--concept", str(opts.concept), "--target", str(opts.target)]
    if command == "protect":
        argv += ["--target-style", opts.target_style]
    return p.parse_args(argv)


def _anchors(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Any:
    from sfumato.targets.anchors import load_anchor_folder

    target = str(opts.target)
    folder = settings.anchors_dir / target if settings.anchors_dir is not None else None
    if folder is None or not folder.is_dir():
        raise ValueError(f"this server has no anchor images of {target!r}, which poisoning toward it needs; the "
                         f"admin must put pictures of {target!r} in <anchors dir>/{target}/ and start sfumato serve "
                         "with --anchors-dir")
    key = f"anchors:{target}"
    if key not in cache:
        cache[key] = load_anchor_folder(folder, concept=target)
    return cache[key]


def _prepare_poison(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Callable[[ModeCall], Any]:
    from sfumato.api import poison_file
    from sfumato.commands.poison import poison_config

    cfg = _with_effort(poison_config(_cli_args("poison", opts), str(opts.concept), str(opts.target)),
                       settings.effort_override)
    anchors = _anchors(opts, settings, cache)
    kw = _file_kwargs(opts, settings)
    return lambda c: poison_file(c.src, c.out_dir, cfg, anchors, rel_stem=c.stem, progress=c.progress, **kw)


def _prepare_protect(opts: JobOptions, settings: ServerSettings, cache: dict[str, Any]) -> Callable[[ModeCall], Any]:
    from sfumato.api import protect_file
    from sfumato.commands.poison import poison_config
    from sfumato.protections.protect import ProtectConfig

    args = _cli_args("protect", opts)
    pc = poison_config(args, str(opts.concept), str(opts.target))
    cfg = ProtectConfig(concept=pc.concept, target=pc.target, budget=pc.budget, effort=pc.effort, encoders=pc.encoders,
                        target_style=opts.target_style, style_strength=args.style_strength,
                        style_weight=args.style_weight, poison_weight=args.poison_weight,
                        anchor_choice=args.anchor_choice, anchor_index=args.anchor_index, seed=opts.seed)
    cfg = _with_effort(cfg, settings.effort_override)
    anchors = _anchors(opts, settings, cache)
    kw = _file_kwargs(opts, settings)
    if "xmp" not in kw:  # protect embeds the IPTC/XMP "do not train" reservation by default, as the CLI does
        from sfumato.api import rights_xmp
        from sfumato.optout.xmp import load_rights_config

        kw["xmp"] = rights_xmp(load_rights_config())
    return lambda c: protect_file(c.src, c.out_dir, cfg, anchors, rel_stem=c.stem, progress=c.progress, **kw)


MODES: dict[str, Mode] = {
    "cloak": Mode("cloak", "Style cloak", "Glaze-style: models that train on the image learn a different style.",
                  ("sfumato.api:cloak_file", "sfumato.config:CloakConfig"), _prepare_cloak),
    "poison": Mode("poison", "Concept poison",
                   "Nightshade-style: models that train on the image learn the wrong concept.",
                   ("sfumato.api:poison_file", "sfumato.targets.anchors:load_anchor_folder",
                    "sfumato.commands.poison:poison_config"), _prepare_poison),
    "protect": Mode("protect", "Cloak + poison", "Both protections in one perturbation, under one budget.",
                    ("sfumato.api:protect_file", "sfumato.targets.anchors:load_anchor_folder", "sfumato.protections.protect:ProtectConfig",
                     "sfumato.commands.poison:poison_config"), _prepare_protect),
}
"""``mode -> Mode``: the protections the server offers (a mode whose requirements are missing fails its
jobs with a "not available in this version" error)."""


def builtin_style_names() -> list[str]:
    from sfumato.targets.styles import STYLE_FAMILIES

    return sorted(STYLE_FAMILIES)


def concept_names() -> list[str]:
    from importlib.resources import files

    return sorted(json.loads((files("sfumato") / "data" / "concepts.json").read_text(encoding="utf-8")))


def check_available() -> bool:
    """Whether this sfumato has the verification report (``sfumato.verify.check`` + ``sfumato.report``)."""
    for mod, attr in (("sfumato.verification.check", "check"), ("sfumato.verification.report", "write_html")):
        if find_spec(mod) is None or not hasattr(import_module(mod), attr):
            return False
    return True


def verification_report(original: Path, protected: Path, manifest: dict[str, Any], out_dir: Path, stem: str, *,
                        attacks: str, models_dir: Path | None) -> list[Path]:
    """Run ``sfumato check`` on a finished image (:func:`sfumato.verify.check` with the original and the
    manifest) and write ``<stem>.report.html`` (:func:`sfumato.report.write_html`) and
    ``<stem>.check.json`` in ``out_dir``."""
    from sfumato.verification.check import check
    from sfumato.verification.report import write_html

    rep = check(protected, original=original, manifest=manifest, attacks=attacks, models_dir=models_dir)
    html = write_html(rep, out_dir / f"{stem}.report.html")
    js = out_dir / f"{stem}.check.json"
    js.write_text(rep.to_json() + "\n", encoding="utf-8")
    return [html, js]


# --------------------------------------------------------------------------------------------------
# options, names, errors


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """What to do with every image of a job (validated when the job is submitted).

    ``target_style`` is ``"auto"`` or a built-in style name: a server never accepts a folder path from a
    client. ``concept``/``target`` name concepts of ``sfumato/data/concepts.json`` (required for poison).
    ``output_format``: ``None`` keeps the input's format family. ``check``: also write the verification
    report when :func:`check_available`.
    """

    mode: str = "cloak"
    intensity: str = "default"
    quality: str = "default"
    target_style: str = "auto"
    concept: str | None = None
    target: str | None = None
    seed: int = 0
    output_format: str | None = None
    jpeg_quality: int = 98
    ai_view: bool = True
    check: bool = False

    def __post_init__(self) -> None:
        require(self.mode in MODES, f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        require(self.intensity in INTENSITIES, f"unknown intensity {self.intensity!r}; choose one of "
               f"{', '.join(INTENSITIES)}")
        require(self.quality in QUALITIES, f"unknown quality {self.quality!r}; choose one of {', '.join(QUALITIES)}")
        styles = builtin_style_names()
        require(self.target_style == "auto" or self.target_style in styles,
               f"unknown target_style {self.target_style!r}; choose 'auto' or one of {', '.join(styles)} "
               "(style folders can only be used from the command line)")
        if self.concept is not None or self.target is not None or self.mode == "poison":
            names = concept_names()
            for label, v in (("concept", self.concept), ("target", self.target)):
                require(v in names, f"{label} {v!r} is not a known concept; choose one of {', '.join(names)}"
                       + (" (mode poison needs both concept and target)" if self.mode == "poison" else ""))
            require(self.concept != self.target, f"concept and target must differ (both are {self.concept!r})")
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
               f"seed must be a non-negative integer, got {self.seed!r}")
        require(self.output_format is None or self.output_format in OUTPUT_FORMATS,
               f"unknown output_format {self.output_format!r}; choose one of {', '.join(OUTPUT_FORMATS)} "
               "or leave it empty to keep the input's format")
        require(isinstance(self.jpeg_quality, int) and 95 <= self.jpeg_quality <= 100,
               f"jpeg_quality must be 95-100 (lower erases the perturbation), got {self.jpeg_quality!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        require(not unknown, f"unknown job option(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


_UNSAFE = re.compile(r"[^\w.\-+,() ]")


def sanitise_display_name(name: str | None) -> str:
    """A harmless display version of an uploaded file name: last path component, printable, no leading
    dots, only word characters and ``.-+,() `` kept, at most 120 characters (``"image"`` if empty)."""
    base = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = re.sub(r"_+", "_", _UNSAFE.sub("_", base)).strip(" .")
    return base[:120].strip(" .") or "image"


class JobError(Exception):
    """An error a client should see: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class QueueFull(JobError):
    def __init__(self, retry_after: int, max_queue: int) -> None:
        super().__init__(429, f"the queue is full ({max_queue} jobs waiting); retry in about {retry_after} s",
                         {"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class _Interrupted(Exception):
    """Raised inside a running image when the server stops; the image goes back to the queue."""


class _Cancelled(Exception):
    """Raised inside a running image when its job was deleted."""


# --------------------------------------------------------------------------------------------------
# storage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  mode TEXT NOT NULL,
  options TEXT NOT NULL,
  error TEXT,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  expires REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created);
CREATE TABLE IF NOT EXISTS images (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  input_file TEXT NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  format TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  status TEXT NOT NULL,
  error TEXT,
  report_error TEXT,
  started REAL,
  finished REAL,
  seconds REAL,
  attempts INTEGER NOT NULL DEFAULT 0,
  files TEXT NOT NULL DEFAULT '{}',
  manifest TEXT,
  PRIMARY KEY (job_id, idx)
);
"""


class JobStore:
    """The SQLite side of the queue. One short-lived connection per operation (thread-safe); every write
    is one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        c = self._connect()
        try:
            c.executescript(_SCHEMA)  # idempotent
        finally:
            c.close()

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA foreign_keys=ON")
        c.execute("PRAGMA busy_timeout=30000")
        return c

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self._connect()
        try:
            c.execute("BEGIN IMMEDIATE")
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            c.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        c = self._connect()
        try:
            yield c
        finally:
            c.close()

    # -- submission
    def insert_job(self, job_id: str, opts: JobOptions, images: list[dict[str, Any]], *, max_queue: int,
                   retry_after: Callable[[sqlite3.Connection], int]) -> None:
        now = time.time()
        with self._tx() as c:
            waiting = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if waiting >= max_queue:
                raise QueueFull(retry_after(c), max_queue)
            c.execute("INSERT INTO jobs (id, status, mode, options, created) VALUES (?, 'queued', ?, ?, ?)",
                      (job_id, opts.mode, json.dumps(opts.to_dict()), now))
            for i, im in enumerate(images):
                c.execute("INSERT INTO images (job_id, idx, id, display_name, input_file, width, height, format, "
                          "bytes, status, files) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                          (job_id, i, im["id"], im["display_name"], im["input_file"], im["width"], im["height"],
                           im["format"], im["bytes"], json.dumps({"input": im["input_file"]})))

    def queued_count(self) -> int:
        with self._read() as c:
            return int(c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0])

    def counts(self) -> dict[str, int]:
        with self._read() as c:
            rows = c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        out = dict.fromkeys(JOB_STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    # -- reading
    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._read() as c:
            row = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            imgs = c.execute("SELECT * FROM images WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()
            ahead = None
            if row["status"] == "queued":
                ahead = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND created < ?",
                                  (row["created"],)).fetchone()[0]
            remaining_ahead = c.execute(
                "SELECT COUNT(*) FROM images i JOIN jobs j ON j.id = i.job_id WHERE i.status IN ('queued', "
                "'running') AND j.status IN ('queued', 'running') AND j.id != ? AND (j.status = 'running' OR "
                "j.created < ?)", (job_id, row["created"])).fetchone()[0] if row["status"] == "queued" else 0
        job = dict(row)
        job["images"] = [dict(r) for r in imgs]
        job["queue_position"] = ahead
        job["images_ahead"] = int(remaining_ahead)
        return job

    def avg_image_seconds(self, c: sqlite3.Connection | None = None) -> float | None:
        q = "SELECT AVG(seconds) FROM (SELECT seconds FROM images WHERE status = 'done' ORDER BY finished DESC LIMIT 20)"
        if c is not None:
            v = c.execute(q).fetchone()[0]
        else:
            with self._read() as c2:
                v = c2.execute(q).fetchone()[0]
        return float(v) if v is not None else None

    # -- worker side
    def recover(self) -> tuple[int, int]:
        """Put jobs and images left ``running`` (crash, kill) back in the queue; returns how many of each."""
        with self._tx() as c:
            n = c.execute("UPDATE images SET status = 'queued', started = NULL WHERE status = 'running'").rowcount
            j = c.execute("UPDATE jobs SET status = 'queued' WHERE status = 'running'").rowcount
        return j, n

    def claim_next(self) -> str | None:
        with self._tx() as c:
            row = c.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            c.execute("UPDATE jobs SET status = 'running', started = COALESCE(started, ?) WHERE id = ?",
                      (time.time(), row["id"]))
            return str(row["id"])

    def start_image(self, job_id: str, idx: int) -> int | None:
        """Mark an image running; returns its attempt number (``None`` if the job is gone)."""
        with self._tx() as c:
            cur = c.execute("UPDATE images SET status = 'running', started = ?, attempts = attempts + 1 "
                            "WHERE job_id = ? AND idx = ?", (time.time(), job_id, idx))
            if cur.rowcount == 0:
                return None
            return int(c.execute("SELECT attempts FROM images WHERE job_id = ? AND idx = ?",
                                 (job_id, idx)).fetchone()[0])

    def requeue_image(self, job_id: str, idx: int) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'queued', started = NULL, attempts = MAX(attempts - 1, 0) "
                      "WHERE job_id = ? AND idx = ?", (job_id, idx))
            c.execute("UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'running'", (job_id,))

    def finish_image(self, job_id: str, idx: int, *, files: dict[str, str], manifest: dict[str, Any],
                     seconds: float, report_error: str | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'done', error = NULL, finished = ?, seconds = ?, files = ?, "
                      "manifest = ?, report_error = ? WHERE job_id = ? AND idx = ?",
                      (time.time(), seconds, json.dumps(files), json.dumps(manifest), report_error, job_id, idx))

    def fail_image(self, job_id: str, idx: int, message: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'failed', error = ?, finished = ? WHERE job_id = ? AND idx = ?",
                      (message, time.time(), job_id, idx))

    def fail_job(self, job_id: str, message: str, ttl_s: float) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE images SET status = 'failed', error = ?, finished = ? WHERE job_id = ? AND status "
                      "IN ('queued', 'running')", (message, now, job_id))
            c.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ?, expires = ? WHERE id = ?",
                      (message, now, now + ttl_s, job_id))

    def finish_job(self, job_id: str, ttl_s: float) -> str | None:
        """Close a job whose images are all finished: ``done`` if any image succeeded, else ``failed``."""
        now = time.time()
        with self._tx() as c:
            rows = c.execute("SELECT status FROM images WHERE job_id = ?", (job_id,)).fetchall()
            states = [r[0] for r in rows]
            if not states or any(s in ("queued", "running") for s in states):
                return None
            status = "done" if "done" in states else "failed"
            error = None if status == "done" else "every image failed; see each image's error"
            c.execute("UPDATE jobs SET status = ?, error = ?, finished = ?, expires = ? WHERE id = ?",
                      (status, error, now, now + ttl_s, job_id))
            return status

    def delete_job(self, job_id: str) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    def expired(self, now: float) -> list[str]:
        with self._read() as c:
            return [r[0] for r in c.execute("SELECT id FROM jobs WHERE expires IS NOT NULL AND expires < ?", (now,))]

    def all_ids(self) -> set[str]:
        with self._read() as c:
            return {r[0] for r in c.execute("SELECT id FROM jobs")}

    def running_remaining(self, c: sqlite3.Connection) -> list[int]:
        rows = c.execute("SELECT j.id, COUNT(i.idx) FROM jobs j LEFT JOIN images i ON i.job_id = j.id AND i.status "
                         "IN ('queued', 'running') WHERE j.status = 'running' GROUP BY j.id").fetchall()
        return [int(r[1]) for r in rows]


# --------------------------------------------------------------------------------------------------
# the runner

_EXTRA_KINDS = {".ai_view.before.png": "ai_view_before", ".ai_view.after.png": "ai_view_after", ".txt": "caption"}
_INPUT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class JobRunner:
    """Owns the data folder, the :class:`JobStore`, the worker threads and the janitor thread."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.root = settings.data_dir
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.root / "jobs.sqlite3")
        self.n_workers = settings.resolved_workers()
        self.ttl_s = settings.ttl_hours * 3600.0
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._cancelled: set[str] = set()
        self._active: set[str] = set()
        self._live: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._validate = threading.BoundedSemaphore(2)  # full decodes at once (memory bound)
        self._cache: dict[str, Any] = {}  # per-server objects reused by jobs (anchor sets)
        self._lockfile: IO[str] | None = None

    # -- life cycle
    def start(self) -> None:
        """Lock the data folder (one server per folder), re-queue what a crash interrupted, start the threads."""
        self._lock_data_dir()
        jobs, images = self.store.recover()
        if jobs:
            log.warning("resuming %d interrupted job(s) from the previous run (%d image(s) to redo)", jobs, images)
        self._remove_orphans(min_age_s=0.0)
        for i in range(self.n_workers):
            t = threading.Thread(target=self._worker, name=f"sfumato-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._janitor, name="sfumato-janitor", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the workers: a running image is interrupted at its next progress step and re-queued."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if not self._threads and self._lockfile is not None:
            self._lockfile.close()  # closing the descriptor releases the lock
            self._lockfile = None

    def _lock_data_dir(self) -> None:
        """Two servers on one data folder would re-queue each other's running jobs and delete each other's
        uploads: hold an exclusive lock on ``server.lock`` (released by the OS even on ``kill -9``)."""
        try:
            import fcntl
        except ModuleNotFoundError:  # not POSIX: no advisory locks; one server per folder is then on trust
            return
        f = open(self.root / "server.lock", "a+")  # noqa: SIM115 (held for the server's lifetime)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RuntimeError(f"another sfumato server is using {self.root}; stop it or give this one another "
                               "--data-dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lockfile = f

    def idle(self) -> bool:
        """True when no worker is processing a job."""
        with self._lock:
            return not self._active

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- paths
    def job_dir(self, job_id: str) -> Path:
        if not _ID_RE.match(job_id):
            raise JobError(404, f"no job {job_id!r}: job ids are 32 hex digits")
        return self.jobs_dir / job_id

    def file_path(self, job: dict[str, Any], name: str) -> Path | None:
        """The stored file called ``name`` in ``job`` (only names the job recorded; never a client path)."""
        if not _FILE_RE.match(name):
            return None
        d = self.jobs_dir / job["id"]
        for im in job["images"]:
            for kind, fname in json.loads(im["files"]).items():
                if fname == name:
                    p = d / ("in" if kind == "input" else "out") / fname
                    return p if p.is_file() else None
        return None

    # -- submission
    def retry_after(self, c: sqlite3.Connection | None = None) -> int:
        """Seconds until a queue slot is likely to free: the shortest running job's remaining images."""
        def compute(c: sqlite3.Connection) -> int:
            avg = self.store.avg_image_seconds(c) or DEFAULT_IMAGE_SECONDS
            rem = self.store.running_remaining(c)
            est = avg * (min(rem) if rem else 1)
            return int(min(600, max(1, math.ceil(est))))

        if c is not None:
            return compute(c)
        with self.store._read() as c2:
            return compute(c2)

    def check_capacity(self) -> None:
        if self.store.queued_count() >= self.settings.max_queue:
            raise QueueFull(self.retry_after(), self.settings.max_queue)

    def new_job(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        d = self.jobs_dir / job_id
        (d / "in").mkdir(parents=True)
        (d / "out").mkdir()
        return job_id, d

    def store_upload(self, job_dir: Path, src: IO[bytes], display_name: str | None) -> dict[str, Any]:
        """Copy one upload into ``job_dir/in`` under a UUID name, enforcing the size limit, sniffing the
        content and decoding it fully with :func:`sfumato.io.load_image` (pixel limit). Raises
        :class:`JobError` (413/415) with a one-line message naming the upload."""
        from PIL import Image, UnidentifiedImageError

        from sfumato.io import image as sio

        shown = sanitise_display_name(display_name)
        image_id = uuid.uuid4().hex
        tmp = job_dir / "in" / f"{image_id}.upload"
        limit = self.settings.max_upload_bytes
        size = 0
        with open(tmp, "wb") as f:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    f.close()
                    tmp.unlink()
                    raise JobError(413, f"{shown}: larger than the {limit // (1024 * 1024)} MiB upload limit; "
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
        if fmt not in _INPUT_SUFFIX or (fmt == "AVIF" and "AVIF" not in sio.supported_formats()):
            tmp.unlink()
            raise JobError(415, f"{shown}: a {fmt} image, which sfumato does not protect; convert it to PNG (lossless) "
                                "or upload a JPEG, WebP or TIFF file")
        if w * h > self.settings.max_pixels:
            tmp.unlink()
            raise JobError(413, f"{shown}: {w}x{h} is {w * h / 1e6:.1f} megapixels, over this server's limit of "
                                f"{self.settings.max_pixels / 1e6:.1f}; downscale it first")
        with self._validate:
            try:
                img = sio.load_image(tmp, max_pixels=self.settings.max_pixels)
            except sio.ImageError as e:
                tmp.unlink()
                raise JobError(415, f"{shown}: {e.problem}; {e.advice}") from e
        final = tmp.with_name(f"{image_id}.original{_INPUT_SUFFIX.get(img.format, '.img')}")
        os.replace(tmp, final)
        return {"id": image_id, "display_name": shown, "input_file": final.name, "width": img.size[0],
                "height": img.size[1], "format": img.format, "bytes": size}

    def enqueue(self, job_id: str, opts: JobOptions, images: list[dict[str, Any]]) -> None:
        try:
            self.store.insert_job(job_id, opts, images, max_queue=self.settings.max_queue,
                                  retry_after=self.retry_after)
        except BaseException:
            self.discard(job_id)
            raise
        self.wake()

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)

    def delete(self, job_id: str) -> bool:
        """Delete a job and its files; a running job stops at its next progress step."""
        self.job_dir(job_id)
        with self._lock:
            if job_id in self._active:
                self._cancelled.add(job_id)
        found = self.store.delete_job(job_id)
        self.discard(job_id)
        return found

    # -- views
    def describe(self, job_id: str, base_url: str = "") -> dict[str, Any] | None:
        self.job_dir(job_id)
        job = self.store.job(job_id)
        if job is None:
            return None
        return self._view(job, base_url)

    def _view(self, job: dict[str, Any], base_url: str) -> dict[str, Any]:
        now = time.time()
        avg = self.store.avg_image_seconds()
        job_url = f"{base_url}/v1/jobs/{job['id']}"
        images = []
        stems: dict[str, int] = {}
        remaining_s = 0.0
        eta_known = avg is not None
        total_progress = 0.0
        for im in job["images"]:
            stem, ext = os.path.splitext(im["display_name"])
            stem = stem or "image"
            stems[stem] = stems.get(stem, 0) + 1
            if stems[stem] > 1:
                stem = f"{stem}-{stems[stem]}"
            files = json.loads(im["files"])
            live = self._live.get((job["id"], im["idx"]))
            step = live["step"] if live else None
            steps = live["steps"] if live else None
            status = im["status"]
            if status in ("done", "failed"):
                frac = 1.0
                eta = 0.0
            elif status == "running":
                elapsed = now - (im["started"] or now)
                frac = min(0.99, step / steps) if step and steps else 0.0
                if avg is not None:
                    eta = max(avg - elapsed, 1.0)
                elif frac > 0.05:
                    eta = elapsed / frac - elapsed
                    eta_known = True
                else:
                    eta = None
                    eta_known = False
            else:
                frac = 0.0
                eta = avg
            total_progress += frac
            if eta is not None:
                remaining_s += eta
            manifest = json.loads(im["manifest"]) if im["manifest"] else None
            images.append({
                "index": im["idx"], "id": im["id"], "name": im["display_name"], "status": status,
                "progress": round(frac, 4), "step": step, "steps": steps,
                "eta_s": round(eta, 1) if eta is not None else None,
                "error": im["error"], "report_error": im["report_error"], "seconds": im["seconds"],
                "width": im["width"], "height": im["height"], "format": im["format"], "bytes": im["bytes"],
                "files": {kind: {"name": name, "url": f"{job_url}/files/{name}",
                                 "download_name": _download_name(kind, stem, ext, name)}
                          for kind, name in files.items()},
                "summary": _summary(manifest),
                "manifest": manifest,
            })
        n = len(images)
        ahead_s = (job["images_ahead"] * (avg or DEFAULT_IMAGE_SECONDS) / self.n_workers) if job["status"] == "queued" \
            else 0.0
        counts = {s: sum(1 for i in images if i["status"] == s) for s in ("queued", "running", "done", "failed")}
        final = job["status"] in ("done", "failed")
        return {
            "id": job["id"], "status": job["status"], "mode": job["mode"], "options": json.loads(job["options"]),
            "error": job["error"], "created": job["created"], "started": job["started"],
            "finished": job["finished"], "expires": job["expires"],
            "queue_position": job["queue_position"],
            "progress": round(total_progress / n, 4) if n else 1.0,
            "eta_s": 0.0 if final else (round(remaining_s + ahead_s, 1) if eta_known else None),
            "counts": {"total": n, **counts},
            "images": images,
            "url": job_url, "zip_url": f"{job_url}/zip",
        }

    # -- zip
    def write_zip(self, job_id: str, dest: IO[bytes]) -> int:
        """Write every result of a finished image (protected file, manifest, AI views, report) into a zip
        with display names; returns how many files went in."""
        view = self.describe(job_id)
        if view is None:
            raise JobError(404, f"no job {job_id}; it was deleted or its results expired")
        job = self.store.job(job_id)
        assert job is not None
        n = 0
        with zipfile.ZipFile(dest, "w") as z:
            for im in view["images"]:
                if im["status"] != "done":
                    continue
                for kind, f in im["files"].items():
                    if kind == "input":
                        continue
                    p = self.file_path(job, f["name"])
                    if p is None:
                        continue
                    comp = zipfile.ZIP_DEFLATED if p.suffix in (".json", ".html", ".txt", ".tif") else zipfile.ZIP_STORED
                    z.write(p, arcname=f["download_name"], compress_type=comp)
                    n += 1
        if n == 0:
            raise JobError(409, f"job {job_id} has no finished image yet; wait until one is done")
        return n

    # -- workers
    def _worker(self) -> None:
        while not self._stop.is_set():
            job_id = self.store.claim_next()
            if job_id is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            with self._lock:
                self._active.add(job_id)
            try:
                self._run_job(job_id)
            except _Interrupted:
                return
            except Exception:  # a bug in the runner itself: log it loudly, fail the job, keep serving
                log.exception("job %s crashed the worker", job_id)
                self.store.fail_job(job_id, "internal error while running the job; see the server log", self.ttl_s)
            finally:
                with self._lock:
                    self._active.discard(job_id)
                    self._cancelled.discard(job_id)

    def _run_job(self, job_id: str) -> None:
        job = self.store.job(job_id)
        if job is None:
            return
        opts = JobOptions.from_dict(json.loads(job["options"]))
        mode = MODES[opts.mode]
        unavailable = mode.unavailable_message()
        if unavailable:
            self.store.fail_job(job_id, unavailable, self.ttl_s)
            return
        try:
            protect_one = mode.prepare(opts, self.settings, self._cache)
        except (ValueError, OSError) as e:  # a job that cannot run: the client sees why
            self.store.fail_job(job_id, _one_line(e), self.ttl_s)
            return
        for im in job["images"]:
            if im["status"] in ("done", "failed"):
                continue
            if self._stop.is_set():
                self.store.requeue_image(job_id, im["idx"])
                raise _Interrupted
            if job_id in self._cancelled:
                break
            self._run_image(job, im, protect_one, opts)
        if job_id in self._cancelled:
            self.discard(job_id)
            return
        status = self.store.finish_job(job_id, self.ttl_s)
        log.info("job %s %s", job_id, status)

    def _run_image(self, job: dict[str, Any], im: dict[str, Any], protect_one: Callable[[ModeCall], Any],
                   opts: JobOptions) -> None:
        job_id, idx = job["id"], im["idx"]
        attempt = self.store.start_image(job_id, idx)
        if attempt is None:
            return
        if attempt > MAX_ATTEMPTS:
            self.store.fail_image(job_id, idx, f"processing was interrupted {MAX_ATTEMPTS} times (the server "
                                  "crashed or was killed while working on this image); giving up on it")
            return
        key = (job_id, idx)
        self._live[key] = {"step": 0, "steps": None}
        d = self.jobs_dir / job_id
        out_dir = d / "out"

        def progress(step: int, steps: int) -> None:
            if self._stop.is_set():
                raise _Interrupted
            if job_id in self._cancelled:
                raise _Cancelled
            self._live[key] = {"step": int(step), "steps": int(steps)}

        for p in [*out_dir.glob(f"{im['id']}.*"), *out_dir.glob(f".{im['id']}.*")]:  # an interrupted attempt's
            p.unlink()
        t0 = time.perf_counter()
        try:
            res = protect_one(ModeCall(d / "in" / im["input_file"], out_dir, im["id"], progress))
        except _Interrupted:
            self.store.requeue_image(job_id, idx)
            raise
        except _Cancelled:
            return
        except Exception as e:  # one bad image never stops the job: the error is recorded for the client
            log.exception("job %s image %d (%s) failed", job_id, idx, im["display_name"])
            self.store.fail_image(job_id, idx, _one_line(e))
            return
        finally:
            self._live.pop(key, None)
        files = {"input": im["input_file"], "output": res.output.name, "manifest": res.manifest_path.name}
        for p in res.extra_outputs:
            kind = _EXTRA_KINDS.get(p.name[len(im["id"]):])
            if kind is not None:
                files[kind] = p.name
        report_error = None
        if opts.check:
            if not check_available():
                report_error = "the verification report is not available in this version of sfumato"
            else:
                try:
                    html, js = verification_report(d / "in" / im["input_file"], res.output, res.manifest, out_dir,
                                                   im["id"], attacks=self.settings.check_attacks,
                                                   models_dir=self.settings.models_dir)
                    files["report"], files["check"] = html.name, js.name
                except Exception as e:  # the protected image stands; the failed check is reported with it
                    log.exception("verification report failed for job %s image %d", job_id, idx)
                    report_error = _one_line(e)
        self.store.finish_image(job_id, idx, files=files, manifest=res.manifest,
                                seconds=round(time.perf_counter() - t0, 3), report_error=report_error)

    # -- janitor
    def _janitor(self) -> None:
        while not self._stop.wait(self.settings.cleanup_interval_s):
            self.cleanup()

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete jobs whose results expired and upload folders no job owns (older than an hour)."""
        gone = []
        for job_id in self.store.expired(time.time() if now is None else now):
            self.store.delete_job(job_id)
            self.discard(job_id)
            gone.append(job_id)
        self._remove_orphans(min_age_s=3600.0)
        if gone:
            log.info("deleted %d expired job(s)", len(gone))
        return gone

    def _remove_orphans(self, min_age_s: float) -> None:
        known = self.store.all_ids()
        now = time.time()
        for d in self.jobs_dir.iterdir():
            if d.is_dir() and _ID_RE.match(d.name) and d.name not in known and now - d.stat().st_mtime >= min_age_s:
                shutil.rmtree(d, ignore_errors=True)


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
        "target": _target_name(manifest.get("target")),
        "latent_reduction": first.get("relative_reduction") if isinstance(first, dict) else None,
    }


def _target_name(t: Any) -> str | None:
    """The target's name: a style (cloak), a concept (poison) or both (protect)."""
    if isinstance(t, dict):
        style = t.get("style")
        if isinstance(style, dict):
            style = style.get("style")
        return " + ".join(str(x) for x in (style, t.get("concept")) if x) or None
    return str(t) if t else None


def spooled_zip(runner: JobRunner, job_id: str) -> IO[bytes]:
    """The job's zip in a temporary file (in memory up to 8 MiB), rewound."""
    f = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    try:
        runner.write_zip(job_id, f)
    except BaseException:
        f.close()
        raise
    f.seek(0)
    return f
